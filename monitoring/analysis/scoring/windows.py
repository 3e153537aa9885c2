"""Cutting a model's records into windows: aligned time windows, N-record windows, or explicit ranges."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np

UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
#: Weeks start on Monday 00:00 UTC (1970-01-01 was a Thursday: Monday 1970-01-05 is 4 days in).
WEEK_OFFSET_MS = 4 * 86_400_000


@dataclass(frozen=True)
class Window:
    label: str
    start_ms: int
    end_ms: int            # exclusive
    positions: tuple[int, int] | None = None   # N-record windows: row range [a, b) in ts order


def parse_every(text: str) -> int:
    """``"1h"``, ``"30m"``, ``"1d"``, ``"1w"``, ``"90s"`` -> milliseconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(text).lower())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"--every {text!r}: expected a positive count and a unit s/m/h/d/w, e.g. 1h, 1d, 1w")
    return int(m.group(1)) * UNIT_MS[m.group(2)]


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def time_windows(ts_ms: np.ndarray, every_ms: int, since_ms: int | None = None, until_ms: int | None = None) -> list[Window]:
    """Calendar-aligned windows of ``every_ms`` covering [since, until) (default: the whole windows
    around the records' span).

    Windows are aligned to multiples of the period since the epoch (weeks: since a Monday), so
    ``--every 1d`` gives UTC days. Empty windows in the middle are kept (they show gaps)."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    if (since_ms is None or until_ms is None) and ts.size == 0:
        return []
    lo = int(ts.min()) if since_ms is None else since_ms
    hi = int(ts.max()) + 1 if until_ms is None else until_ms
    off = WEEK_OFFSET_MS if every_ms % UNIT_MS["w"] == 0 else 0
    start = ((lo - off) // every_ms) * every_ms + off
    out = []
    while start < hi:
        # whole calendar windows, clipped only to bounds the caller gave
        a = start if since_ms is None else max(start, since_ms)
        b = start + every_ms if until_ms is None else min(start + every_ms, until_ms)
        out.append(Window(iso(start), a, b))
        start += every_ms
    return out


def count_windows(ts_ms: np.ndarray, every_n: int) -> list[Window]:
    """Consecutive windows of ``every_n`` records (in time order); the last may be shorter."""
    if every_n <= 0:
        raise ValueError(f"--every-n must be positive, got {every_n}")
    ts = np.asarray(ts_ms, dtype=np.int64)
    out = []
    for i, a in enumerate(range(0, ts.size, every_n)):
        b = min(a + every_n, ts.size)
        out.append(Window(f"#{i + 1} (records {a + 1}-{b})", int(ts[a]), int(ts[b - 1]) + 1, (a, b)))
    return out


def parse_window_spec(text: str) -> Window:
    """``LABEL=SINCE..UNTIL`` (bounds: ISO-8601 or epoch s/ms) -> Window."""
    from monitoring.ingest.store.reader import to_epoch_ms

    label, eq, rng = text.partition("=")
    if not eq or ".." not in rng:
        raise ValueError(f"--window {text!r}: expected LABEL=SINCE..UNTIL, e.g. week1=2024-05-06..2024-05-13")
    a, _, b = rng.partition("..")
    since, until = to_epoch_ms(a.strip()), to_epoch_ms(b.strip())
    if since is None or until is None or until <= since:
        raise ValueError(f"--window {text!r}: UNTIL must be after SINCE")
    return Window(label.strip(), since, until)
