"""Maximum mean discrepancy with an RBF kernel, computed in blocks or with random Fourier features.

Statistic: the unbiased estimate of MMD^2 between the baseline and the window,

    MMD^2_u = sum_{i!=j} k(x_i,x_j)/(N(N-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum_{i,j} k(x_i,y_j)/(N n)

with ``k(x, y) = exp(-||x-y||^2 / (2 sigma^2))`` and ``sigma`` the median pairwise distance of a
baseline subsample (median heuristic).

Two modes:

* ``n_features=512`` (default): random Fourier features ``phi(x) = [cos(Wx), sin(Wx)]/sqrt(D/2)``
  with ``W ~ N(0, I/sigma^2)`` and ``D/2 = 256`` frequencies. ``phi(x).phi(y)`` is an unbiased
  approximation of the RBF kernel and is itself a positive-definite kernel with ``phi(x).phi(x) = 1``,
  so the statistic is the exact unbiased MMD^2 *of that kernel*, computed from feature sums in
  O((N + n) d D) time and O(n D) memory. The null is computed with the same features, so test and
  statistic are consistent. Scoring a 10k x 2048 window costs one (10k x 2048) @ (2048 x 256) product.
* ``n_features=None``: the exact RBF kernel, summed in ``block_size`` x ``block_size`` tiles (never an
  n x n matrix in memory). O((N + n)^2 d) time; the baseline-baseline sum is done once in ``fit``.
  The null uses a pool of at most ``exact_pool`` baseline rows whose (pool x pool) Gram matrix is
  kept.

Null (both modes): bootstrap count vectors ``c_x`` (sums to N) and ``c_y`` (sums to n) over the pool,
``MMD^2_u = (c_x'Kc_x - N)/(N(N-1)) + (c_y'Kc_y - n)/(n(n-1)) - 2 c_x'Kc_y/(N n)``; drawing both sides
i.i.d. from the empirical baseline gives a statistic with the same null mean (0) and the same
variance scaling as a fresh window against the fixed baseline.
"""

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
from .explain import top_positions


def median_heuristic(X: np.ndarray, max_samples: int = 1000, rng: np.random.Generator | None = None) -> float:
    """Median pairwise Euclidean distance among (at most ``max_samples``) rows of ``X``.

    Falls back to 1.0 if all sampled rows coincide.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if X.shape[0] > max_samples:
        X = X[rng.choice(X.shape[0], size=max_samples, replace=False)]
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    iu = np.triu_indices(X.shape[0], k=1)
    med = float(np.sqrt(max(np.median(np.clip(d2[iu], 0.0, None)), 0.0)))
    return med if med > 0 else 1.0


def rbf_kernel_row_sums(X: np.ndarray, Y: np.ndarray, gamma: float, block_size: int = 1024) -> np.ndarray:
    """``sum_j exp(-gamma ||x_i - y_j||^2)`` for every row ``x_i``, in (block x block) tiles.

    Peak extra memory is O(block_size^2), whatever the sizes of X and Y.
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    dt = np.result_type(X.dtype, Y.dtype, np.float32)
    sx = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    sy = np.einsum("ij,ij->i", Y, Y, dtype=np.float64)
    out = np.zeros(X.shape[0], dtype=np.float64)
    for i in range(0, X.shape[0], block_size):
        xi = X[i : i + block_size]
        acc = np.zeros(xi.shape[0], dtype=np.float64)
        for j in range(0, Y.shape[0], block_size):
            yj = Y[j : j + block_size]
            d2 = (xi @ yj.T).astype(dt, copy=False)
            d2 *= -2.0
            d2 += sx[i : i + block_size, None].astype(dt)
            d2 += sy[None, j : j + block_size].astype(dt)
            np.maximum(d2, 0.0, out=d2)
            d2 *= -gamma
            np.exp(d2, out=d2)
            acc += d2.sum(axis=1, dtype=np.float64)
        out[i : i + block_size] = acc
    return out


