"""Output checks for generative models: failed, blank and non-finite outputs, and output statistics.

A generator rarely "mispredicts"; it fails (errors, out of memory), returns a black or flat image
(NaN latents clamp to black; safety filters blank images), or its outputs' brightness/contrast
move. Shares are tested one-sided against the baseline's rate (binomial test: more failures than
the baseline explains), output statistics with the per-field KS test of
:class:`~monitoring.analysis.drift.metadata.MetadataDrift`; all Bonferroni-corrected together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._validation import check_alpha
from .metadata import MetadataDrift
from .result import DriftResult

OUTPUT_STAT_FIELDS = ("output_mean", "output_std")
#: (check name, record column, rows it is a share of)
#: Non-finite outputs are refused (NonFiniteOutputError), so their flag sits on error records.
SHARE_CHECKS = (("failed", "outcome", "records"), ("blank", "output_blank", "ok"), ("nonfinite", "output_nonfinite", "records"))


def _flags(df: pd.DataFrame, column: str) -> np.ndarray:
    if column == "outcome":
        return (df["outcome"].fillna("ok") != "ok").to_numpy() if "outcome" in df.columns else np.zeros(len(df), bool)
    if column not in df.columns:
        return np.zeros(len(df), bool)
    return np.array([bool(v) if v is not None and v is not pd.NA and v == v else False for v in df[column]], dtype=bool)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["outcome"].fillna("ok") == "ok"] if "outcome" in df.columns else df


def output_shares(df: pd.DataFrame) -> dict[str, Any]:
    """Counts and shares of failed / blank / non-finite outputs in a record frame."""
    ok = _ok(df)
    out: dict[str, Any] = {"n_records": int(len(df)), "n_ok": int(len(ok))}
    for name, col, of in SHARE_CHECKS:
        rows = df if of == "records" else ok
        k = int(_flags(rows, col).sum())
        out[f"n_{name}"] = k
        out[f"{name}_share"] = (k / len(rows)) if len(rows) else None
    return out


class OutputChecks:
    """Fit on the baseline's records (errors included where known); score a window's records."""

    method = "outputs"

    def __init__(self, *, alpha: float = 0.01) -> None:
        self.alpha = check_alpha(alpha)

    def fit(self, df_ref: pd.DataFrame, n_ref_errors: int = 0, n_ref_records: int | None = None) -> "OutputChecks":
        """``df_ref``: the baseline's ok rows; ``n_ref_errors``/``n_ref_records``: its source's error count."""
        ref = output_shares(df_ref)
        n_rec = int(n_ref_records if n_ref_records is not None else len(df_ref) + n_ref_errors)
        counts = {"failed": (int(n_ref_errors), n_rec), "blank": (ref["n_blank"], ref["n_ok"]),
                  "nonfinite": (ref["n_nonfinite"], n_rec)}
        # Laplace's rule: a baseline with no failures still allows a rare one.
        self.rates_ = {k: (c + 1) / (n + 2) for k, (c, n) in counts.items()}
        self.baseline_shares_ = {k: (c / n if n else None) for k, (c, n) in counts.items()}
        cols = [c for c in OUTPUT_STAT_FIELDS if c in df_ref.columns and pd.to_numeric(df_ref[c], errors="coerce").notna().any()]
        self.stats_: MetadataDrift | None = None
        if cols:
            try:
                self.stats_ = MetadataDrift(alpha=self.alpha).fit(df_ref[cols].apply(pd.to_numeric, errors="coerce"))
            except ValueError:
                self.stats_ = None
        self.fitted_ = True
        return self

    def score(self, df_window: pd.DataFrame) -> DriftResult:
        if not getattr(self, "fitted_", False):
            raise RuntimeError("OutputChecks is not fitted: call fit(df_ref) first")
        shares = output_shares(df_window)
        checks = []
        for name, _, of in SHARE_CHECKS:
            n = shares["n_records"] if of == "records" else shares["n_ok"]
            k = shares[f"n_{name}"]
            p = float(stats.binomtest(k, n, self.rates_[name], alternative="greater").pvalue) if n else 1.0
            checks.append({"check": name, "window_share": shares[f"{name}_share"], "baseline_share": self.baseline_shares_[name],
                           "count": k, "of": n, "p_value": p})
        stat_fields: list[dict[str, Any]] = []
        ok = _ok(df_window)
        if self.stats_ is not None and len(ok):
            frame = ok.reindex(columns=self.stats_.fields_).apply(pd.to_numeric, errors="coerce")
            if frame.notna().any().any():
                try:
                    res = self.stats_.score(frame)
                    stat_fields = res.explanation["fields"]
                except ValueError:
                    stat_fields = []
        m = len(checks) + len(stat_fields)
        for c in checks:
            c["p_adjusted"] = min(1.0, c["p_value"] * m)
            c["drifted"] = bool(c["p_adjusted"] <= self.alpha)
        stat_rows = []
        for f in stat_fields:
            p_adj = min(1.0, f["p_value"] * m)
            stat_rows.append({k: f[k] for k in ("field", "ks_statistic", "baseline_median", "window_median")}
                             | {"p_adjusted": p_adj, "drifted": bool(p_adj <= self.alpha)})
        p_all = [c["p_adjusted"] for c in checks] + [s["p_adjusted"] for s in stat_rows]
        p_min = min(p_all) if p_all else 1.0
        worst = max((c["window_share"] or 0.0) for c in checks)
        return DriftResult(
            method=self.method, statistic=float(worst), threshold=float("nan"), p_value=float(p_min),
            is_drift=bool(p_min <= self.alpha), window_size=int(shares["n_records"]),
            explanation={"shares": shares, "checks": checks, "stats": stat_rows,
                         "drifted_checks": [c["check"] for c in checks if c["drifted"]] + [s["field"] for s in stat_rows if s["drifted"]]},
        )
