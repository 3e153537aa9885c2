import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine

from monitoring.analysis.drift import CentroidDistance, cosine_distance, euclidean_distance


def test_statistics_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 8)).astype(np.float32) + 1.0
    W = rng.standard_normal((50, 8)).astype(np.float32) + 1.3
    mx, mw = X.astype(np.float64).mean(0), W.astype(np.float64).mean(0)
    r = CentroidDistance(alpha=0.05, n_null=100).fit(X).score(W)
    assert r.method == "centroid_euclidean"
    assert r.statistic == pytest.approx(np.linalg.norm(mx - mw), rel=1e-6)
    assert r.explanation["cosine"] == pytest.approx(scipy_cosine(mx, mw), rel=1e-6)
    rc = CentroidDistance(metric="cosine", alpha=0.05, n_null=100).fit(X).score(W)
    assert rc.method == "centroid_cosine"
    assert rc.statistic == pytest.approx(scipy_cosine(mx, mw), rel=1e-6)
    assert rc.explanation["euclidean"] == pytest.approx(r.statistic)


def test_distance_helpers_broadcast():
    a = np.array([1.0, 0.0])
    b = np.array([[0.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(euclidean_distance(a, b), [np.sqrt(2), 1.0])
    np.testing.assert_allclose(cosine_distance(a, b), [1.0, 0.0], atol=1e-12)
    assert cosine_distance(a, np.zeros(2)) == 1.0


def test_detects_small_mean_shift_and_names_the_dimension(mixture):
    rng = np.random.default_rng(3)
    X = mixture.sample(4000, rng)
    det = CentroidDistance(alpha=0.01).fit(X)
    W = mixture.sample(2000, rng)
    clean = det.score(W)
    W[:, 5] += 0.6  # 0.6 within-cluster sd (0.27 total sd) on one dimension
    shifted = det.score(W)
    assert not clean.is_drift
    assert shifted.is_drift and shifted.statistic > shifted.threshold
    assert shifted.threshold == clean.threshold  # same window size, same cached null
    assert shifted.explanation["top_dimensions"][0]["dimension"] == 5


def test_bad_metric():
    with pytest.raises(ValueError, match=r"metric must be one of \['cosine', 'euclidean'\], got 'manhattan'"):
        CentroidDistance(metric="manhattan")
