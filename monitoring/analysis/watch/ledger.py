"""What the watch loop has scored, kept in the store next to the scores.

One small object per scored window state::

    _monitoring/watch/ledger/model=<m>/<start_ms>-<end_ms>-n<records>.json

The key alone says which window was scored with how many records, so one LIST gives the
ledger (no object is ever rewritten, so N writers cannot lose each other's entries). A window
is due when it has records and no entry with its current record count: records that arrive
late change the count, and the window is scored again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from monitoring.analysis.artifacts import ROOT, write_json
from monitoring.capture.fields import check_model_name

WATCH_PREFIX = f"{ROOT}/watch/"
_ENTRY = re.compile(r"(\d+)-(\d+)-n(\d+)\.json$")


@dataclass(frozen=True)
class WindowState:
    """A window and how many records it held when looked at."""

    start_ms: int
    end_ms: int
    records: int

    @property
    def name(self) -> str:
        return f"{self.start_ms:013d}-{self.end_ms:013d}-n{self.records}"


def ledger_prefix(model: str) -> str:
    return f"{WATCH_PREFIX}ledger/model={check_model_name(model)}/"


def scored_states(backend: Any, model: str) -> set[WindowState]:
    """Every window state the ledger holds for ``model``."""
    out = set()
    for e in backend.list(ledger_prefix(model)):
        m = _ENTRY.search(e.key)
        if m:
            out.add(WindowState(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return out


def record_scored(backend: Any, model: str, state: WindowState, info: dict[str, Any]) -> str:
    key = f"{ledger_prefix(model)}{state.name}.json"
    write_json(backend, key, info)
    return key
