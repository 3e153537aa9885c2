"""Label-free accuracy (CBPE with an isotonic calibration): it tracks covariate shift, and misses
concept shift by construction (the documented failure mode)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.analysis.drift.accuracy import AccuracyEstimator, fit_from_baseline


def _sample(n: int, lo: float, hi: float, seed: int, flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """An over-confident model: P(correct | confidence c) = c ** 2. ``flip`` turns that share of
    right answers wrong without touching the confidences (concept shift)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(lo, hi, n)
    correct = rng.random(n) < c ** 2
    if flip:
        correct &= rng.random(n) >= flip
    return c, correct


@pytest.fixture(scope="module")
def estimator() -> AccuracyEstimator:
    return AccuracyEstimator().fit(*_sample(3000, 0.5, 1.0, seed=0))


def test_clean_window_within_band(estimator):
    c, correct = _sample(1000, 0.5, 1.0, seed=1)
    e = estimator.estimate(c)
    realized = correct.mean()
    assert abs(e["estimated_accuracy"] - realized) < 0.03
    assert e["low"] <= realized <= e["high"]
    assert not e["is_drop"] and e["n"] == 1000
    # raw confidences are over-confident; the calibrated estimate is not
    assert c.mean() - realized > 0.05


def test_covariate_shift_estimate_falls_with_accuracy(estimator):
    c, correct = _sample(1000, 0.5, 0.8, seed=2)
    e = estimator.estimate(c)
    assert abs(e["estimated_accuracy"] - correct.mean()) < 0.04
    assert e["estimated_accuracy"] < estimator.reference_accuracy_ - 0.1
    assert e["is_drop"]


def test_concept_shift_is_missed(estimator):
    c, correct = _sample(1000, 0.5, 1.0, seed=3, flip=0.4)
    e = estimator.estimate(c)
    assert correct.mean() < e["low"] - 0.1  # realized fell well below the band
    assert not e["is_drop"]


def test_band_narrows_with_window_size(estimator):
    small = estimator.estimate(_sample(40, 0.5, 1.0, seed=4)[0])
    big = estimator.estimate(_sample(2000, 0.5, 1.0, seed=4)[0])
    assert (small["high"] - small["low"]) > 2 * (big["high"] - big["low"])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"confidence 1.5 at position 2 is not a probability"):
        AccuracyEstimator().fit([0.5, 0.6, 1.5] + [0.7] * 60, [1] * 63)
    with pytest.raises(ValueError, match=r"10 labelled baseline rows \(< 50 needed\)"):
        AccuracyEstimator().fit([0.9] * 10, [1] * 10)
    with pytest.raises(ValueError, match="3 confidences but 2 correctness flags"):
        AccuracyEstimator().fit([0.9] * 3, [1] * 2)


def test_fit_from_baseline_metadata():
    c, correct = _sample(300, 0.5, 1.0, seed=5)
    meta = pd.DataFrame({"pred_top_prob": c, "pred_label": ["a"] * 300,
                         "label": np.where(correct, "a", "b")})
    est = fit_from_baseline(meta)
    assert est is not None and est.reference_accuracy_ == pytest.approx(correct.mean())
    assert fit_from_baseline(meta.drop(columns="label")) is None  # no labels: no calibration
    meta.loc[10:, "label"] = None
    assert fit_from_baseline(meta) is None  # 10 labelled rows are too few
