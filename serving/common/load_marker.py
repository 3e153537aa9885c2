"""The line a model process prints when its ``initialize()`` has returned, and how a launcher
reads a tritonserver log for a load that hung after it.

Why (found 2026-12-06, a fresh-clone `make test` on a loaded 2-core host): the Python backend of
tritonserver 2.51 can hang a model's load for good after the model's own ``initialize()`` has
returned. Seen with gdb and py-spy: the stub process idle, waiting for its next command; the
server's loading thread in ``StubLauncher::Launch``'s clean-up, in ``waitpid`` on that stub, which
it only does when it took the handshake to have failed and which returns only when the stub exits,
which it never does. The server never becomes live and logs nothing (its error is logged after the
wait). A launcher cannot see the stub's side from Triton's log, so the model prints it:
:func:`line` on the process's stderr, which tritonserver's log holds.

:class:`LoadWatch` reads that log as it grows and names a model every one of whose instances that
Triton began to initialize ("TRITONBACKEND_ModelInstanceInitialize: <instance>") has printed the
marker, with no "successfully loaded '<model>'" for ``hang_s`` since the last marker: Triton marks
a model loaded milliseconds after its last instance's ``initialize()`` returns.

Stdlib only, so every layer may import it (tests/test_layers.py puts it with the contract).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The marker's first word; the rest is ``model=<name> instance=<instance name> pid=<pid>``.
PREFIX = "model-initialize-returned"
_MARKER = re.compile(rf"^{PREFIX} model=(\S+) instance=(\S+) pid=\d+\s*$", re.M)
_STARTED = re.compile(r"TRITONBACKEND_ModelInstanceInitialize: (\S+) \(")
_LOADED = re.compile(r"successfully loaded '([^']+)'")


def line(model: str, instance: str, pid: int) -> str:
    """The marker line for one model instance (no newline)."""
    if any(c.isspace() for c in model + instance) or not model or not instance:
        raise ValueError(f"model and instance names must be non-empty and without spaces: {model!r}, {instance!r}")
    return f"{PREFIX} model={model} instance={instance} pid={pid}"


@dataclass
class LoadWatch:
    """Reads a tritonserver log from the start as it grows (:meth:`poll`), and keeps which model
    instances Triton began, which returned from ``initialize()`` (and when this watch first saw
    it) and which models Triton loaded."""

    log_path: Path
    hang_s: float = 120.0
    offset: int = 0
    #: Models never named: Triton runs a config's ``model_warmup`` after the instances return and
    #: before it marks the model loaded, for as long as the warm-up takes.
    ignore: frozenset[str] = frozenset()
    started: set[str] = field(default_factory=set)
    returned: dict[str, tuple[str, float]] = field(default_factory=dict)  # instance -> (model, seen at)
    loaded: set[str] = field(default_factory=set)
    _partial: str = ""

    def poll(self, now: float | None = None) -> None:
        """Read what the log gained since the last call; lines are counted once complete."""
        now = time.monotonic() if now is None else now
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")
        text, _, self._partial = text.rpartition("\n")
        self.started.update(_STARTED.findall(text))
        self.loaded.update(_LOADED.findall(text))
        for model, instance in _MARKER.findall(text):
            self.returned.setdefault(instance, (model, now))

    def hung(self, now: float | None = None) -> dict[str, float]:
        """Model -> seconds since its last instance returned, for every model not loaded whose
        instances Triton began have all returned, ``hang_s`` or more ago."""
        now = time.monotonic() if now is None else now
        last: dict[str, float] = {}
        for instance, (model, seen) in self.returned.items():
            last[model] = max(seen, last.get(model, seen))
        out = {}
        for model, seen in last.items():
            mine = {i for i, (m, _) in self.returned.items() if m == model}
            began = {i for i in self.started if i in mine or i.rsplit("_", 2)[0] == model}
            if model not in self.loaded and model not in self.ignore and began <= mine and now - seen >= self.hang_s:
                out[model] = now - seen
        return out
