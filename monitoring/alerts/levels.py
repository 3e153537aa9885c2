"""Two alert levels per method, from its p-value: ``warning`` at alpha 0.01, ``critical`` at
alpha 0.001 (so teams can page on one and ticket the other).

The levels use the p-value each detector already reports, so they mean the same thing for
every method: the chance of a statistic at least this large on a no-drift window. Bootstrap
methods (cluster_jsd, centroid, mmd) cannot report a p-value below ``1 / (n_null + 1)``: with
the default ``n_null=200`` that is 0.005, so they reach ``critical`` only with a baseline built
with ``--n-null 999`` or more (domain_classifier and metadata have analytic p-values).
"""

from __future__ import annotations

from typing import Any

#: Default p-value thresholds per level, strictest last. Same values as deploy/prometheus/alerts.yml.
ALERT_LEVELS: dict[str, float] = {"warning": 0.01, "critical": 0.001}
LEVEL_RANK = {"ok": 0, "warning": 1, "critical": 2}


def level_of(result: dict[str, Any], levels: dict[str, float] | None = None) -> str:
    """``ok``, ``warning`` or ``critical`` for one method's saved result (``p_value``, ``is_drift``)."""
    lv = ALERT_LEVELS if levels is None else levels
    p = result.get("p_value")
    if p is None:
        return "warning" if result.get("is_drift") else "ok"
    if p <= lv["critical"]:
        return "critical"
    if p <= lv["warning"] or result.get("is_drift"):
        return "warning"
    return "ok"


def window_levels(window: dict[str, Any], levels: dict[str, float] | None = None) -> dict[str, str]:
    """The level of every method of a scored window."""
    return {m: level_of(r, levels) for m, r in window.get("methods", {}).items()}


def worst_level(levels: dict[str, str]) -> str:
    return max(levels.values(), key=LEVEL_RANK.__getitem__, default="ok")
