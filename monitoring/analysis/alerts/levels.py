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


def window_levels(window: Any, levels: dict[str, float] | None = None) -> dict[str, str]:
    """The level of every method of a scored window (a typed ``WindowScore`` or its JSON)."""
    methods = window.methods if hasattr(window, "methods") else window.get("methods", {})
    return {m: level_of(r.to_json() if hasattr(r, "to_json") else r, levels) for m, r in methods.items()}


def worst_level(levels: dict[str, str]) -> str:
    return max(levels.values(), key=LEVEL_RANK.__getitem__, default="ok")


#: What pages a human is stricter than the per-method levels: a monitor scores every model every
#: hour, so the rate of paged clean windows must stay near 1 % whatever the window size. Two
#: embedding methods at p <= 0.005 (for bootstrap methods with n_null=200: beyond every null draw),
#: or metadata at p <= 0.005; critical as before at 0.001. bench/fleet_bench.py measures the rate.
PAGE_LEVELS: dict[str, float] = {"warning": 0.005, "critical": 0.001}
#: The embedding detectors whose agreement pages (deploy/prometheus/alerts.yml, EmbeddingDrift).
PAGE_EMBEDDING_METHODS = ("cluster_jsd", "centroid", "mmd", "domain_classifier")
#: How many of them must be at the warning level together (one method alone fires on about
#: alpha of clean windows per method; requiring two keeps the window's rate near alpha).
PAGE_AGREE = 2


def page_level(methods: dict[str, Any], levels: dict[str, float] | None = None) -> str:
    """What pages a human for one window, the same rule as deploy/prometheus/alerts.yml:

    * ``warning``: at least two of the four embedding methods at p <= 0.005, or metadata at p <= 0.005;
    * ``critical``: that embedding condition with one of them at p <= 0.001, or metadata at p <= 0.001
    (:data:`PAGE_LEVELS`; the per-method levels of :func:`level_of` stay at 0.01 / 0.001).

    ``methods`` is a window's ``{method: {p_value, ...}}``. bench/fleet_bench.py measures this rule's
    rate on clean windows at fleet scale.
    """
    lv = PAGE_LEVELS if levels is None else levels

    def p(m: str) -> float:
        r = methods.get(m)
        v = None if r is None else r.get("p_value")
        return 1.0 if v is None else float(v)

    emb = sorted(p(m) for m in PAGE_EMBEDDING_METHODS)
    meta = p("metadata")
    emb_warn = len(emb) >= PAGE_AGREE and emb[PAGE_AGREE - 1] <= lv["warning"]
    if (emb_warn and emb[0] <= lv["critical"]) or meta <= lv["critical"]:
        return "critical"
    if emb_warn or meta <= lv["warning"]:
        return "warning"
    return "ok"
