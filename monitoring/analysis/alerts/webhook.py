"""POST a JSON summary to a webhook (Slack/Teams/Alertmanager-style receivers, or your own)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from .levels import ALERT_LEVELS, window_levels, worst_level

log = logging.getLogger(__name__)


def alarm_payload(run: Any, levels: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The alarm summary of a scoring run (a typed :class:`~monitoring.analysis.scoring.result.ScoreRun`,
    or a saved run's JSON), or None if no window alarmed.

    ``level`` (top level and per window) is the highest alert level any method reached
    (``warning`` / ``critical``, thresholds in ``thresholds``), so receivers can route on it;
    ``levels`` has each method's."""
    from monitoring.analysis.scoring.result import as_run  # noqa: PLC0415 - scoring imports alerts.levels
    from monitoring.analysis.scoring.windows import iso  # noqa: PLC0415

    run = as_run(run)
    alarmed = [w for w in run.windows if w.scored and w.any_drift]
    if not alarmed:
        return None
    lv = ALERT_LEVELS if levels is None else levels
    windows = [{
        "level": worst_level(window_levels(w, lv)), "levels": window_levels(w, lv),
        "label": w.label, "start": iso(w.start_ms), "end": iso(w.end_ms), "n": w.n,
        "drifted": list(w.drifted), "accuracy": w.detail("accuracy"),
        "summary": w.detail("explanation", {}).get("summary"),
        "top_field": w.detail("explanation", {}).get("top_field"),
        "p_values": w.p_values(),
    } for w in alarmed]
    last = alarmed[-1]
    level = worst_level({str(i): w["level"] for i, w in enumerate(windows)})
    return {
        "event": "drift_alarm",
        "level": level,
        "thresholds": dict(lv),
        "model": run.model,
        "baseline_version": run.baseline.get("version"),
        "created_at": run.created_at or None,
        "alarmed_windows": len(alarmed),
        "windows_scored": sum(1 for w in run.windows if w.scored),
        "text": f"[{level}] drift alarm for {run.model}: {len(alarmed)} window(s); latest {last.label}: "
                f"{last.detail('explanation', {}).get('summary', '')}",
        "windows": windows,
    }


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> int:
    """POST ``payload`` as JSON; returns the HTTP status. Raises OSError on network failure."""
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
