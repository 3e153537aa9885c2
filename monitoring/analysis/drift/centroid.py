"""Centroid distance (Arize's method): how far the window's mean embedding is from the baseline's."""

from __future__ import annotations

from typing import Any

import numpy as np

from .calibration import (
    DEFAULT_ALPHA,
    DEFAULT_N_NULL,
    CalibratedDetector,
    baseline_pool,
    bootstrap_counts,
)

_EPS = 1e-12


def euclidean_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Row-wise ``||a - b||_2`` (broadcast over leading axes)."""
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Row-wise ``1 - a.b / (|a| |b|)`` (broadcast over leading axes); 1.0 if either is zero."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    num = np.sum(a * b, axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    d = 1.0 - np.where(den > _EPS, num / np.maximum(den, _EPS), 0.0)
    return float(d) if np.ndim(d) == 0 else d


_METRICS = {"euclidean": euclidean_distance, "cosine": cosine_distance}


class CentroidDistance(CalibratedDetector):
    """Distance between the baseline centroid and the window centroid.

    Statistic: ``||mean(X_ref) - mean(X_window)||_2`` (``metric="euclidean"``, Arize's embedding
    drift) or ``1 - cos(mean(X_ref), mean(X_window))`` (``metric="cosine"``). Both values are
    always reported in the explanation, with the dimensions whose mean moved most (in baseline
    standard deviations).

    Null: bootstrap means, reference of size N and window of size n, drawn from the baseline
    (a random pool of at most ``max_pool`` rows); computed as one ``(n_null, pool) @ (pool, d)``
    matrix product per window size.

    Cosine distance between centroids is ill-conditioned when the embeddings are centred (the
    centroid is then close to 0); prefer euclidean unless embeddings are, e.g., post-ReLU.
    """

    method = "centroid"

    def __init__(
        self,
        metric: str = "euclidean",
        *,
        alpha: float = DEFAULT_ALPHA,
        n_null: int = DEFAULT_N_NULL,
        size_grid: float | None = 1.05,
        max_pool: int | None = 10000,
        top_dimensions: int = 10,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(alpha=alpha, n_null=n_null, size_grid=size_grid, random_state=random_state)
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
        self.metric = metric
        self.method = f"centroid_{metric}"
        self.max_pool = max_pool
        self.top_dimensions = int(top_dimensions)

    def _dtype(self) -> type:
        return np.float32

    def _fit(self, X: np.ndarray) -> None:
        self.centroid_ = X.mean(axis=0, dtype=np.float64)
        self.scale_ = X.std(axis=0, dtype=np.float64)
        self._pool = baseline_pool(X, self.max_pool, self._rng_fit)
        counts = bootstrap_counts(self._rng_fit, self.n_null, self._pool.shape[0], self.n_baseline_)
        self.null_ref_centroids_ = (counts @ self._pool).astype(np.float64) / self.n_baseline_

    def _statistic(self, X: np.ndarray) -> tuple[float, dict[str, Any]]:
        mu = X.mean(axis=0, dtype=np.float64)
        eu = euclidean_distance(self.centroid_, mu)
        co = cosine_distance(self.centroid_, mu)
        shift = (mu - self.centroid_) / np.where(self.scale_ > 0, self.scale_, 1.0)
        k = min(self.top_dimensions, shift.size)
        top = np.argsort(-np.abs(shift), kind="stable")[:k]
        expl = {
            "metric": self.metric,
            "euclidean": float(eu),
            "cosine": float(co),
            "top_dimensions": [
                {
                    "dimension": int(j),
                    "baseline_mean": float(self.centroid_[j]),
                    "window_mean": float(mu[j]),
                    "shift_in_std": float(shift[j]),
                }
                for j in top
            ],
        }
        stat = eu if self.metric == "euclidean" else co
        return float(stat), expl

    def _null_statistics(self, n: int, rng: np.random.Generator) -> np.ndarray:
        counts = bootstrap_counts(rng, self.n_null, self._pool.shape[0], n)
        win = (counts @ self._pool).astype(np.float64) / n
        return _METRICS[self.metric](self.null_ref_centroids_, win)
