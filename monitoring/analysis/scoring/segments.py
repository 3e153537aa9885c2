"""``score --by FIELD``: every segment of a window scored on its own, false alarms controlled across segments.

A segment is the rows of a window whose request carried ``segment.<FIELD>=<value>``
(``segment_attrs`` column; rows without it form the segment ``(none)``). Drift confined to one
tenant can be total there and invisible in the whole, so each segment is scored against the
same baseline with every detector, each threshold calibrated to *that segment's* size (the
detectors' nulls are drawn at the segment's row count).

False alarms across segments: **Bonferroni**. With ``m`` segments tested in a window, every
method runs at ``alpha / m``, so the chance that any clean segment alarms on a given method stays
<= alpha. Permutation p-values cannot go below ``1 / (1 + n_null)``, so ``n_null`` is raised to
``ceil(2 m / alpha)`` to make ``alpha / m`` reachable with room to spare (more null draws: the
cost grows with the number of segments). Bonferroni rather than Benjamini-Hochberg: an alert
per segment is a family-wise decision (page someone or not), and m is small (capped).

Distinct values per window are capped (``max_segments``, default 10): the largest segments by
row count are scored, the rest pooled into ``(other)``: a caller that sends a fresh value per
request cannot make scoring cost explode.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pandas as pd

DEFAULT_MAX_SEGMENTS = 10
MISSING = "(none)"
OTHER = "(other)"


def segment_values(df: pd.DataFrame, field: str) -> pd.Series:
    """The value of attribute ``field`` for every row (``(none)`` where the request had none)."""
    if "segment_attrs" not in df.columns:
        return pd.Series([MISSING] * len(df), index=df.index, dtype=object)

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return MISSING
        try:
            attrs = json.loads(v) if isinstance(v, str) else dict(v)
        except (ValueError, TypeError):
            return MISSING
        value = attrs.get(field)
        return MISSING if value is None else str(value)

    return df["segment_attrs"].map(one)


def cap_segments(values: pd.Series, max_segments: int) -> pd.Series:
    """Keep the ``max_segments - 1`` largest values, pool the rest into ``(other)`` (all kept if they fit)."""
    if max_segments < 2:
        raise ValueError(f"--max-segments: {max_segments} must be >= 2")
    counts = values.value_counts()
    if len(counts) <= max_segments:
        return values
    keep = set(counts.index[: max_segments - 1])
    return values.where(values.isin(keep), OTHER)


class SegmentFits:
    """Baseline fits at the Bonferroni-corrected alpha, one set per number of segments (cached)."""

    def __init__(self, baseline: Any, *, full_width: bool = False) -> None:
        self.baseline = baseline
        self.full_width = full_width  # the representation of the window's own scoring (ModelFits.fit)
        cfg = baseline.detector_config
        self.alpha = float(cfg["alpha"])
        self.n_null = int(cfg["n_null"])
        self._fits: dict[int, Any] = {}

    def corrected(self, m: int) -> tuple[float, int]:
        """(alpha per segment, null draws) for ``m`` segments."""
        m = max(1, m)
        return self.alpha / m, max(self.n_null, math.ceil(2 * m / self.alpha))

    def fits(self, m: int) -> Any:
        from .runner import ModelFits

        if m not in self._fits:
            alpha, n_null = self.corrected(m)
            b = self.baseline
            detectors = dict(b.manifest.get("detectors", {}), alpha=alpha, n_null=n_null)
            self._fits[m] = ModelFits.fit(dataclasses.replace(b, manifest=dict(b.manifest, detectors=detectors)),
                                          full_width=self.full_width)
        return self._fits[m]


def score_segments(seg_fits: SegmentFits, df: pd.DataFrame, field: str, *, min_window: int,
                   max_segments: int = DEFAULT_MAX_SEGMENTS) -> dict[str, Any]:
    """Every segment of one window: ``{"by", "correction", "segments": [...], "drifted_segments": [...]}``."""
    from .runner import score_window

    values = cap_segments(segment_values(df, field), max_segments)
    counts = values.value_counts()
    tested = [v for v, c in counts.items() if c >= min_window]
    m = len(tested)
    alpha, n_null = seg_fits.corrected(m)
    out: dict[str, Any] = {"by": field, "correction": {"method": "bonferroni", "m": m, "alpha_family": seg_fits.alpha,
                                                       "alpha_per_segment": alpha, "n_null": n_null}}
    segs = []
    for value, count in counts.items():
        entry: dict[str, Any] = {"value": value, "n_records": int(count)}
        if value not in tested:
            entry.update(scored=False, any_drift=False, drifted=[],
                         skipped_reason=f"{count} records (< --min-window {min_window})")
            segs.append(entry)
            continue
        sub = df[values == value]
        res = score_window(seg_fits.fits(m), sub, min_window=min_window)
        entry.update({k: res.get(k) for k in ("n", "scored", "any_drift", "drifted", "estimated_accuracy")})
        entry["methods"] = {k: {f: r.get(f) for f in ("statistic", "threshold", "p_value", "is_drift")}
                            for k, r in (res.get("methods") or {}).items()}
        entry["summary"] = (res.get("explanation") or {}).get("summary", res.get("skipped_reason", ""))
        segs.append(entry)
    out["segments"] = segs
    out["drifted_segments"] = [s["value"] for s in segs if s.get("any_drift")]
    return out


def describe_segments(seg: dict[str, Any]) -> str:
    """``segment tenant=b moved (mmd, centroid)`` for the window's one-line explanation."""
    moved = [s for s in seg["segments"] if s.get("any_drift")]
    if not moved:
        return ""
    return "; ".join(f"segment {seg['by']}={s['value']} moved ({', '.join(s['drifted'])})" for s in moved)
