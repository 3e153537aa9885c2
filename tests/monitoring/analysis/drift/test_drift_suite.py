import json

import numpy as np
import pytest

from monitoring.analysis.drift import EMBEDDING_METHODS, ClusterJSD, DriftSuite, MetadataDrift, default_detectors

from drift_testlib import blur, flat, image_metadata


@pytest.fixture(scope="module")
def fitted(digits):
    base, _ = digits
    # k=20: with 10 clusters (about one per digit class) halving every pixel keeps most digits in
    # their cluster and the cluster shares barely move (p=0.07 at 400 rows, see the test below).
    detectors = default_detectors(alpha=0.01)
    detectors["cluster_jsd"] = ClusterJSD(n_clusters=20, alpha=0.01)
    suite = DriftSuite(detectors=detectors, alpha=0.01)
    return suite.fit(flat(base), image_metadata(base))


@pytest.mark.parametrize("kind", ["blurred", "darkened"])
def test_every_embedding_method_detects_corrupted_digits(fitted, digits, kind):
    _, held = digits
    imgs = held[:400]  # ClusterJSD needs ~300 rows to see the x0.5 darkening (p=0.09 at 200)
    imgs = blur(imgs, 1.0) if kind == "blurred" else imgs * 0.5
    results = fitted.score(flat(imgs), image_metadata(imgs))
    assert set(results) == set(EMBEDDING_METHODS) | {"metadata"}
    for name, r in results.items():
        assert r.is_drift, (name, r.statistic, r.threshold)
        assert r.statistic > r.threshold and r.p_value <= 0.01
        assert r.window_size == 400
    expected_top = "sharpness" if kind == "blurred" else "brightness"
    if kind == "blurred":
        # a sigma=1 blur of an 8x8 digit also flattens (RMS) contrast; both lead, brightness is untouched
        top2 = [f["field"] for f in results["metadata"].explanation["fields"][:2]]
        assert set(top2) == {"sharpness", "contrast"}
        assert "brightness" not in results["metadata"].explanation["drifted_fields"]
    else:
        assert results["metadata"].explanation["top_field"] == expected_top
    summary = DriftSuite.summarize(results)
    assert summary["any_drift"] and set(summary["drifted"]) == set(results)
    json.dumps(summary)


def test_clean_digits_window_is_quiet(fitted, digits):
    _, held = digits
    results = fitted.score(flat(held[400:700]), image_metadata(held[400:700]))
    assert not any(r.is_drift for r in results.values()), {k: r.p_value for k, r in results.items()}


def test_suite_cluster_explanation_lists_window_positions(fitted, digits):
    _, held = digits
    # a window made only of zeros and ones: clusters holding those digits gain mass
    from sklearn.datasets import load_digits

    data = load_digits()
    sel = np.flatnonzero(np.isin(data.target, [0, 1]))[:150]
    ex = fitted.score(flat(data.images[sel]))["cluster_jsd"].explanation
    assert ex["top_clusters"][0]["direction"] == "gained"
    positions = ex["top_clusters"][0]["window_positions"]
    assert positions and all(0 <= p < 150 for p in positions)
    assert sum(c["window_share"] for c in ex["clusters"]) == pytest.approx(1.0)


def test_suite_configuration_errors(digits):
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['umap'\]"):
        DriftSuite(methods=("mmd", "umap"))
    suite = DriftSuite(methods=("centroid",), metadata=MetadataDrift())
    with pytest.raises(RuntimeError, match="DriftSuite is not fitted"):
        suite.score(np.zeros((3, 64)))
    suite.fit(flat(digits[0]))
    with pytest.raises(ValueError, match="metadata_window given but the suite was fitted without metadata_ref"):
        suite.score(flat(digits[1][:20]), image_metadata(digits[1][:20]))
    assert set(suite.score(flat(digits[1][:20]))) == {"centroid"}


def test_ten_clusters_barely_see_darkening_but_centroid_does(digits):
    """Cluster shares cannot see a shift inside clusters; that is why the suite pairs them with
    centroid/MMD statistics."""
    base, held = digits
    dark = flat(held[:400] * 0.5)
    r10 = ClusterJSD(n_clusters=10).fit(flat(base)).score(dark)
    assert r10.p_value > 0.01
    assert DriftSuite(methods=("centroid",)).fit(flat(base)).score(dark)["centroid"].p_value <= 0.01
