"""Segment attributes a request carries (tenant, region, app version, ...): parsed, validated, bounded.

A client sends them as request parameters named ``segment.<name>`` in the request body (KServe
v2 ``"parameters"``; tritonclient's ``parameters=``). Not an HTTP header: Triton's SageMaker
frontend forwards no header to the model, so ``X-Amzn-SageMaker-Custom-Attributes`` never
arrives. They are kept in the record's ``segment_attrs`` column (a JSON object) and
``monitoring score --by <name>`` scores every value on its own.

Bounds, because an attribute is free text from the caller and every distinct value becomes a
segment to score: at most :data:`MAX_ATTRIBUTES` per request, names ``[a-z][a-z0-9_]{0,31}``,
values 1..:data:`MAX_VALUE_CHARS` printable characters. A request that breaks one is refused with
an error naming the parameter, its value and the limit (the caller learns at once, instead of a
segment silently missing from its dashboards). The cap on distinct values per window is applied
at scoring time (``--max-segments``), where a window exists.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

PREFIX = "segment."
MAX_ATTRIBUTES = 4
MAX_VALUE_CHARS = 64
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_attribute(name: str, value: Any) -> str:
    """``value`` as text if ``name``/``value`` are within bounds, else ValueError naming both."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"request parameter '{PREFIX}{name}': the name must match [a-z][a-z0-9_]{{0,31}}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"request parameter '{PREFIX}{name}': {value!r} must be a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= MAX_VALUE_CHARS:
        raise ValueError(f"request parameter '{PREFIX}{name}': value of {len(text)} characters is outside "
                         f"1..{MAX_VALUE_CHARS}")
    if not text.isprintable():
        raise ValueError(f"request parameter '{PREFIX}{name}': {text!r} has non-printable characters")
    return text


def segment_attributes(parameters: str | Mapping[str, Any] | None) -> dict[str, str]:
    """The ``segment.*`` entries of a request's parameters (``request.parameters()`` JSON text or a
    mapping) as ``{name: value}``; other parameters are ignored. Raises ValueError past a bound."""
    if not parameters:
        return {}
    params = json.loads(parameters) if isinstance(parameters, str) else parameters
    attrs = {k[len(PREFIX):]: v for k, v in params.items() if isinstance(k, str) and k.startswith(PREFIX)}
    if len(attrs) > MAX_ATTRIBUTES:
        raise ValueError(f"request parameters: {len(attrs)} '{PREFIX}*' attributes (at most {MAX_ATTRIBUTES}): "
                         f"{', '.join(sorted(attrs))}")
    return {name: check_attribute(name, value) for name, value in sorted(attrs.items())}


def as_parameters(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """Client side: ``{"tenant": "a"}`` -> ``{"segment.tenant": "a"}``, checked with the server's bounds."""
    attrs = dict(attributes or {})
    if len(attrs) > MAX_ATTRIBUTES:
        raise ValueError(f"{len(attrs)} segment attributes (at most {MAX_ATTRIBUTES})")
    return {PREFIX + k: check_attribute(k, v) for k, v in attrs.items()}
