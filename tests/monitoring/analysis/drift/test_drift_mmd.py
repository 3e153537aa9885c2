import tracemalloc

import numpy as np
import pytest

from monitoring.analysis.drift import MMDDrift, RandomFourierFeatures, median_heuristic, mmd2_from_sums, rbf_kernel_row_sums


def full_kernel_mmd2(X, Y, gamma):
    """Reference: unbiased MMD^2 from full kernel matrices."""
    def k(A, B):
        d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
        return np.exp(-gamma * d2)

    m, n = len(X), len(Y)
    kxx, kyy, kxy = k(X, X), k(Y, Y), k(X, Y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


@pytest.mark.parametrize("block", [7, 64, 1024])
def test_blocked_mmd_matches_full_kernel(block):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 6))
    Y = rng.standard_normal((97, 6)) * 1.2 + 0.3
    gamma = 1.0 / (2 * median_heuristic(X) ** 2)
    ref = full_kernel_mmd2(X, Y, gamma)
    assert ref > 0.01
    # MMD^2_u from the blocked row sums, as the exact detector assembles it (diagonal removed)
    m, n = len(X), len(Y)
    blocked = ((rbf_kernel_row_sums(X, X, gamma, block).sum() - m) / (m * (m - 1))
               + (rbf_kernel_row_sums(Y, Y, gamma, block).sum() - n) / (n * (n - 1))
               - 2.0 * rbf_kernel_row_sums(X, Y, gamma, block).sum() / (m * n))
    assert blocked == pytest.approx(ref, rel=1e-9)
    d2 = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(rbf_kernel_row_sums(X, Y, gamma, block), np.exp(-gamma * d2).sum(1), rtol=1e-9)


def test_exact_detector_statistic_matches_full_kernel():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 5)).astype(np.float32)
    Y = (rng.standard_normal((120, 5)) + 0.4).astype(np.float32)
    det = MMDDrift(n_features=None, alpha=0.05, n_null=100, block_size=50).fit(X)
    r = det.score(Y)
    assert r.statistic == pytest.approx(full_kernel_mmd2(X.astype(np.float64), Y.astype(np.float64), det.gamma_), rel=1e-4)
    assert r.is_drift


def test_median_heuristic_is_median_pairwise_distance():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 3))
    d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))[np.triu_indices(60, 1)]
    assert median_heuristic(X) == pytest.approx(np.median(d), rel=1e-6)


def test_blocked_kernel_never_holds_n_by_n():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 8)).astype(np.float32)
    tracemalloc.start()
    rbf_kernel_row_sums(X, X, 0.1, block_size=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 3000 * 3000 * 4 / 10  # a full float32 kernel would be 36 MB; blocks use < 1 MB
    assert peak < 2_000_000


def test_rff_approximates_rbf_and_has_unit_diagonal():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 10))
    sigma = median_heuristic(X)
    rff = RandomFourierFeatures(10, 4096, sigma, np.random.default_rng(0), dtype=np.float64)
    phi = rff.transform(X)
    np.testing.assert_allclose(np.einsum("ij,ij->i", phi, phi), 1.0, rtol=1e-9)
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    assert np.abs(phi @ phi.T - np.exp(-d2 / (2 * sigma**2))).max() < 0.08


def test_mmd_from_sums_equals_u_statistic_on_features():
    rng = np.random.default_rng(5)
    phi = rng.standard_normal((30, 4))
    phi /= np.linalg.norm(phi, axis=1, keepdims=True)
    a, b = phi[:18], phi[18:]
    kaa, kbb, kab = a @ a.T, b @ b.T, a @ b.T
    ref = (kaa.sum() - 18) / (18 * 17) + (kbb.sum() - 12) / (12 * 11) - 2 * kab.mean()
    assert mmd2_from_sums(a.sum(0), 18, b.sum(0), 12) == pytest.approx(ref, rel=1e-12)


def test_rff_detector_statistic_is_feature_mmd(mixture):
    rng = np.random.default_rng(6)
    X = mixture.sample(1500, rng)
    W = mixture.sample(200, rng, shift=0.3)
    det = MMDDrift(n_features=256, alpha=0.01).fit(X)
    r = det.score(W)
    px, pw = det.rff_.transform(X).astype(np.float64), det.rff_.transform(W).astype(np.float64)
    ref = (
        ((px @ px.T).sum() - 1500) / (1500 * 1499)
        + ((pw @ pw.T).sum() - 200) / (200 * 199)
        - 2 * (px @ pw.T).mean()
    )
    assert r.statistic == pytest.approx(ref, rel=1e-4)
    assert r.is_drift and r.statistic > r.threshold
    assert len(r.explanation["witness_top_positions"]) == 10


def test_bad_n_features():
    with pytest.raises(ValueError, match="n_features must be an even integer >= 2 or None, got 511"):
        MMDDrift(n_features=511)
