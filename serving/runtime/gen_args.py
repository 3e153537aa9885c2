"""Parse and validate the `gen_args` JSON object of a generation request.

Each model declares which keys it takes (`GenArgSpec`); anything else is refused by name,
so a typo such as `num_steps` fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from serving.runtime.errors import InvalidInputError


@dataclass(frozen=True)
class GenArgSpec:
    """One accepted key: its type, bounds and default. Bounds are inclusive unless stated."""

    name: str
    kind: type  # int, float or str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    multiple_of: int | None = None

    def validate(self, value: Any) -> Any:
        label = f"gen_args.{self.name}"
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(f"{label}: {value!r} must be an integer")
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInputError(f"{label}: {value!r} must be a number")
            if not math.isfinite(value):
                raise InvalidInputError(f"{label}: {value!r} must be finite")
            value = float(value)
        elif self.kind is str:
            if not isinstance(value, str):
                raise InvalidInputError(f"{label}: {value!r} must be a string")
        if self.choices is not None and value not in self.choices:
            raise InvalidInputError(f"{label}: {value!r} is not one of {list(self.choices)}")
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                raise InvalidInputError(f"{label}: {value!r} must be > {self.minimum}")
            if not self.exclusive_minimum and value < self.minimum:
                raise InvalidInputError(f"{label}: {value!r} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise InvalidInputError(f"{label}: {value!r} exceeds the maximum {self.maximum}")
        if self.multiple_of is not None and value % self.multiple_of != 0:
            raise InvalidInputError(f"{label}: {value!r} must be a multiple of {self.multiple_of}")
        return value


def parse_gen_args(raw: bytes | str | None, specs: dict[str, GenArgSpec]) -> dict[str, Any]:
    """Return the validated arguments, defaults filled in, for `specs`."""
    given: dict[str, Any] = {}
    if raw is not None:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if text.strip():
            try:
                given = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"gen_args: not valid JSON ({exc.msg} at position {exc.pos})") from None
            if not isinstance(given, dict):
                raise InvalidInputError(
                    f"gen_args: expected a JSON object, got {type(given).__name__} {text[:60]!r}"
                )
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise InvalidInputError(
            f"gen_args: unknown key(s) {unknown}; this model accepts {sorted(specs)}"
        )
    out = {}
    for name, spec in specs.items():
        out[name] = spec.validate(given[name]) if name in given else spec.default
    return out
