"""Drift of generation settings (steps, guidance, strength, noise level, size, negative prompt use).

Settings are few distinct values chosen by clients, often one constant value for a whole
baseline, so the continuous tests of :class:`~monitoring.analysis.drift.metadata.MetadataDrift` (which
skips baseline-constant fields) do not fit. Each field is compared as a categorical variable:
a chi-square test of the baseline's and the window's value counts (a value never seen in the
baseline is its own category), Bonferroni-corrected over the fields tested.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._validation import check_alpha
from .result import DriftResult

#: Settings compared by default; ``gen_size`` is derived from gen_width x gen_height.
SETTINGS_FIELDS = ("gen_steps", "gen_guidance", "gen_strength", "gen_noise_level", "gen_size", "has_negative_prompt")
#: The category of a missing value (e.g. strength on text2img requests).
UNSET = "unset"
MIN_BASELINE_SETTINGS = 20


def settings_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The settings columns of a record frame as strings (missing -> ``"unset"``)."""
    out = pd.DataFrame(index=df.index)
    for f in ("gen_steps", "gen_guidance", "gen_strength", "gen_noise_level", "has_negative_prompt"):
        if f in df.columns:
            out[f] = [_label(v) for v in df[f]]
    if "gen_width" in df.columns and "gen_height" in df.columns:
        out["gen_size"] = [UNSET if _missing(w) or _missing(h) else f"{int(w)}x{int(h)}"
                           for w, h in zip(df["gen_width"], df["gen_height"])]
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def _label(v: Any) -> str:
    if _missing(v):
        return UNSET
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v)) if abs(v) >= 2 else f"{float(v):g}"
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def _shares(values: pd.Series) -> dict[str, float]:
    c = values.value_counts()
    return {str(k): float(v) / len(values) for k, v in c.items()}


class SettingsDrift:
    """Chi-square test per settings field, baseline value counts vs the window's.

    Result: ``statistic`` = the largest total-variation distance between a field's baseline and
    window value shares (0 = same mix, 1 = disjoint); ``p_value`` = the smallest Bonferroni-
    adjusted p-value; ``is_drift = p_value <= alpha``. ``threshold`` is NaN: the verdict rests on
    the p-values. The explanation lists every field with both share tables and what moved.
    """

    method = "settings"

    def __init__(self, fields: Sequence[str] = SETTINGS_FIELDS, *, alpha: float = 0.01,
                 min_baseline: int = MIN_BASELINE_SETTINGS) -> None:
        self.fields = list(fields)
        self.alpha = check_alpha(alpha)
        self.min_baseline = int(min_baseline)

    def fit(self, df_ref: pd.DataFrame) -> "SettingsDrift":
        """Keep the value counts of every settings field set on at least ``min_baseline`` rows."""
        frame = settings_frame(df_ref)
        self.counts_: dict[str, pd.Series] = {}
        self.skipped_: dict[str, str] = {}
        for f in self.fields:
            if f not in frame.columns:
                continue
            col = frame[f]
            n_set = int((col != UNSET).sum())
            if n_set < self.min_baseline:
                self.skipped_[f] = f"set on {n_set} baseline rows (< {self.min_baseline})"
                continue
            self.counts_[f] = col.value_counts()
        if not self.counts_:
            raise ValueError(f"no generation setting is set on >= {self.min_baseline} baseline rows "
                             f"(fields {self.fields}); skipped: {self.skipped_}")
        self.fields_ = list(self.counts_)
        return self

    def score(self, df_window: pd.DataFrame) -> DriftResult:
        if not hasattr(self, "fields_"):
            raise RuntimeError("SettingsDrift is not fitted: call fit(df_ref) first")
        frame = settings_frame(df_window)
        rows: list[dict[str, Any]] = []
        for f in self.fields_:
            if f not in frame.columns or len(frame) == 0:
                continue
            ref, win = self.counts_[f], frame[f].value_counts()
            cats = sorted(set(ref.index) | set(win.index))
            table = np.array([[ref.get(c, 0) for c in cats], [win.get(c, 0) for c in cats]], dtype=np.float64)
            if len(cats) < 2:
                chi2, p = 0.0, 1.0
            else:
                chi2, p = stats.chi2_contingency(table, correction=False)[:2]
            b_share = table[0] / table[0].sum()
            w_share = table[1] / table[1].sum()
            tv = float(0.5 * np.abs(b_share - w_share).sum())
            moved = sorted(((c, float(w - b)) for c, b, w in zip(cats, b_share, w_share) if abs(w - b) >= 0.05),
                           key=lambda t: -abs(t[1]))
            rows.append({
                "field": f, "chi2": float(chi2), "p_value": float(p), "tv_distance": tv,
                "baseline": {c: float(s) for c, s in zip(cats, b_share) if s > 0},
                "window": {c: float(s) for c, s in zip(cats, w_share) if s > 0},
                "moved": [{"value": c, "delta": d} for c, d in moved],
                "n_baseline": int(table[0].sum()), "n_window": int(table[1].sum()),
            })
        if not rows:
            raise ValueError(f"df_window has none of the fitted settings fields {self.fields_}")
        m = len(rows)
        for r in rows:
            r["p_adjusted"] = min(1.0, r["p_value"] * m)
            r["drifted"] = bool(r["p_adjusted"] <= self.alpha)
        rows.sort(key=lambda r: (-r["tv_distance"], r["field"]))
        p_min = min(r["p_adjusted"] for r in rows)
        return DriftResult(
            method=self.method,
            statistic=float(rows[0]["tv_distance"]),
            threshold=float("nan"),
            p_value=float(p_min),
            is_drift=bool(p_min <= self.alpha),
            window_size=int(len(frame)),
            explanation={"fields": rows, "drifted_fields": [r["field"] for r in rows if r["drifted"]],
                         "n_tested": m, "correction": "bonferroni", "skipped": dict(self.skipped_)},
        )


def describe_moves(explanation: dict[str, Any], limit: int = 3) -> list[str]:
    """``"gen_steps: 20 100% -> 50 100%"``-style lines for the drifted fields."""
    out = []
    for r in explanation.get("fields", []):
        if not r.get("drifted"):
            continue
        top_b = max(r["baseline"].items(), key=lambda t: t[1])
        top_w = max(r["window"].items(), key=lambda t: t[1])
        out.append(f"{r['field']}: {top_b[0]} ({top_b[1]:.0%} of baseline) -> {top_w[0]} ({top_w[1]:.0%} of window)")
    return out[:limit]
