import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from monitoring.analysis.drift import ClusterJSD, js_distance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_js_distance_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    p = rng.random(10)
    q = rng.random(10)
    q[3] = 0.0  # an empty bin
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    batch = rng.random((4, 10))
    np.testing.assert_allclose(js_distance(p, batch), [jensenshannon(p, b, base=2) for b in batch], atol=1e-12)


def test_js_distance_extremes():
    assert js_distance([1, 0], [1, 0]) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_statistic_is_jsd_of_occupancies(mixture):
    rng = np.random.default_rng(0)
    X = mixture.sample(2000, rng)
    det = ClusterJSD(n_clusters=10, alpha=0.05, n_null=100).fit(X)
    W = mixture.sample(300, rng)
    labels, _ = det.assign(W)
    expected = jensenshannon(det.baseline_share_, np.bincount(labels, minlength=10) / 300, base=2)
    r = det.score(W)
    assert r.statistic == pytest.approx(expected, abs=1e-9)
    assert det.baseline_share_.sum() == pytest.approx(1.0)
    assert r.method == "cluster_jsd" and r.window_size == 300


def test_detects_cluster_mix_change_and_explains_it(mixture):
    rng = np.random.default_rng(1)
    X = mixture.sample(3000, rng)
    det = ClusterJSD(n_clusters=10, alpha=0.01, n_null=200).fit(X)
    # which fitted cluster holds mixture component 0, and which component 1
    lab0 = np.bincount(det.assign(mixture.centers[[0]].astype(np.float32))[0], minlength=10).argmax()
    lab1 = np.bincount(det.assign(mixture.centers[[1]].astype(np.float32))[0], minlength=10).argmax()
    w = mixture.weights.copy()
    w[0], w[1] = 0.25, 0.0
    w /= w.sum()
    W = mixture.sample(500, rng, weights=w)
    r = det.score(W)
    assert r.is_drift and r.p_value <= 0.01 and r.statistic > r.threshold
    ex = r.explanation
    shares = {c["cluster"]: c for c in ex["clusters"]}
    assert sum(c["window_share"] for c in ex["clusters"]) == pytest.approx(1.0)
    deltas = [abs(c["delta"]) for c in ex["clusters"]]
    assert deltas == sorted(deltas, reverse=True)
    assert {ex["clusters"][0]["cluster"], ex["clusters"][1]["cluster"]} == {int(lab0), int(lab1)}
    assert shares[int(lab0)]["delta"] > 0.1 and shares[int(lab1)]["delta"] < -0.05
    top = {t["cluster"]: t for t in ex["top_clusters"]}
    gained = top[int(lab0)]
    assert gained["direction"] == "gained" and len(gained["window_positions"]) == 5
    labels, _ = det.assign(W)
    assert all(labels[p] == lab0 for p in gained["window_positions"])
    assert top[int(lab1)]["direction"] == "lost" and top[int(lab1)]["window_positions"] == []


def test_null_floor_shrinks_like_sqrt_k_over_n(mixture):
    """The false-alarm trap: clean JS distance is ~0.088 at n=200 and ~0.039 at n=1000 for k=10."""
    rng = np.random.default_rng(2)
    det = ClusterJSD(n_clusters=10, n_null=200).fit(mixture.sample(5000, rng))
    m200 = float(np.median(det.null_distribution(200)))
    m1000 = float(np.median(det.null_distribution(1000)))
    assert 0.07 < m200 < 0.11
    assert 0.03 < m1000 < 0.05
    assert m200 / m1000 == pytest.approx(np.sqrt(5), rel=0.2)
