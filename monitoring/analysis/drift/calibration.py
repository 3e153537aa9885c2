"""Window-size-calibrated thresholds: the null distribution of a statistic at the window's own size.

Why: with no drift at all, distances between a baseline summary and a window of ``n`` samples are
not zero; their noise floor shrinks roughly like ``1/sqrt(n)`` (JS distance over k clusters is about
``sqrt((k-1)/n)``). A fixed threshold therefore alarms on small windows and misses drift on large
ones. Every resampling detector here instead compares the statistic with B draws of the same
statistic computed on *no-drift* pairs of the same sizes:

* the "reference" side is a bootstrap resample of size ``N`` (the baseline size) and
* the "window" side is a bootstrap resample of size ``n`` (the window size),

both drawn with replacement from the empirical baseline (or a random pool of it). Resampling both
sides reproduces the variance of a fresh window against a finite baseline, ``(1/n + 1/N)``; resampling
only the window from the baseline it is compared with would share atoms with the reference and make
the null too tight (false alarms), and subsampling without replacement would shrink the variance by
the finite-population factor for large windows.

``threshold`` is the smallest value whose exceedance gives ``p_value <= alpha`` with
``p_value = (1 + #{null >= statistic}) / (1 + B)``, so ``is_drift == (statistic > threshold)
== (p_value <= alpha)`` exactly, and under exchangeability the false-alarm rate is at most alpha.
Null draws are cached per window size; sizes above ``exact_below`` are rounded *down* to a
geometric grid (ratio ``size_grid``) so that windows of 1000, 1003 and 1011 rows share one null.
Rounding down is conservative: the null of a smaller window is wider.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

import numpy as np

from ._validation import MIN_BASELINE_ROWS, check_alpha, check_embeddings
from .result import DriftResult

DEFAULT_ALPHA = 0.01
DEFAULT_N_NULL = 200
EXACT_SIZES_BELOW = 64
MAX_CACHED_SIZES = 64


def calibration_size(n: int, size_grid: float | None = 1.05, exact_below: int = EXACT_SIZES_BELOW) -> int:
    """Window size whose null distribution is used for a window of ``n`` rows.

    ``n`` itself when ``size_grid`` is None or ``n < exact_below``; otherwise the largest value of
    ``floor(exact_below * size_grid**k)`` that is ``<= n``.
    """
    if size_grid is None or n < exact_below:
        return int(n)
    k = math.floor(math.log(n / exact_below) / math.log(size_grid) + 1e-9)
    m = int(math.floor(exact_below * size_grid**k + 1e-9))
    return max(exact_below, min(m, n))


def n_exceed_allowed(alpha: float, n_null: int) -> int:
    """Largest count of null draws >= statistic that still gives ``p_value <= alpha``."""
    return math.floor(alpha * (n_null + 1) + 1e-12) - 1


def calibrated_threshold(null: np.ndarray, alpha: float) -> float:
    """Threshold t with ``statistic > t  <=>  (1 + #{null >= statistic})/(1 + B) <= alpha``.

    That is the (c+1)-th largest null value, c = floor(alpha (B+1)) - 1.
    """
    null = np.sort(np.asarray(null, dtype=np.float64))[::-1]
    c = n_exceed_allowed(alpha, null.size)
    if c < 0:
        raise ValueError(
            f"n_null={null.size} is too small for alpha={alpha}: need n_null >= {math.ceil(1 / alpha) - 1}"
        )
    return float(null[c])


def empirical_p_value(statistic: float, null: np.ndarray) -> float:
    """``(1 + #{null >= statistic}) / (1 + B)``: never 0, valid under exchangeability."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= statistic)) / (1 + null.size))


def bootstrap_counts(rng: np.random.Generator, n_draws: int, pool_size: int, n: int) -> np.ndarray:
    """``(n_draws, pool_size)`` float32 matrix; row b counts how often each pool row is drawn in a
    size-``n`` sample with replacement. ``counts @ pool / n`` is then a batch of bootstrap means."""
    if n <= pool_size:
        idx = rng.integers(0, pool_size, size=(n_draws, n))
        idx += (np.arange(n_draws) * pool_size)[:, None]
        counts = np.bincount(idx.ravel(), minlength=n_draws * pool_size)
        return counts.reshape(n_draws, pool_size).astype(np.float32)
    pvals = np.full(pool_size, 1.0 / pool_size)
    return rng.multinomial(n, pvals, size=n_draws).astype(np.float32)


class CalibratedDetector(ABC):
    """Base class: validation, fit/score skeleton and the per-window-size null cache.

    Subclasses implement ``_fit(X)``, ``_statistic(X) -> (float, dict)`` and
    ``_null_statistics(n, rng) -> ndarray of shape (n_null,)``.
    """

    method: str = "base"
    min_window: int = 2

    def __init__(
        self,
        *,
        alpha: float = DEFAULT_ALPHA,
        n_null: int = DEFAULT_N_NULL,
        size_grid: float | None = 1.05,
        random_state: int | None = 0,
    ) -> None:
        self.alpha = check_alpha(alpha)
        if int(n_null) != n_null or n_null < 1:
            raise ValueError(f"n_null must be a positive integer, got {n_null}")
        if n_exceed_allowed(self.alpha, int(n_null)) < 0:
            raise ValueError(
                f"n_null={n_null} is too small for alpha={alpha}: "
                f"need n_null >= {math.ceil(1 / self.alpha) - 1} to ever reach p <= alpha"
            )
        if size_grid is not None and not size_grid > 1.0:
            raise ValueError(f"size_grid must be > 1 or None, got {size_grid}")
        self.n_null = int(n_null)
        self.size_grid = size_grid
        self.random_state = random_state

    # -- hooks -------------------------------------------------------------------------------
    def _min_baseline(self) -> int:
        return MIN_BASELINE_ROWS

    @abstractmethod
    def _fit(self, X: np.ndarray) -> None: ...

    # The two hooks the generic `score` calls; a detector that overrides `score` (the domain
    # classifier trains per window) needs neither, so they are not abstract.
    def _statistic(self, X: np.ndarray) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _statistic or override score")

    def _null_statistics(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _null_statistics or override score")

    # -- public API --------------------------------------------------------------------------
    def fit(self, X_ref: np.ndarray) -> "CalibratedDetector":
        """Learn the baseline summary from ``X_ref`` (n_samples, n_features). Returns self."""
        X = check_embeddings(X_ref, "X_ref", min_rows=self._min_baseline(), dtype=self._dtype())
        self.n_features_in_ = int(X.shape[1])
        self.n_baseline_ = int(X.shape[0])
        self._rng_fit = np.random.default_rng(self.random_state)
        self.null_cache_: OrderedDict[int, np.ndarray] = OrderedDict()
        self._fit(X)
        return self

    def _dtype(self) -> type:
        return np.float64

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X_ref) first")

    def _check_window(self, X_window: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return check_embeddings(
            X_window,
            "X_window",
            n_features=self.n_features_in_,
            min_rows=self.min_window,
            dtype=self._dtype(),
        )

    def null_distribution(self, n: int) -> np.ndarray:
        """The ``n_null`` no-drift statistics for a window of exactly ``n`` rows (cached)."""
        self._check_fitted()
        n = int(n)
        cached = self.null_cache_.get(n)
        if cached is not None:
            self.null_cache_.move_to_end(n)
            return cached
        seed = [0 if self.random_state is None else int(self.random_state), n, 7919]
        rng = np.random.default_rng(seed if self.random_state is not None else None)
        null = np.asarray(self._null_statistics(n, rng), dtype=np.float64)
        self.null_cache_[n] = null
        while len(self.null_cache_) > MAX_CACHED_SIZES:
            self.null_cache_.popitem(last=False)
        return null

    def calibrate(self, statistic: float, n: int) -> tuple[float, float, dict[str, Any]]:
        """Threshold, p-value and a description of the null for a statistic at window size ``n``."""
        m = calibration_size(n, self.size_grid)
        null = self.null_distribution(m)
        threshold = calibrated_threshold(null, self.alpha)
        p_value = empirical_p_value(statistic, null)
        info = {
            "kind": "bootstrap (reference and window resampled from the baseline)",
            "null_window_size": m,
            "n_null": int(null.size),
            "null_median": float(np.median(null)),
            "null_max": float(null.max()),
            "alpha": self.alpha,
        }
        return threshold, p_value, info

    def score(self, X_window: np.ndarray) -> DriftResult:
        """Score one window (n_samples, n_features) against the fitted baseline."""
        X = self._check_window(X_window)
        n = int(X.shape[0])
        statistic, explanation = self._statistic(X)
        return self.result(statistic, n, explanation)

    def result(self, statistic: float, n: int, explanation: dict[str, Any]) -> DriftResult:
        """The calibrated result for ``statistic`` on a window of ``n`` rows (also used by
        :mod:`monitoring.analysis.drift.mergeable`, which computes the statistic from merged state)."""
        threshold, p_value, null_info = self.calibrate(statistic, n)
        return DriftResult(
            method=self.method,
            statistic=float(statistic),
            threshold=float(threshold),
            p_value=float(p_value),
            is_drift=bool(p_value <= self.alpha),
            window_size=int(n),
            explanation=dict(explanation, null=null_info),
        )


def baseline_pool(X: np.ndarray, max_pool: int | None, rng: np.random.Generator) -> np.ndarray:
    """All baseline rows, or a random subset of ``max_pool`` of them, to bootstrap nulls from."""
    if max_pool is None or X.shape[0] <= max_pool:
        return X
    idx = np.sort(rng.choice(X.shape[0], size=max_pool, replace=False))
    return X[idx]
