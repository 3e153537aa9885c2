"""POST a JSON summary to a webhook (Slack/Teams/Alertmanager-style receivers, or your own)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from .levels import ALERT_LEVELS, window_levels, worst_level

log = logging.getLogger(__name__)


def alarm_payload(run: dict[str, Any], levels: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The alarm summary of a scoring run, or None if no window alarmed.

    ``level`` (top level and per window) is the highest alert level any method reached
    (``warning`` / ``critical``, thresholds in ``thresholds``), so receivers can route on it;
    ``levels`` has each method's."""
    alarmed = [w for w in run.get("windows", []) if w.get("scored") and w.get("any_drift")]
    if not alarmed:
        return None
    lv = ALERT_LEVELS if levels is None else levels
    windows = [{
        "level": worst_level(window_levels(w, lv)), "levels": window_levels(w, lv),
        "label": w["label"], "start": w["start"], "end": w["end"], "n": w["n"],
        "drifted": w["drifted"], "accuracy": w.get("accuracy"),
        "summary": w.get("explanation", {}).get("summary"),
        "top_field": w.get("explanation", {}).get("top_field"),
        "p_values": {k: m["p_value"] for k, m in w["methods"].items()},
    } for w in alarmed]
    last = alarmed[-1]
    level = worst_level({str(i): w["level"] for i, w in enumerate(windows)})
    return {
        "event": "drift_alarm",
        "level": level,
        "thresholds": dict(lv),
        "model": run["model"],
        "baseline_version": run.get("baseline", {}).get("version"),
        "created_at": run.get("created_at"),
        "alarmed_windows": len(alarmed),
        "windows_scored": sum(1 for w in run["windows"] if w.get("scored")),
        "text": f"[{level}] drift alarm for {run['model']}: {len(alarmed)} window(s); latest {last['label']}: {last.get('explanation', {}).get('summary', '')}",
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
