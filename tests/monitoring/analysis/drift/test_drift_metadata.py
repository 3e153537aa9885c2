import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring.analysis.drift import MetadataDrift, ks_critical_value, psi

from drift_testlib import blur, image_metadata


def test_psi_matches_hand_formula():
    base = np.arange(1, 101, dtype=float)  # 1..100
    win = np.r_[np.full(30, 10.0), np.full(70, 90.0)]
    edges = np.array([25.0, 50.0, 75.0])  # bins (-inf,25], (25,50], (50,75], (75,inf)
    r = np.array([0.25, 0.25, 0.25, 0.25])
    w = np.array([0.30, 1e-4, 1e-4, 0.70])  # empty bins floored at eps=1e-4
    expected = np.sum((w - r) * np.log(w / r))
    assert psi(base, win, edges) == pytest.approx(expected, rel=1e-12)
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)


def test_ks_and_bonferroni_per_field():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "c": rng.normal(size=500)})
    win = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(0.4, size=200), "c": rng.normal(size=200)})
    r = MetadataDrift(alpha=0.01).fit(ref).score(win)
    fields = {f["field"]: f for f in r.explanation["fields"]}
    for name in "abc":
        ks = stats.ks_2samp(ref[name], win[name])
        assert fields[name]["ks_statistic"] == pytest.approx(ks.statistic)
        assert fields[name]["p_adjusted"] == pytest.approx(min(1.0, 3 * ks.pvalue))
    assert r.explanation["top_field"] == "b" and r.explanation["drifted_fields"] == ["b"]
    assert r.is_drift and r.p_value == pytest.approx(fields["b"]["p_adjusted"])
    assert r.statistic == pytest.approx(fields["b"]["ks_statistic"])
    assert r.threshold == pytest.approx(ks_critical_value(0.01 / 3, 500, 200))
    assert fields["b"]["window_mean"] == pytest.approx(win["b"].mean())
    assert fields["b"]["baseline_median"] == pytest.approx(ref["b"].median())


def test_darkened_digits_name_brightness_first(digits):
    base, held = digits
    ref = image_metadata(base)
    det = MetadataDrift(alpha=0.01).fit(ref)
    clean = det.score(image_metadata(held[:300]))
    dark = det.score(image_metadata(held[:300] * 0.5))
    assert not clean.is_drift
    assert dark.is_drift and dark.explanation["top_field"] == "brightness"
    top = dark.explanation["fields"][0]
    assert top["window_mean"] == pytest.approx(0.5 * held[:300].mean(), rel=1e-9)
    # contrast as RMS contrast (std/mean) does not change when every pixel is halved
    assert "contrast" not in dark.explanation["drifted_fields"]
    # skipped columns are reported with the reason
    assert dark.explanation["skipped"] == {"height": "constant in baseline (= 8.0)", "source": "non-numeric dtype str"} or (
        dark.explanation["skipped"]["height"] == "constant in baseline (= 8.0)"
        and dark.explanation["skipped"]["source"].startswith("non-numeric dtype")
    )


def test_blurred_digits_name_sharpness_first(digits):
    base, held = digits
    det = MetadataDrift(alpha=0.01).fit(image_metadata(base))
    r = det.score(image_metadata(blur(held[:300], 0.6)))
    assert r.is_drift and r.explanation["top_field"] == "sharpness"
    assert "brightness" not in r.explanation["drifted_fields"]


def test_with_std_contrast_darkening_moves_brightness_and_contrast_most(digits):
    """With contrast = pixel std, halving pixels halves contrast too; both lead the ranking."""
    base, held = digits
    det = MetadataDrift().fit(image_metadata(base, contrast="std"))
    r = det.score(image_metadata(held[:300] * 0.5, contrast="std"))
    assert {f["field"] for f in r.explanation["fields"][:2]} == {"brightness", "contrast"}


def test_metadata_errors():
    ref = pd.DataFrame({"a": np.arange(50.0), "s": ["x"] * 50})
    with pytest.raises(ValueError, match="df_ref must be a pandas DataFrame, got ndarray"):
        MetadataDrift().fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"df_window is empty \(0 rows\)"):
        MetadataDrift().fit(ref).score(ref.iloc[:0])
    with pytest.raises(ValueError, match=r"df_window lacks fitted column\(s\) \['a'\]"):
        MetadataDrift().fit(ref).score(pd.DataFrame({"b": [1.0]}))
    with pytest.raises(ValueError, match="df_ref has no usable numeric column"):
        MetadataDrift().fit(pd.DataFrame({"s": ["x"] * 50, "k": [1.0] * 50}))
    with pytest.raises(ValueError, match=r"columns \['zz'\] are not in df_ref"):
        MetadataDrift(columns=["zz"]).fit(ref)


def test_missing_values_are_dropped_and_counted():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"latency": rng.exponential(size=300)})
    w = rng.exponential(size=100)
    w[:10] = np.nan
    r = MetadataDrift().fit(ref).score(pd.DataFrame({"latency": w}))
    f = r.explanation["fields"][0]
    assert f["window_missing"] == 10 and f["n_window"] == 90
