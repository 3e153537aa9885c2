"""Honest defaults: every detector *as shipped* (`default_detectors()`, `MetadataDrift()`, alpha
0.01, n_null 200 -- no test-only settings) stays within its false-alarm rate on clean windows of
50 to 10 000 rows, on synthetic embeddings, real digits and real colour-photo crops.

The bound per window size is the binomial 99.9 % quantile of the alarm count at alpha: a
calibrated detector exceeds it once in a thousand runs; a miscalibrated one (a threshold made for
another window size, a null that ignores ties) exceeds it at once. Baselines are redrawn, because
the guarantee holds over both samples. The photo crops repeat issue 10's setting (metadata drift
on clean colour traffic) with the store's own image statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from sklearn.datasets import load_sample_images

from monitoring.capture.image_stats import image_stats
from monitoring.capture.record import input_luma
from monitoring.analysis.drift import MetadataDrift
from monitoring.analysis.drift.calibration import DEFAULT_ALPHA
from monitoring.analysis.drift.suite import EMBEDDING_METHODS, default_detectors

from drift_testlib import Mixture, flat, load_digit_split

SIZES = (50, 200, 1000, 5000, 10_000)
#: (baselines, clean windows per size and baseline). The domain classifier trains a model per
#: window (~1-3 s at 10 000 rows here), so it gets fewer draws: its bound is looser, not absent.
DRAWS = {"domain_classifier": (2, 2)}
DEFAULT_DRAWS = (3, 6)
BASELINE_ROWS = 3000


def bound(draws: int) -> int:
    """Most alarms a detector calibrated at DEFAULT_ALPHA gives in ``draws`` clean windows (p=0.999)."""
    return int(stats.binom.ppf(0.999, draws, DEFAULT_ALPHA))


def check_rates(alarms: dict[int, int], draws_per_size: int) -> None:
    for n, count in alarms.items():
        assert count <= bound(draws_per_size), (n, alarms)
    assert sum(alarms.values()) <= bound(draws_per_size * len(alarms)), alarms


SIDE = 16


def photo_crops(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random 16x16 crops of two real colour photographs (scikit-learn's sample images)."""
    photos = load_sample_images().images
    out = np.empty((n, SIDE, SIDE, 3), np.uint8)
    for i, k in enumerate(rng.integers(0, len(photos), n)):
        y, x = rng.integers(0, photos[k].shape[0] - SIDE), rng.integers(0, photos[k].shape[1] - SIDE)
        out[i] = photos[k][y:y + SIDE, x:x + SIDE]
    return out


@pytest.fixture(scope="module")
def photo_pool():
    """(embeddings, metadata) of 60 000 crops; baselines and windows are disjoint draws from it.

    Embedding: each crop's 4x4 block means per channel (48-d, 0..1). Metadata: the record's own
    brightness/contrast/sharpness (`monitoring.capture.record.input_luma` + `image_stats`)."""
    crops = photo_crops(60_000, np.random.default_rng(2))
    X = crops.reshape(-1, 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(len(crops), -1).astype(np.float32) / 255.0
    meta = pd.DataFrame([image_stats(input_luma(Image.fromarray(c))) for c in crops])
    return X, meta[["brightness", "contrast", "sharpness"]]


def disjoint(rng: np.random.Generator, total: int, n_base: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.choice(total, n_base + n, replace=False)
    return idx[:n_base], idx[n_base:]


def clean_alarm_counts(make, baseline, window, n_baselines: int, per_size: int, sizes=SIZES) -> dict[int, int]:
    """Alarms of ``make()`` fitted on ``baseline(rng)`` over clean ``window(n, rng)`` draws."""
    rng = np.random.default_rng(11)
    alarms = dict.fromkeys(sizes, 0)
    for _ in range(n_baselines):
        det = make().fit(baseline(rng))
        for n in sizes:
            alarms[n] += sum(bool(det.score(window(n, rng)).is_drift) for _ in range(per_size))
    return alarms


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_shipped_defaults_synthetic_embeddings(method):
    mix = Mixture(d=16)
    b, k = DRAWS.get(method, DEFAULT_DRAWS)
    alarms = clean_alarm_counts(lambda: default_detectors((method,))[method],
                                lambda rng: mix.sample(BASELINE_ROWS, rng), mix.sample, b, k)
    check_rates(alarms, b * k)


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_shipped_defaults_colour_photo_embeddings(method, photo_pool):
    X, _ = photo_pool
    b, k = DRAWS.get(method, DEFAULT_DRAWS)
    rows = np.random.default_rng(5).permutation(len(X))
    base_rows, window_rows = rows[:20_000], rows[20_000:]  # disjoint: windows are fresh photos crops
    alarms = clean_alarm_counts(lambda: default_detectors((method,))[method],
                                lambda rng: X[rng.choice(base_rows, BASELINE_ROWS, replace=False)],
                                lambda n, rng: X[rng.choice(window_rows, n, replace=False)], b, k)
    check_rates(alarms, b * k)


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_shipped_defaults_digit_embeddings(method):
    """Real digits: a baseline of 1000, clean windows drawn without replacement from the 797
    held-out ones, so windows stop at the data's size (50, 200, 500)."""
    base, held = load_digit_split()
    b, k = DRAWS.get(method, DEFAULT_DRAWS)
    alarms = clean_alarm_counts(lambda: default_detectors((method,))[method], lambda rng: flat(base),
                                lambda n, rng: flat(held[rng.choice(len(held), n, replace=False)]),
                                1, b * k, sizes=(50, 200, 500))
    check_rates(alarms, b * k)


def test_shipped_metadata_detector_on_colour_photo_statistics(photo_pool):
    """Issue 10's case: brightness/contrast/sharpness of clean colour crops."""
    _, meta = photo_pool
    rows = np.random.default_rng(6).permutation(len(meta))
    base_rows, window_rows = rows[:20_000], rows[20_000:]
    alarms = clean_alarm_counts(MetadataDrift,
                                lambda rng: meta.iloc[rng.choice(base_rows, BASELINE_ROWS, replace=False)],
                                lambda n, rng: meta.iloc[rng.choice(window_rows, n, replace=False)], *DEFAULT_DRAWS)
    check_rates(alarms, DEFAULT_DRAWS[0] * DEFAULT_DRAWS[1])
