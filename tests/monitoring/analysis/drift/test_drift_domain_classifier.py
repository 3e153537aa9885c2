import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monitoring.analysis.drift import DomainClassifier, auc_mann_whitney, auc_null_sd


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.standard_normal(300) + 0.5 * y, 1)  # rounding creates ties
    assert auc_mann_whitney(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_null_sd_matches_simulation():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(40), np.ones(60)]
    aucs = [auc_mann_whitney(y, rng.standard_normal(100)) for _ in range(3000)]
    assert np.std(aucs) == pytest.approx(auc_null_sd(60, 40), rel=0.06)
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.003)


@pytest.mark.parametrize("classifier", ["logistic", "lda"])
def test_separates_shifted_window_and_points_at_shifted_rows(mixture, classifier):
    rng = np.random.default_rng(3)
    X = mixture.sample(2000, rng)
    det = DomainClassifier(n_components=None, classifier=classifier, alpha=0.01).fit(X)
    clean = det.score(mixture.sample(400, rng))
    W = mixture.sample(400, rng)
    W[:100] += 1.5  # a quarter of the window moved
    r = det.score(W)
    assert not clean.is_drift and clean.statistic < clean.threshold
    assert r.is_drift and r.statistic > r.threshold and r.p_value < 1e-3
    ex = clean.explanation
    assert (ex["n_window_used"], ex["n_baseline_used"]) == (400, 500)  # min_baseline_sample=500
    assert (ex["n_test_window"], ex["n_test_baseline"]) == (200, 250)  # test_size=0.5
    assert clean.threshold == pytest.approx(0.5 + 2.3263478740 * auc_null_sd(200, 250))
    top = r.explanation["most_window_like_positions"]
    assert np.mean(np.array(top) < 100) >= 0.8


def test_window_larger_than_max_samples_is_subsampled(mixture):
    rng = np.random.default_rng(4)
    det = DomainClassifier(n_components=None, max_samples=300, classifier="lda").fit(mixture.sample(500, rng))
    r = det.score(mixture.sample(800, rng))
    assert r.window_size == 800
    assert r.explanation["n_window_used"] == 300 and r.explanation["n_baseline_used"] == 300  # capped
    assert max(r.explanation["most_window_like_positions"]) < 800


def test_too_small_window_message(mixture):
    det = DomainClassifier(n_components=4).fit(mixture.sample(100, np.random.default_rng(5)))
    with pytest.raises(ValueError, match="X_window has 3 rows; at least 4 are required"):
        det.score(np.zeros((3, 16), np.float32))


def test_clean_auc_null_matches_mann_whitney_sd(mixture):
    """Held-out AUC on clean windows: mean 0.5 and the analytic sd (k-fold CV would give ~1.4x)."""
    rng = np.random.default_rng(6)
    det = DomainClassifier(n_components=None, classifier="lda").fit(mixture.sample(3000, rng))
    rs = [det.score(mixture.sample(200, rng)) for _ in range(150)]
    aucs = np.array([r.statistic for r in rs])
    sd = rs[0].explanation["null"]["null_sd"]
    assert abs(aucs.mean() - 0.5) < 3 * sd / np.sqrt(150)
    assert aucs.std() == pytest.approx(sd, rel=0.2)


def test_same_window_same_result(mixture):
    rng = np.random.default_rng(7)
    det = DomainClassifier(n_components=4).fit(mixture.sample(600, rng))
    W = mixture.sample(100, rng)
    assert det.score(W) == det.score(W.copy())
