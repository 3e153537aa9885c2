"""image_stats and the other request-path feature helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.capture import image_stats, output_image_stats, prediction_stats


def _textured(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)


def _box_blur(img: np.ndarray, k: int = 5) -> np.ndarray:
    f = img.astype(np.float64)
    pad = k // 2
    p = np.pad(f, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(f)
    for dy in range(k):
        for dx in range(k):
            out += p[dy : dy + f.shape[0], dx : dx + f.shape[1]]
    return (out / (k * k)).round().astype(np.uint8)


def test_constant_image_exact_values():
    s = image_stats(np.full((10, 12, 3), 100, np.uint8))
    assert s == {"image_width": 12, "image_height": 10, "brightness": 100.0, "contrast": 0.0, "sharpness": 0.0}
    assert image_stats(np.full((8, 8, 3), 0.5, np.float32))["brightness"] == 127.5  # floats in [0,1] -> 0..255
    assert image_stats(np.full((8, 8), 7, np.uint8))["brightness"] == 7.0  # grayscale


def test_luminance_weights():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert image_stats(red)["brightness"] == pytest.approx(0.299 * 255)


def test_darker_image_has_lower_brightness():
    img = _textured()
    dark = (img // 2).astype(np.uint8)
    assert image_stats(dark)["brightness"] < image_stats(img)["brightness"]
    assert image_stats(dark)["brightness"] == pytest.approx(image_stats(img)["brightness"] / 2, rel=0.02)


def test_blur_lowers_sharpness_and_contrast():
    img = _textured()
    blurred = _box_blur(img)
    s, b = image_stats(img), image_stats(blurred)
    assert b["sharpness"] < s["sharpness"] / 10
    assert b["contrast"] < s["contrast"]


def test_known_laplacian_variance():
    # a single bright pixel: Laplacian is -4v at the pixel and +v at its 4 neighbours
    img = np.zeros((5, 5), np.uint8)
    img[2, 2] = 100
    vals = np.array([-400.0] + [100.0] * 4 + [0.0] * 4)  # interior 3x3
    assert image_stats(img)["sharpness"] == pytest.approx(vals.var())


def test_rgba_and_bad_shapes():
    assert image_stats(np.full((4, 4, 4), 10, np.uint8))["brightness"] == 10.0
    with pytest.raises(ValueError, match="expected an HxW"):
        image_stats(np.zeros((4, 4, 2), np.uint8))


def test_output_and_prediction_stats():
    o = output_image_stats(np.full((64, 32, 3), 0.25, np.float32))
    assert o == {"output_width": 32, "output_height": 64, "output_mean": 63.75, "output_std": 0.0}
    p = prediction_stats(np.array([0.5, 0.25, 0.25]), ["cat", "dog", "fox"])
    assert p["pred_label"] == "cat" and p["pred_top_prob"] == 0.5
    assert p["pred_entropy"] == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_prediction_top_k():
    p = prediction_stats(np.array([0.1, 0.4, 0.05, 0.3, 0.15]), ["a", "b", "c", "d", "e"], top_k=3)
    assert p["pred_top_k_labels"] == ["b", "d", "e"]
    np.testing.assert_allclose(p["pred_top_k_probs"], [0.4, 0.3, 0.15], rtol=1e-6)
    assert p["pred_top_k_labels"][0] == p["pred_label"]
    # k larger than the class count keeps every class; 0 keeps none; a tie keeps argmax first
    assert len(prediction_stats(np.array([0.5, 0.5]), ["x", "y"], top_k=5)["pred_top_k_labels"]) == 2
    assert prediction_stats(np.array([0.5, 0.5]), ["x", "y"], top_k=5)["pred_top_k_labels"][0] == "x"
    assert "pred_top_k_probs" not in prediction_stats(np.array([0.5, 0.5]), top_k=0)
    with pytest.raises(ValueError, match=r"capture_top_k: 101 must be an integer in 0..100"):
        prediction_stats(np.array([1.0]), top_k=101)


@pytest.mark.parametrize("shape", [(256, 256), (3, 3), (2, 7), (3, 500), (401, 299)])
def test_the_8_bit_path_equals_the_float_path(shape):
    """Capture's luma planes are uint8 (`input_luma`) and take the integer path; it must give
    what the float path gives for the same pixels, or served records and baselines built from
    float arrays would disagree."""
    rng = np.random.default_rng(sum(shape))
    for y in (rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 201, np.uint8),
              (np.indices(shape).sum(axis=0) % 2 * 255).astype(np.uint8)):  # a checkerboard: extreme Laplacian
        fast, reference = image_stats(y), image_stats(y.astype(np.float64))  # values > 1.5: the 0..255 scale
        for key in ("brightness", "contrast", "sharpness"):
            assert fast[key] == pytest.approx(reference[key], rel=1e-12, abs=1e-9), (key, fast[key], reference[key])
        assert (fast["image_width"], fast["image_height"]) == (shape[1], shape[0])


@pytest.mark.parametrize("seed", range(5))
def test_top_k_is_the_stable_sort_of_all_classes(seed):
    """The partition-based top-k keeps the full stable sort's order, ties at the k-th value included."""
    rng = np.random.default_rng(seed)
    p = rng.choice([0.0, 0.001, 0.002, 0.01, 0.05], size=1000)  # many ties, at every rank
    p[rng.integers(0, 1000, 3)] = 0.2
    for k in (1, 5, 17, 100):
        got = prediction_stats(p, top_k=k)
        want = np.argsort(-p, kind="stable")[:k]
        assert got["pred_top_k_labels"] == [str(j) for j in want]
        assert got["pred_top_k_labels"][0] == got["pred_label"]
