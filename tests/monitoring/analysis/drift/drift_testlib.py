"""Test data helpers for the drift tests: a synthetic Gaussian mixture and 8x8 digit utilities."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[4]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Mixture:
    """Mixture of k Gaussians (unit within-cluster sd) with fixed centres."""

    def __init__(self, d: int = 16, k: int = 10, spread: float = 2.0, seed: int = 123) -> None:
        rng = np.random.default_rng(seed)
        self.d, self.k = d, k
        self.centers = rng.standard_normal((k, d)) * spread
        self.weights = np.full(k, 1.0 / k)

    def sample(self, n: int, rng: np.random.Generator, weights: np.ndarray | None = None, shift: float = 0.0) -> np.ndarray:
        w = self.weights if weights is None else weights
        lab = rng.choice(self.k, size=n, p=w)
        return (self.centers[lab] + rng.standard_normal((n, self.d)) + shift).astype(np.float32)


def load_digit_split():
    """(baseline images, held-out images), raw 8x8 digits (0..16), split at random."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float64)
    perm = np.random.default_rng(2024).permutation(len(images))
    return images[perm[:1000]], images[perm[1000:]]


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32)


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(im, sigma) for im in images])


def image_metadata(images: np.ndarray, contrast: str = "rms"):
    """brightness = mean pixel, sharpness = var of the Laplacian, contrast = std (or std/mean)."""
    import pandas as pd

    b = images.mean(axis=(1, 2))
    s = images.std(axis=(1, 2))
    return pd.DataFrame(
        {
            "brightness": b,
            "contrast": s / b if contrast == "rms" else s,
            "sharpness": np.array([ndimage.laplace(im).var() for im in images]),
            "height": np.full(len(images), 8),
            "source": ["digits"] * len(images),
        }
    )
