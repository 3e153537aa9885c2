"""Input checks shared by the detectors; every error names the argument, the value and the limit."""

from __future__ import annotations

import numpy as np

MIN_BASELINE_ROWS = 20


def check_embeddings(
    X: object,
    name: str,
    *,
    n_features: int | None = None,
    min_rows: int = 1,
    dtype: type = np.float64,
) -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float array after checking shape and finiteness.

    Raises:
        ValueError: not 2-D, fewer than ``min_rows`` rows, wrong number of columns, or NaN/inf.
    """
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape} (ndim={arr.ndim})"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows); at least {min_rows} row(s) are required")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows; at least {min_rows} are required")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but the baseline was fitted with {n_features}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features; at least 1 is required")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); all values must be finite")
    return arr


def check_alpha(alpha: float) -> float:
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)
