"""Scored windows and capture counters -> metric data points (CloudWatch-shaped, backend-neutral).

Names and dimensions are a contract with ``deploy/alarms.py`` (alarms and dashboard) and
docs/watch.md. Each value is published at the full dimension set and rolled up (CloudWatch
never aggregates across dimensions): the alarms watch the roll-ups with no dimension, so one
alarm covers every model of the endpoint; the dashboard shows the per-model series.

Data points of a window carry the window's start as timestamp, so a window scored late (or
re-scored when records arrived late) lands in its own period, not in the current one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from monitoring.analysis.alerts.levels import ALERT_LEVELS, LEVEL_RANK, level_of
from monitoring.analysis.scoring.result import MethodScore, ScoreRun, WindowScore, as_run

# -- metric names (deploy/alarms.py repeats them: deploy may not import monitoring) -----------
DRIFT_STATISTIC = "DriftStatistic"
DRIFT_P_VALUE = "DriftPValue"
DRIFT_IS_DRIFT = "DriftIsDrift"
DRIFT_ALERT_LEVEL = "DriftAlertLevel"     # the window's level (alerts.yml's rule): 0 ok, 1 warning, 2 critical
METHOD_ALERT_LEVEL = "DriftMethodAlertLevel"  # one method's level, from its p-value alone
WINDOW_SIZE = "WindowSize"
ACCURACY = "Accuracy"
ACCURACY_LABELED = "AccuracyLabeled"
WINDOWS_SCORED = "WindowsScored"
WATCH_PASSES = "WatchPasses"              # heartbeat: one per loop pass (the stale alarm)
CAPTURE_WRITTEN = "CaptureRecordsWritten"
CAPTURE_DROPPED = "CaptureRecordsDropped"
CAPTURE_SPOOL_BYTES = "CaptureSpoolBytes"

EMBEDDING_METHODS = ("cluster_jsd", "centroid", "mmd", "domain_classifier")


@dataclass(frozen=True)
class Point:
    name: str
    value: float
    timestamp_ms: int
    dimensions: tuple[tuple[str, str], ...] = ()
    unit: str = "None"

    def dims(self) -> dict[str, str]:
        return dict(self.dimensions)


@dataclass
class Batch:
    points: list[Point] = field(default_factory=list)

    def add(self, name: str, value: float, ts_ms: int, dims: dict[str, str] | None = None, unit: str = "None",
            rollups: Iterable[Iterable[str]] = ()) -> None:
        """Add the point at ``dims`` and at each roll-up (the subset of dimension names kept)."""
        full = dict(dims or {})
        seen = set()
        for keep in [tuple(full), *[tuple(r) for r in rollups]]:
            d = tuple((k, full[k]) for k in keep if k in full)
            if d in seen:
                continue
            seen.add(d)
            self.points.append(Point(name, float(value), int(ts_ms), d, unit))


def _methods(window: Any) -> dict[str, MethodScore]:
    """A window's methods as MethodScores (a typed WindowScore's, or read from a window's JSON)."""
    if isinstance(window, WindowScore):
        return window.methods
    return {k: MethodScore.from_json(k, v) for k, v in (window.get("methods") or {}).items()}


def window_alert_level(window: WindowScore | dict[str, Any], levels: dict[str, float] | None = None) -> int:
    """One level for the window, the rule of deploy/prometheus/alerts.yml: two embedding methods
    agree at the warning p-value (critical when one of them also reaches the critical one), or
    the metadata test alone. 0 ok, 1 warning, 2 critical."""
    lv = ALERT_LEVELS if levels is None else levels
    methods = _methods(window)
    ps = [methods[m].p_value for m in EMBEDDING_METHODS if m in methods]
    ps = [p for p in ps if p is not None]
    emb = 0
    if sum(p <= lv["warning"] for p in ps) >= 2:
        emb = 2 if any(p <= lv["critical"] for p in ps) else 1
    meta = LEVEL_RANK[level_of(methods["metadata"].to_json(), lv)] if "metadata" in methods else 0
    return max(emb, meta)


def window_points(model: str, window: WindowScore | dict[str, Any]) -> Batch:
    """Every data point of one scored window of ``model`` (a typed WindowScore, or its JSON)."""
    w = window if isinstance(window, WindowScore) else WindowScore.from_json(window)
    b = Batch()
    ts = int(w.start_ms)
    md = {"Model": model}
    b.add(WINDOW_SIZE, w.n, ts, md, "Count", rollups=[()])
    b.add(WINDOWS_SCORED, 1, ts, md, "Count", rollups=[()])
    if w.detail("accuracy") is not None:
        b.add(ACCURACY, w.detail("accuracy"), ts, md, rollups=[()])
        b.add(ACCURACY_LABELED, w.detail("n_labeled", 0), ts, md, "Count", rollups=[()])
    if not w.scored:
        return b
    b.add(DRIFT_ALERT_LEVEL, window_alert_level(w), ts, md, rollups=[()])
    spaces = w.detail("spaces", {})
    for name, sp in spaces.items():
        for method, r in (sp.get("methods") or {}).items():
            _method_points(b, model, name, MethodScore.from_json(method, r), ts)
    primary = w.detail("primary_space")
    for method, r in w.methods.items():
        space = r.space or primary
        if space in spaces:
            continue  # embedding-space methods were added above
        _method_points(b, model, space, r, ts)
    return b


def _method_points(b: Batch, model: str, space: str, r: MethodScore, ts: int) -> None:
    d = {"Model": model, "Space": str(space), "Method": r.method}
    if r.statistic is not None:
        b.add(DRIFT_STATISTIC, r.statistic, ts, d)
    if r.p_value is not None:
        b.add(DRIFT_P_VALUE, r.p_value, ts, d)
    b.add(DRIFT_IS_DRIFT, 1.0 if r.is_drift else 0.0, ts, d)
    b.add(METHOD_ALERT_LEVEL, LEVEL_RANK[level_of(r.to_json())], ts, d)


def run_points(run: ScoreRun | dict[str, Any]) -> Batch:
    run = as_run(run)
    b = Batch()
    for w in run.windows:
        b.points += window_points(run.model, w).points
    return b


def heartbeat(ts_ms: int, models: Iterable[str]) -> Batch:
    b = Batch()
    b.add(WATCH_PASSES, 1, ts_ms, unit="Count")
    for m in models:
        b.add(WATCH_PASSES, 1, ts_ms, {"Model": m}, "Count")
    return b


def capture_points(ts_ms: int, written: dict[str, float], dropped: dict[str, float], spool_bytes: float) -> Batch:
    """Capture health since the last publish: records written and dropped per model (deltas), spool bytes."""
    b = Batch()
    for name, per_model in ((CAPTURE_WRITTEN, written), (CAPTURE_DROPPED, dropped)):
        b.add(name, sum(per_model.values()), ts_ms, unit="Count")
        for m, v in per_model.items():
            b.add(name, v, ts_ms, {"Model": m}, "Count")
    b.add(CAPTURE_SPOOL_BYTES, spool_bytes, ts_ms, unit="Bytes")
    return b