def mmd2_from_sums(sx: np.ndarray, m: int, sy: np.ndarray, n: int) -> np.ndarray | float:
    """Unbiased MMD^2 from feature sums for a unit-diagonal feature kernel (phi(x).phi(x) = 1).

    ``sx``/``sy`` are sums of feature vectors over the m / n rows (broadcast over leading axes).
    """
    sx = np.asarray(sx, np.float64)
    sy = np.asarray(sy, np.float64)
    xx = (np.sum(sx * sx, axis=-1) - m) / (m * (m - 1))
    yy = (np.sum(sy * sy, axis=-1) - n) / (n * (n - 1))
    xy = np.sum(sx * sy, axis=-1) / (m * n)
    r = xx + yy - 2.0 * xy
    return float(r) if np.ndim(r) == 0 else r


class RandomFourierFeatures:
    """``phi(x) = [cos(x W), sin(x W)] / sqrt(n_features/2)``, ``W ~ N(0, I / sigma^2)``.

    ``phi(x).phi(y)`` approximates ``exp(-||x-y||^2/(2 sigma^2))`` and ``phi(x).phi(x) == 1``.
    """

    def __init__(self, n_in: int, n_features: int, sigma: float, rng: np.random.Generator, dtype: type = np.float32):
        if n_features < 2 or n_features % 2:
            raise ValueError(f"n_features must be an even integer >= 2, got {n_features}")
        self.n_features = n_features
        self.W = (rng.standard_normal((n_in, n_features // 2)) / sigma).astype(dtype)
        self.scale = np.dtype(dtype).type(1.0 / np.sqrt(n_features // 2))

    def transform(self, X: np.ndarray, block_size: int = 8192) -> np.ndarray:
        out = np.empty((X.shape[0], self.n_features), dtype=self.W.dtype)
        h = self.n_features // 2
        for i in range(0, X.shape[0], block_size):
            z = X[i : i + block_size] @ self.W
            np.cos(z, out=out[i : i + block_size, :h])
            np.sin(z, out=out[i : i + block_size, h:])
        out *= self.scale
        return out


class MMDDrift(CalibratedDetector):
    """Kernel two-sample statistic (unbiased MMD^2, RBF kernel, median-heuristic bandwidth).

    Sees any change of distribution in principle (cluster mix, shifts inside clusters, spread),
    with a calibrated bootstrap null at the window's size.

    Args:
        n_features: size of the random-Fourier feature map (even; half are frequencies), or None
            for the exact kernel computed in blocks.
        sigma: kernel bandwidth; None = median heuristic on up to ``median_samples`` baseline rows.
        alpha, n_null, size_grid, random_state: see :class:`CalibratedDetector`.
        max_pool: baseline rows the RFF-mode null is bootstrapped from.
        exact_pool: baseline rows (and size of the kept Gram matrix) for the exact-mode null.
        block_size: tile size of the exact-mode kernel sums.
        n_examples: window positions with the largest witness value listed in the explanation.
    """

    method = "mmd"

    def __init__(
        self,
        n_features: int | None = 512,
        *,
        sigma: float | None = None,
        alpha: float = DEFAULT_ALPHA,
        n_null: int = DEFAULT_N_NULL,
        size_grid: float | None = 1.05,
        max_pool: int | None = 10000,
        exact_pool: int = 2000,
        block_size: int = 1024,
        median_samples: int = 1000,
        n_examples: int = 10,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(alpha=alpha, n_null=n_null, size_grid=size_grid, random_state=random_state)
        if n_features is not None and (int(n_features) != n_features or n_features < 2 or n_features % 2):
            raise ValueError(f"n_features must be an even integer >= 2 or None, got {n_features}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be > 0 or None, got {sigma}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.n_features = None if n_features is None else int(n_features)
        self.sigma = sigma
        self.max_pool = max_pool
        self.exact_pool = int(exact_pool)
        self.block_size = int(block_size)
        self.median_samples = int(median_samples)
        self.n_examples = int(n_examples)

    def _dtype(self) -> type:
        return np.float32

    def _fit(self, X: np.ndarray) -> None:
        rng = self._rng_fit
        self.sigma_ = float(self.sigma) if self.sigma is not None else median_heuristic(X, self.median_samples, rng)
        self.gamma_ = 1.0 / (2.0 * self.sigma_**2)
        if self.n_features is not None:
            self.rff_ = RandomFourierFeatures(X.shape[1], self.n_features, self.sigma_, rng)
            phi = self.rff_.transform(X)
            self.ref_sum_ = phi.sum(axis=0, dtype=np.float64)
            pool_idx = np.arange(X.shape[0])
            if self.max_pool is not None and X.shape[0] > self.max_pool:
                pool_idx = np.sort(rng.choice(X.shape[0], size=self.max_pool, replace=False))
            self._pool_phi = phi[pool_idx]
            counts = bootstrap_counts(rng, self.n_null, self._pool_phi.shape[0], self.n_baseline_)
            self._null_ref_sums = (counts @ self._pool_phi).astype(np.float64)
        else:
            self._X_ref = X
            self._kxx_sum = rbf_kernel_row_sums(X, X, self.gamma_, self.block_size).sum() - X.shape[0]
            pool = baseline_pool(X, self.exact_pool, rng)
            self._pool_gram = np.empty((pool.shape[0], pool.shape[0]), dtype=np.float64)
            self._pool_gram[:] = _rbf_gram(pool, pool, self.gamma_)
            counts = bootstrap_counts(rng, self.n_null, pool.shape[0], self.n_baseline_).astype(np.float64)
            self._null_ref_counts = counts
            self._null_ref_kc = counts @ self._pool_gram

    def _statistic(self, X: np.ndarray) -> tuple[float, dict[str, Any]]:
        n, N = X.shape[0], self.n_baseline_
        if self.n_features is not None:
            phi = self.rff_.transform(X)
            sy = phi.sum(axis=0, dtype=np.float64)
            stat = mmd2_from_sums(self.ref_sum_, N, sy, n)
            witness = phi @ (sy / n - self.ref_sum_ / N).astype(np.float32)
            mode = f"random Fourier features ({self.n_features})"
        else:
            kyy_rows = rbf_kernel_row_sums(X, X, self.gamma_, self.block_size)
            kyx_rows = rbf_kernel_row_sums(X, self._X_ref, self.gamma_, self.block_size)
            kyy = kyy_rows.sum() - n
            stat = float(self._kxx_sum / (N * (N - 1)) + kyy / (n * (n - 1)) - 2.0 * kyx_rows.sum() / (N * n))
            witness = kyy_rows / n - kyx_rows / N
            mode = f"exact kernel, {self.block_size}-row blocks"
        expl = {
            "mode": mode,
            "sigma": self.sigma_,
            "witness_top_positions": top_positions(witness, self.n_examples),
        }
        return float(stat), expl

    def _null_statistics(self, n: int, rng: np.random.Generator) -> np.ndarray:
        N = self.n_baseline_
        if self.n_features is not None:
            counts = bootstrap_counts(rng, self.n_null, self._pool_phi.shape[0], n)
            sy = (counts @ self._pool_phi).astype(np.float64)
            return mmd2_from_sums(self._null_ref_sums, N, sy, n)
        cy = bootstrap_counts(rng, self.n_null, self._pool_gram.shape[0], n).astype(np.float64)
        kcy = cy @ self._pool_gram
        cx, kcx = self._null_ref_counts, self._null_ref_kc
        xx = (np.sum(cx * kcx, axis=1) - N) / (N * (N - 1))
        yy = (np.sum(cy * kcy, axis=1) - n) / (n * (n - 1))
        xy = np.sum(cx * kcy, axis=1) / (N * n)
        return xx + yy - 2.0 * xy


def _rbf_gram(X: np.ndarray, Y: np.ndarray, gamma: float) -> np.ndarray:
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    d2 = np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", Y, Y)[None, :] - 2.0 * X @ Y.T
    return np.exp(-gamma * np.clip(d2, 0.0, None))
