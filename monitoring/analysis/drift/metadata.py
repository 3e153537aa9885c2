"""Per-field drift of scalar request metadata (brightness, sharpness, size, tokens, latency, ...)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._validation import MIN_BASELINE_ROWS, check_alpha
from .result import DriftResult

PSI_EPS = 1e-4


def psi_bin_edges(baseline: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Inner edges of (at most) ``n_bins`` equal-frequency bins of the baseline (duplicates merged)."""
    qs = np.quantile(np.asarray(baseline, np.float64), np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return np.unique(qs)


def psi(baseline: np.ndarray, window: np.ndarray, edges: np.ndarray | None = None, n_bins: int = 10, eps: float = PSI_EPS) -> float:
    """Population stability index ``sum_b (w_b - r_b) ln(w_b / r_b)``.

    ``r_b``/``w_b`` are baseline/window shares in bins cut at ``edges`` (inner edges; default:
    baseline deciles), each floored at ``eps`` so empty bins stay finite. Bin b holds values
    ``edges[b-1] < v <= edges[b]``. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major.
    """
    baseline = np.asarray(baseline, np.float64)
    window = np.asarray(window, np.float64)
    if edges is None:
        edges = psi_bin_edges(baseline, n_bins)
    k = edges.size + 1
    r = np.bincount(np.searchsorted(edges, baseline, side="left"), minlength=k) / baseline.size
    w = np.bincount(np.searchsorted(edges, window, side="left"), minlength=k) / window.size
    r = np.maximum(r, eps)
    w = np.maximum(w, eps)
    return float(np.sum((w - r) * np.log(w / r)))


def ks_critical_value(alpha: float, n1: int, n2: int) -> float:
    """Asymptotic two-sample KS critical D at level ``alpha``: ``sqrt(-ln(alpha/2)/2) * sqrt((n1+n2)/(n1 n2))``."""
    return float(np.sqrt(-np.log(alpha / 2.0) / 2.0) * np.sqrt((n1 + n2) / (n1 * n2)))


class MetadataDrift:
    """Two-sample KS test and PSI for every numeric metadata field, Bonferroni-corrected.

    Per field: KS statistic ``D`` (max CDF gap) with its p-value (``scipy.stats.ks_2samp``),
    ``p_adjusted = min(1, p * m)`` over the m tested fields, PSI on baseline deciles, and a
    shift effect size ``W1 / std_ref`` (Wasserstein-1 distance in baseline standard deviations).

    Result: ``statistic`` = the largest D; ``p_value`` = the smallest adjusted p-value;
    ``is_drift = p_value <= alpha``; ``threshold`` = the asymptotic KS critical D at level
    ``alpha/m`` for the top field's sample sizes (reference only: the verdict uses exact p-values).
    The explanation's ``fields`` are sorted by D (ties by effect size), so ``fields[0]`` answers
    "which metadata field moved most". Non-numeric, all-missing and baseline-constant columns are
    skipped and listed with the reason; missing values are dropped per field and counted.
    """

    method = "metadata"

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        alpha: float = 0.01,
        n_bins: int = 10,
        min_baseline: int = MIN_BASELINE_ROWS,
    ) -> None:
        self.columns = None if columns is None else list(columns)
        self.alpha = check_alpha(alpha)
        if int(n_bins) != n_bins or n_bins < 2:
            raise ValueError(f"n_bins must be an integer >= 2, got {n_bins}")
        self.n_bins = int(n_bins)
        self.min_baseline = int(min_baseline)

    @staticmethod
    def _check_frame(df: object, name: str) -> pd.DataFrame:
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise ValueError(f"{name} is empty (0 rows); at least 1 row is required")
        return df

    def fit(self, df_ref: pd.DataFrame) -> "MetadataDrift":
        """Store the baseline values of every usable numeric column of ``df_ref``."""
        df = self._check_frame(df_ref, "df_ref")
        cols = list(df.columns) if self.columns is None else self.columns
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in df_ref (columns: {list(df.columns)})")
        self.skipped_: dict[str, str] = {}
        self.baseline_: dict[str, np.ndarray] = {}
        self.edges_: dict[str, np.ndarray] = {}
        for c in cols:
            s = df[c]
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                self.skipped_[str(c)] = f"non-numeric dtype {s.dtype}"
                continue
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            v = v[np.isfinite(v)]
            if v.size == 0:
                self.skipped_[str(c)] = "all values missing in baseline"
                continue
            if v.size < self.min_baseline:
                self.skipped_[str(c)] = f"only {v.size} non-missing baseline values (< {self.min_baseline})"
                continue
            if np.all(v == v[0]):
                self.skipped_[str(c)] = f"constant in baseline (= {float(v[0])})"
                continue
            self.baseline_[str(c)] = np.sort(v)
            self.edges_[str(c)] = psi_bin_edges(v, self.n_bins)
        if not self.baseline_:
            raise ValueError(
                f"df_ref has no usable numeric column (need >= {self.min_baseline} finite, non-constant "
                f"values); skipped: {self.skipped_}"
            )
        self.fields_ = list(self.baseline_)
        return self

    def score(self, df_window: pd.DataFrame) -> DriftResult:
        """Test every fitted field of ``df_window`` against the baseline."""
        if not hasattr(self, "fields_"):
            raise RuntimeError("MetadataDrift is not fitted: call fit(df_ref) first")
        df = self._check_frame(df_window, "df_window")
        absent = [c for c in self.fields_ if c not in df.columns]
        if absent:
            raise ValueError(f"df_window lacks fitted column(s) {absent}")
        skipped = dict(self.skipped_)
        rows: list[dict[str, Any]] = []
        for c in self.fields_:
            s = df[c]
            if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                skipped[c] = f"non-numeric dtype {s.dtype} in window"
                continue
            raw = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            w = raw[np.isfinite(raw)]
            if w.size == 0:
                skipped[c] = "all values missing in window"
                continue
            b = self.baseline_[c]
            ks = stats.ks_2samp(b, w)
            sd = float(b.std())
            rows.append(
                {
                    "field": c,
                    "ks_statistic": float(ks.statistic),
                    "p_value": float(ks.pvalue),
                    "psi": psi(b, w, self.edges_[c]),
                    "effect_size": float(stats.wasserstein_distance(b, w) / sd) if sd > 0 else 0.0,
                    "baseline_mean": float(b.mean()),
                    "window_mean": float(w.mean()),
                    "baseline_median": float(np.median(b)),
                    "window_median": float(np.median(w)),
                    "n_baseline": int(b.size),
                    "n_window": int(w.size),
                    "window_missing": int(raw.size - w.size),
                }
            )
        m = len(rows)
        if m == 0:
            raise ValueError(f"df_window has no testable values in fields {self.fields_}")
        for r in rows:
            r["p_adjusted"] = min(1.0, r["p_value"] * m)
            r["drifted"] = bool(r["p_adjusted"] <= self.alpha)
        rows.sort(key=lambda r: (-r["ks_statistic"], -r["effect_size"], r["field"]))
        top = rows[0]
        p_min = min(r["p_adjusted"] for r in rows)
        return DriftResult(
            method=self.method,
            statistic=top["ks_statistic"],
            threshold=ks_critical_value(self.alpha / m, top["n_baseline"], top["n_window"]),
            p_value=float(p_min),
            is_drift=bool(p_min <= self.alpha),
            window_size=int(len(df)),
            explanation={
                "fields": rows,
                "top_field": top["field"],
                "drifted_fields": [r["field"] for r in rows if r["drifted"]],
                "n_tested": m,
                "correction": "bonferroni",
                "skipped": skipped,
            },
        )
