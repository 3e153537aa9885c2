"""Settings drift, output checks and prompt-shift explanations on small hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.analysis.drift.outputs import OutputChecks
from monitoring.analysis.drift.prompts import prompt_shift, term_shift
from monitoring.analysis.drift.settings import SettingsDrift, describe_moves, settings_frame


def _settings(n: int, steps: int, guidance: float, size: int = 512, negative: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"gen_steps": [steps] * n, "gen_guidance": [guidance] * n, "gen_strength": [None] * n,
                         "gen_width": [size] * n, "gen_height": [size] * n,
                         "has_negative_prompt": rng.random(n) < negative})


def test_settings_constant_baseline_same_window_is_quiet():
    det = SettingsDrift().fit(_settings(200, 30, 7.5, negative=0.3))
    r = det.score(_settings(60, 30, 7.5, negative=0.3, seed=1))
    assert not r.is_drift and r.p_value > 0.01
    assert "gen_strength" in r.explanation["skipped"]  # never set in the baseline


def test_settings_new_value_of_a_constant_field_drifts():
    det = SettingsDrift().fit(_settings(200, 30, 7.5))
    r = det.score(_settings(60, 50, 7.5, size=768))
    assert r.is_drift and set(r.explanation["drifted_fields"]) == {"gen_steps", "gen_size"}
    steps = next(f for f in r.explanation["fields"] if f["field"] == "gen_steps")
    assert steps["baseline"] == {"30": 1.0} and steps["window"] == {"50": 1.0} and steps["tv_distance"] == 1.0
    assert describe_moves(r.explanation)[0].startswith(("gen_size: 512x512", "gen_steps: 30"))


def test_settings_frame_labels():
    f = settings_frame(pd.DataFrame({"gen_guidance": [7.5, None], "gen_width": [512, None], "gen_height": [768, 64],
                                     "has_negative_prompt": [True, False]}))
    assert f["gen_guidance"].tolist() == ["7.5", "unset"] and f["gen_size"].tolist() == ["512x768", "unset"]
    assert f["has_negative_prompt"].tolist() == ["yes", "no"]


def test_settings_needs_a_set_field():
    with pytest.raises(ValueError, match="no generation setting"):
        SettingsDrift().fit(pd.DataFrame({"gen_steps": [None] * 50}))


def _outputs(n: int, blank: int = 0, errors: int = 0, mean: float = 120.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"outcome": ["error"] * errors + ["ok"] * (n - errors),
                         "output_blank": [None] * errors + [True] * blank + [False] * (n - errors - blank),
                         "output_nonfinite": [None] * errors + [False] * (n - errors),
                         "output_mean": [None] * errors + list(rng.normal(mean, 10, n - errors)),
                         "output_std": [None] * errors + list(rng.normal(40, 5, n - errors))})


def test_output_checks_quiet_then_blank_outputs_alarm():
    det = OutputChecks().fit(_outputs(300))
    quiet = det.score(_outputs(80, seed=1))
    assert not quiet.is_drift
    blank = det.score(_outputs(80, blank=8, seed=2))
    assert blank.is_drift and "blank" in blank.explanation["drifted_checks"]
    assert blank.explanation["shares"]["blank_share"] == pytest.approx(0.1)


def test_output_checks_failures_and_darker_outputs():
    det = OutputChecks().fit(_outputs(300), n_ref_errors=3, n_ref_records=303)
    r = det.score(_outputs(100, errors=20, mean=60, seed=3))
    assert {"failed", "output_mean"} <= set(r.explanation["drifted_checks"])
    assert r.explanation["shares"]["failed_share"] == pytest.approx(0.2)


def test_term_shift_names_the_new_subject():
    base = [f"a photo of a cat on a {p}" for p in ("sofa", "rug", "bed")] * 20
    win = [f"a painting of a dragon over a {p}" for p in ("castle", "tower")] * 20
    t = term_shift(base, win)
    assert "dragon" in [x["term"] for x in t["rose"][:3]]
    assert "cat" in [x["term"] for x in t["fell"]]
    cat = next(x for x in t["fell"] if x["term"] == "cat")
    assert cat["baseline_share"] == pytest.approx(1.0) and cat["window_share"] == 0.0


def test_prompt_shift_without_text_says_why():
    e = prompt_shift([None, None], ["a cat"])
    assert not e["available"] and "CAPTURE_PROMPT_TEXT=1" in e["reason"]


def test_prompt_shift_by_hash_when_text_is_off():
    e = prompt_shift([None] * 4, [None] * 4, baseline_hashes=["a", "b", "a", "b"], window_hashes=["a", "c", "c", "d"])
    assert not e["available"] and e["new_prompts_share"] == 0.75
    assert e["top_new_prompt_hashes"] == [{"prompt_hash": "c", "count": 2}]
