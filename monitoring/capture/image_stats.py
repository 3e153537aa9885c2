"""Cheap per-image statistics for capture records (pure numpy, runs on the request path).

All values are on the 0..255 scale whatever the input dtype: uint8 images are used as is,
float images are assumed to be in [0, 1] (values above 1.5 anywhere are taken as already
0..255). Luminance is ITU-R BT.601 ``0.299 R + 0.587 G + 0.114 B``.

* ``brightness`` -- mean luminance (0 = black, 255 = white)
* ``contrast``   -- standard deviation of luminance (RMS contrast)
* ``sharpness``  -- variance of the 3x3 Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]`` of the
  luminance over the interior pixels (the classic "variance of Laplacian" blur measure;
  higher = sharper)
"""

from __future__ import annotations

from typing import Any

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Return the luminance plane (float32, 0..255) of an HxW, HxWx1, HxWx3 or HxWx4 image."""
    a = np.asarray(rgb)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        y = a.astype(np.float32, copy=False)
    elif a.ndim == 3 and a.shape[2] in (3, 4) and a.dtype == np.uint8:
        # integer weights: exact for gray images (R=G=B=v gives exactly v)
        c = a.astype(np.int32)
        y = (c[:, :, 0] * 299 + c[:, :, 1] * 587 + c[:, :, 2] * 114).astype(np.float32) / np.float32(1000.0)
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        y = a[:, :, :3].astype(np.float32, copy=False) @ _LUMA
    else:
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {a.shape}")
    if a.dtype.kind == "f" and y.size and float(y.max()) <= 1.5:
        y = y * np.float32(255.0)
    return y


def _moments(total: int, squares: int, n: int) -> tuple[float, float]:
    """Mean and population variance from exact integer sums (no float accumulation error)."""
    return total / n, (n * squares - total * total) / (n * n)


def _stats_uint8(y: np.ndarray) -> tuple[float, float, float]:
    """Brightness, contrast, sharpness of an 8-bit luma plane (the capture path: ``input_luma``),
    from integer sums: the same numbers as the float path (to float64 rounding) for ~half its
    CPU on the capture worker, which shares the cores with inference
    (bench/results/capture-profile-*.md)."""
    u = y.astype(np.uint16)  # 255**2 fits
    mean, var = _moments(int(y.sum(dtype=np.uint64)), int((u * u).sum(dtype=np.uint64)), y.size)
    h, w = y.shape
    if h < 3 or w < 3:
        return mean, var ** 0.5, 0.0
    y16 = y.astype(np.int16)
    lap = y16[:-2, 1:-1] + y16[2:, 1:-1]  # exact in int16: |Laplacian| <= 4 * 255
    lap += y16[1:-1, :-2]
    lap += y16[1:-1, 2:]
    lap -= y16[1:-1, 1:-1] << 2
    l32 = lap.astype(np.int32)
    _, sharp = _moments(int(lap.sum(dtype=np.int64)), int((l32 * l32).sum(dtype=np.int64)), lap.size)
    return mean, var ** 0.5, sharp


def image_stats(rgb: np.ndarray) -> dict[str, float | int]:
    """Brightness, contrast, sharpness, width and height of one image (HxWxC, channels last)."""
    a = np.asarray(rgb)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2 and a.dtype == np.uint8 and a.size:
        h, w = a.shape
        mean, std, sharp = _stats_uint8(a)
        return {"image_width": int(w), "image_height": int(h), "brightness": mean, "contrast": std, "sharpness": sharp}
    y = luminance(a)
    h, w = y.shape
    if y.size == 0:
        return {"image_width": int(w), "image_height": int(h), "brightness": None, "contrast": None, "sharpness": None}
    mean = float(y.mean(dtype=np.float64))
    std = float(y.std(dtype=np.float64))
    if h >= 3 and w >= 3:
        c = y[1:-1, 1:-1]
        lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * c
        sharp = float(lap.var(dtype=np.float64))
    else:
        sharp = 0.0
    return {"image_width": int(w), "image_height": int(h), "brightness": mean, "contrast": std, "sharpness": sharp}


def output_image_stats(img: np.ndarray) -> dict[str, float | int]:
    """Size and pixel mean/std (0..255 scale, over all channels) of a generated image."""
    a = np.asarray(img)
    if a.ndim < 2:
        raise ValueError(f"expected an image array, got shape {a.shape}")
    f = a.astype(np.float32, copy=False)
    scale = 255.0 if a.dtype.kind == "f" and a.size and float(f.max()) <= 1.5 else 1.0
    return {
        "output_width": int(a.shape[1]),
        "output_height": int(a.shape[0]),
        "output_mean": float(f.mean(dtype=np.float64)) * scale if a.size else None,
        "output_std": float(f.std(dtype=np.float64)) * scale if a.size else None,
    }


#: How many class probabilities a classifier record keeps unless the model config says otherwise.
DEFAULT_TOP_K = 5
#: Upper bound on capture_top_k: the record is per request, so it stays small whatever the config says.
MAX_TOP_K = 100


def check_top_k(k: int) -> int:
    """``k`` if it is a usable top-k size, else ValueError naming the limit."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= int(k) <= MAX_TOP_K:
        raise ValueError(f"capture_top_k: {k!r} must be an integer in 0..{MAX_TOP_K}")
    return int(k)


def prediction_stats(probs: np.ndarray, labels: list[str] | None = None, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """Top-1 label, top-1 probability, entropy (nats) and the ``top_k`` most probable labels with
    their probabilities (most probable first; ``top_k=0`` keeps none) of one probability vector."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    i = int(p.argmax())
    nz = p[p > 0]
    out: dict[str, Any] = {
        "pred_label": labels[i] if labels is not None else str(i),
        "pred_top_prob": float(p[i]),
        "pred_entropy": float(-(nz * np.log(nz)).sum()),
    }
    k = min(check_top_k(top_k), p.size)
    if k:
        # The k largest in the order of a stable sort on -p (ties keep class order, so the first
        # entry is always argmax = pred_label): candidates are every class at or above the k-th
        # largest value, ties included, in class order; a stable sort of those few. Same result as
        # sorting all classes, at a fraction of the worker's CPU for 1000 of them.
        kth = np.partition(p, p.size - k)[p.size - k]
        candidates = np.flatnonzero(p >= kth)
        order = candidates[np.argsort(-p[candidates], kind="stable")][:k]
        out["pred_top_k_labels"] = [labels[j] if labels is not None else str(j) for j in order]
        out["pred_top_k_probs"] = p[order].astype(np.float32)
    return out
