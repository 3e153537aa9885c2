"""Calibration: threshold/p-value arithmetic, and false-alarm rates on clean windows of many sizes."""

import numpy as np
import pytest
from scipy import stats

from monitoring.analysis.drift import CentroidDistance, ClusterJSD, DomainClassifier, MMDDrift, calibrated_threshold, calibration_size, empirical_p_value
from monitoring.analysis.drift.calibration import bootstrap_counts

from drift_testlib import Mixture, flat

ALPHA = 0.05  # higher than the default 0.01 so that a miscalibrated null shows up in few draws


def test_threshold_and_p_value_agree():
    null = np.arange(1.0, 201.0)  # 1..200
    thr = calibrated_threshold(null, 0.01)  # c = floor(0.01*201) - 1 = 1 -> 2nd largest
    assert thr == 199.0
    assert empirical_p_value(199.5, null) == pytest.approx(2 / 201)  # <= 0.01: alarm
    assert empirical_p_value(199.0, null) == pytest.approx(3 / 201)  # > 0.01: no alarm
    for s in np.linspace(0, 210, 421):
        assert (s > thr) == (empirical_p_value(s, null) <= 0.01)
    assert empirical_p_value(0.0, null) == 1.0


def test_calibration_size_grid():
    assert calibration_size(10) == 10
    assert calibration_size(63) == 63
    assert calibration_size(64) == 64
    for n in [65, 100, 999, 1000, 1003, 5000, 123456]:
        m = calibration_size(n)
        assert m <= n and m >= n / 1.05 - 1
    assert calibration_size(1000) == calibration_size(1003)
    assert calibration_size(1234, size_grid=None) == 1234


def test_bootstrap_counts_rows_sum_to_n():
    rng = np.random.default_rng(0)
    for n in (5, 50, 500):  # below and above the pool size
        c = bootstrap_counts(rng, 7, 100, n)
        assert c.shape == (7, 100)
        np.testing.assert_array_equal(c.sum(axis=1), n)


def test_nulls_are_cached_per_size(mixture):
    det = CentroidDistance(n_null=100).fit(mixture.sample(500, np.random.default_rng(0)))
    a = det.null_distribution(200)
    assert det.null_distribution(200) is a
    r1 = det.score(mixture.sample(1000, np.random.default_rng(1)))
    r2 = det.score(mixture.sample(1010, np.random.default_rng(2)))
    assert r1.explanation["null"]["null_window_size"] == r2.explanation["null"]["null_window_size"]
    assert r1.threshold == r2.threshold


def test_fixed_threshold_trap(mixture):
    """A threshold right for 5000-row windows alarms on most clean 50-row windows; ours does not."""
    rng = np.random.default_rng(3)
    det = ClusterJSD(n_clusters=10, alpha=0.01).fit(mixture.sample(3000, rng))
    thr_large = det.score(mixture.sample(5000, rng)).threshold
    small = [det.score(mixture.sample(50, rng)) for _ in range(30)]
    assert np.mean([r.statistic > thr_large for r in small]) > 0.9
    assert sum(r.is_drift for r in small) <= 2


def _upper(alpha, draws):
    """Largest alarm *rate* a calibrated detector reaches with probability 0.999 (binomial)."""
    return stats.binom.ppf(0.999, draws, alpha) / draws


MAKERS = {
    "cluster_jsd": lambda: ClusterJSD(n_clusters=10, alpha=ALPHA, n_null=100),
    "centroid": lambda: CentroidDistance(alpha=ALPHA, n_null=100),
    "mmd": lambda: MMDDrift(n_features=256, alpha=ALPHA, n_null=100),
    "domain_classifier": lambda: DomainClassifier(n_components=None, classifier="lda", alpha=ALPHA),
}
SIZES = (50, 200, 1000, 5000)


@pytest.mark.parametrize("method", list(MAKERS))
def test_false_alarm_rate_on_clean_synthetic_windows(method):
    """Several baselines x fresh clean windows at each size: alarm rate <= the binomial 99.9 % quantile.

    Baselines are redrawn too, because the guarantee is over both samples: for one fixed baseline
    a large window inherits that baseline's own sampling error.
    """
    mix = Mixture(d=16)
    rng = np.random.default_rng(11)
    n_baselines, per_size = 5, 12
    alarms = {n: 0 for n in SIZES}
    for _ in range(n_baselines):
        det = MAKERS[method]().fit(mix.sample(3000, rng))
        for n in SIZES:
            alarms[n] += sum(det.score(mix.sample(n, rng)).is_drift for _ in range(per_size))
    draws = n_baselines * per_size
    for n in SIZES:
        assert alarms[n] / draws <= _upper(ALPHA, draws), (n, alarms)
    total = sum(alarms.values()) / (draws * len(SIZES))
    assert total <= _upper(ALPHA, draws * len(SIZES)), alarms
    if method != "domain_classifier":  # resampling nulls should be close to exact, not vacuous
        assert total >= 0.01, alarms


@pytest.mark.parametrize("method", list(MAKERS))
def test_false_alarm_rate_on_clean_digit_windows(method, digits):
    """Real data: 1000 baseline digits (raw 64 pixels), clean windows from 797 held-out digits."""
    base, held = digits
    det = MAKERS[method]().fit(flat(base))
    rng = np.random.default_rng(5)
    for n, draws in ((50, 60), (200, 60)):
        alarms = sum(det.score(flat(held[rng.choice(len(held), n, replace=False)])).is_drift for _ in range(draws))
        assert alarms / draws <= _upper(ALPHA, draws), (n, alarms)
