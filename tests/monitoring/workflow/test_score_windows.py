"""Scoring a store window by window: verdicts, JSON shape and types, explanations, windowing."""

from __future__ import annotations

import json

import pytest

from monitoring.cli import main as cli_main
from monitoring.analysis.drift import EMBEDDING_METHODS
from monitoring.analysis.scoring import count_windows, load_latest_scores, parse_every, parse_window_spec, score_model, time_windows
from workflow_testlib import DAY, MODEL, T0

METHOD_FIELDS = {"statistic": float, "threshold": float, "p_value": float, "is_drift": bool, "window_size": int}


@pytest.fixture
def daily_run(digit_store):
    store, ids = digit_store
    return score_model(store, MODEL, every="1d"), ids


def test_clean_day_quiet_corrupted_days_drift(daily_run):
    run, _ = daily_run
    clean, blurred, dark = run["windows"]
    assert [w["start"] for w in run["windows"]] == ["2024-05-06T00:00:00Z", "2024-05-07T00:00:00Z", "2024-05-08T00:00:00Z"]
    assert [w["n"] for w in run["windows"]] == [200, 200, 200]
    assert not any(clean["methods"][m]["is_drift"] for m in EMBEDDING_METHODS) and not clean["any_drift"]
    for w in (blurred, dark):
        assert w["any_drift"]
        assert sum(w["methods"][m]["is_drift"] for m in EMBEDDING_METHODS) >= 3
        assert w["methods"]["mmd"]["p_value"] <= 0.01 and w["methods"]["metadata"]["is_drift"]


def test_explanation_names_sharpness_for_blur_and_brightness_for_darkening(daily_run):
    run, ids = daily_run
    clean, blurred, dark = run["windows"]
    assert blurred["explanation"]["top_field"] == "sharpness"
    assert "brightness" not in blurred["explanation"]["drifted_fields"]
    assert dark["explanation"]["top_field"] == "brightness"
    assert dark["metadata_top"][0]["field"] == "brightness"
    assert dark["metadata_top"][0]["window_median"] < dark["metadata_top"][0]["baseline_median"] / 1.5
    assert "brightness lower than baseline" in dark["explanation"]["summary"]
    assert "sharpness lower than baseline" in blurred["explanation"]["summary"]
    # window positions are mapped to request ids of that window
    dark_ids = {rid for rid, _ in ids["darkened"]}
    named = set(dark["explanation"]["most_unusual_request_ids"]) | {r for c in dark["explanation"]["clusters"] for r in c["request_ids"]}
    assert named and named <= dark_ids


def test_json_fields_present_and_typed(digit_store, capsys):
    store, _ = digit_store
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["model"] == MODEL and run["baseline"]["version"] == 1 and run["windowing"]["kind"] == "time"
    assert len(run["windows"]) == 3
    for w in run["windows"]:
        for k, t in {"start": str, "end": str, "n": int, "scored": bool, "any_drift": bool, "drifted": list,
                     "metadata_top": list, "explanation": dict}.items():
            assert isinstance(w[k], t), k
        assert "accuracy" in w and w["accuracy"] is None  # no actuals posted
        assert set(w["methods"]) == set(EMBEDDING_METHODS) | {"metadata"}
        for r in w["methods"].values():
            for f, t in METHOD_FIELDS.items():
                assert isinstance(r[f], t), f
            assert r["window_size"] == w["n"]
            assert 0.0 < r["p_value"] <= 1.0
            assert r["is_drift"] == (r["p_value"] <= 0.01)
    # saved for the exporter and the report
    latest = load_latest_scores(store, MODEL)
    assert [w["methods"]["mmd"]["statistic"] for w in latest["windows"]] == [w["methods"]["mmd"]["statistic"] for w in run["windows"]]
    assert run["saved_as"].startswith("_monitoring/scores/model=" + MODEL + "/run-")


def test_every_n_explicit_and_small_windows(digit_store, capsys):
    store, _ = digit_store
    run = score_model(store, MODEL, every_n=150)
    assert [w["n"] for w in run["windows"]] == [150, 150, 150, 150]
    assert not run["windows"][0]["any_drift"] and run["windows"][-1]["any_drift"]
    win = parse_window_spec(f"dark={T0 + 2 * DAY}..{T0 + 3 * DAY}")
    run = score_model(store, MODEL, windows=[win])
    assert [w["label"] for w in run["windows"]] == ["dark"] and run["windows"][0]["n"] == 200
    assert run["windows"][0]["explanation"]["top_field"] == "brightness"
    run = score_model(store, MODEL, every="1h", since="2024-05-06T00:00Z", until="2024-05-06T04:00Z")
    assert len(run["windows"]) == 4
    assert [w["scored"] for w in run["windows"]] == [False] * 4  # 10 records/hour < min-window 30
    assert "min-window" in run["windows"][1]["skipped_reason"]
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "DRIFT" in out and "2024-05-08T00:00:00Z" in out and "brightness" in out


def test_fail_on_drift_and_errors(digit_store, capsys):
    store, _ = digit_store
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d", "--no-save", "--fail-on-drift"]) == 3
    assert cli_main(["score", "--model", "nobaseline", "--store", str(store)]) == 2
    assert "no baseline" in capsys.readouterr().err
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "fortnight"]) == 2


def test_window_helpers():
    assert parse_every("1h") == 3_600_000 and parse_every("2d") == 2 * 86_400_000 and parse_every("1w") == 7 * 86_400_000
    with pytest.raises(ValueError):
        parse_every("0h")
    import numpy as np

    ts = np.array([T0 + 5, T0 + DAY + 7, T0 + 9 * DAY])  # T0 is a Monday
    weeks = time_windows(ts, parse_every("1w"))
    assert [w.label for w in weeks] == ["2024-05-06T00:00:00Z", "2024-05-13T00:00:00Z"]
    assert weeks[0].start_ms == T0 and weeks[-1].end_ms == T0 + 14 * DAY
    clipped = time_windows(ts, parse_every("1w"), since_ms=T0 + 5, until_ms=T0 + 9 * DAY)
    assert (clipped[0].start_ms, clipped[-1].end_ms) == (T0 + 5, T0 + 9 * DAY)
    assert [w.positions for w in count_windows(np.arange(5), 2)] == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(ValueError):
        parse_window_spec("no-range")
