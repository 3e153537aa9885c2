"""The demo's images: scikit-learn's real handwritten digits as small RGB pictures, and the
two corruptions of the seeds' experiment (blur, darkening).

``load_digits()`` ships 1,797 real 8x8 digits (0..16) with scikit-learn, so everything runs
offline. Each digit becomes a ``size`` x ``size`` RGB image of dark ink on white paper
(bicubic upsampling); week 2 blurs it, week 3 darkens it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_SIZE = 32
SPLIT_SEED = 2024


@dataclass
class DigitSplit:
    train_images: list[Image.Image]
    train_labels: np.ndarray
    holdout_images: list[Image.Image]
    holdout_labels: np.ndarray
    #: digits neither trained on nor served: the drift baseline. A model's embeddings of its own
    #: training images are tighter than of any new image, so a baseline of training images makes
    #: clean traffic look drifted.
    reference_images: list[Image.Image] = field(default_factory=list)
    reference_labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def digit_image(digit: np.ndarray, size: int = DEFAULT_SIZE) -> Image.Image:
    """One 8x8 digit (0..16, ink high) as a size x size RGB image, dark ink on white."""
    gray = (255.0 - np.asarray(digit, np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(gray, mode="L").resize((size, size), Image.BICUBIC)
    return img.convert("RGB")


def load_split(size: int = DEFAULT_SIZE, n_train: int = 1200, seed: int = SPLIT_SEED, n_reference: int = 0) -> DigitSplit:
    """Random train / reference / hold-out split of the 1,797 digits (the same split for the same
    seed); ``n_reference`` digits after the training ones are kept apart for the baseline."""
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(seed).permutation(len(d.images))
    tr, ref, ho = perm[:n_train], perm[n_train:n_train + n_reference], perm[n_train + n_reference:]
    return DigitSplit(
        [digit_image(d.images[i], size) for i in tr], d.target[tr].astype(np.int64),
        [digit_image(d.images[i], size) for i in ho], d.target[ho].astype(np.int64),
        [digit_image(d.images[i], size) for i in ref], d.target[ref].astype(np.int64),
    )


def blur(img: Image.Image, radius: float = 3.0) -> Image.Image:
    """Week 2: out of focus (Gaussian blur)."""
    return img.filter(ImageFilter.GaussianBlur(radius))


def darken(img: Image.Image, factor: float = 0.65) -> Image.Image:
    """Week 3: under-exposed (every pixel scaled by ``factor``)."""
    a = np.asarray(img, np.float32) * factor
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


CORRUPTIONS = {"clean": lambda im: im, "blurred": blur, "darkened": darken}


def corruption(kind: str, blur_radius: float = 3.0, darken_factor: float = 0.65):
    """The image transform of one simulated week."""
    if kind == "blurred":
        return lambda im: blur(im, blur_radius)
    if kind == "darkened":
        return lambda im: darken(im, darken_factor)
    return CORRUPTIONS[kind]


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
