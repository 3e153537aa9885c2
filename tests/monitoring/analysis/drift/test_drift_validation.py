import numpy as np
import pytest

from monitoring.analysis.drift import CentroidDistance, ClusterJSD, DomainClassifier, MMDDrift


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)


DETECTORS = [
    lambda: ClusterJSD(n_clusters=3, n_null=100),
    lambda: CentroidDistance(n_null=100),
    lambda: MMDDrift(n_null=100),
    lambda: DomainClassifier(n_components=2),
]


@pytest.mark.parametrize("make", DETECTORS)
def test_window_errors_name_argument_value_and_limit(make, X):
    det = make().fit(X)
    with pytest.raises(ValueError, match="X_window has 3 features but the baseline was fitted with 4"):
        det.score(np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"X_window is empty \(0 rows\)"):
        det.score(np.zeros((0, 4)))
    bad = np.zeros((10, 4))
    bad[2, 1] = np.nan
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match="X_window contains 2 NaN/inf value"):
        det.score(bad)
    with pytest.raises(ValueError, match=r"X_window must be 2-D \(n_samples, n_features\), got shape \(4,\)"):
        det.score(np.zeros(4))
    with pytest.raises(ValueError, match="X_window must be a numeric array"):
        det.score(np.array([["a"] * 4] * 10))


def test_window_of_one_row_is_refused(X):
    det = MMDDrift(n_null=100).fit(X)
    with pytest.raises(ValueError, match="X_window has 1 rows; at least 2 are required"):
        det.score(X[:1])


def test_too_small_baseline(X):
    with pytest.raises(ValueError, match="X_ref has 10 rows; at least 20 are required"):
        MMDDrift().fit(X[:10])
    with pytest.raises(ValueError, match="X_ref has 30 rows; at least 50 are required"):
        ClusterJSD(n_clusters=10).fit(X[:30])


def test_score_before_fit():
    with pytest.raises(RuntimeError, match="MMDDrift is not fitted"):
        MMDDrift().score(np.zeros((5, 2)))


def test_configuration_errors():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.5"):
        MMDDrift(alpha=1.5)
    with pytest.raises(ValueError, match="n_null=50 is too small for alpha=0.01: need n_null >= 99"):
        CentroidDistance(alpha=0.01, n_null=50)
    with pytest.raises(ValueError, match="n_clusters must be an integer >= 2, got 1"):
        ClusterJSD(n_clusters=1)
