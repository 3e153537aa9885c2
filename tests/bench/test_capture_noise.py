"""bench/capture_noise.py: a P2 run's latency ratios with their bootstrap interval and the A/A
noise floor, resampling whole stretches of one copy's requests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.capture_bench import LEVELS, OFF, ON, P2_GOAL, ROOT
from bench.capture_noise import aa_noise, latency_noise, ratio, ratio_ci, stretches

LEVEL1, LEVEL8 = (level for level, _ in LEVELS)


def abba_trace(on_ms: list[list[float]], off_ms: list[list[float]]) -> dict:
    """Two server runs (roles swapped), each measuring stretches in A B B A order at concurrency
    8; stretch k of the capturing copy has latencies ``on_ms[k]``, of the plain copy ``off_ms[k]``."""
    runs, requests, t = [], [], 1000.0
    for on, off in ((ON, OFF), (OFF, ON)):
        runs.append({"on": on, "off": off, "start": t, "end": t + 500})
        requests.append([on, 2, t - 1, 9999.0])  # a warm-up, before the run's start: not counted
        k = 0
        while k < len(on_ms):
            for model, ms in ((on, on_ms[k]), (off, off_ms[k]), (off, off_ms[k + 1]), (on, on_ms[k + 1])):
                for x in ms:
                    t += 0.01
                    requests.append([model, 8, t, x])
            k += 2
        t += 600
    return {"runs": runs, "requests": requests}


def test_stretches_follow_the_models_order_and_each_server_runs_roles():
    on = [[1.0, 2.0], [3.0, 4.0]]
    off = [[5.0], [6.0]]
    runs = stretches([abba_trace(on, off)], 8)
    # per server run: on A, off B+B (one stretch: the same model twice in a row), on A
    assert len(runs) == 2
    for run in runs:
        assert [list(x) for x in run["on"]] == [[1.0, 2.0], [3.0, 4.0]]
        assert [list(x) for x in run["off"]] == [[5.0, 6.0]]
    assert stretches([abba_trace(on, off)], 1) == []  # no requests at that level


def one_run(on: list, off: list) -> dict:
    return {"on": [np.asarray(x) for x in on], "off": [np.asarray(x) for x in off]}


def test_identical_stretches_give_the_exact_ratio_and_no_aa_noise():
    base = [10.0, 20.0, 30.0, 40.0]
    runs = [one_run([np.asarray(base) * 1.1] * 6, [base] * 6)] * 3
    assert ratio(runs, 99) == pytest.approx(1.1)
    assert ratio_ci(runs, 99, resamples=50) == pytest.approx((1.1, 1.1))
    assert aa_noise(runs, 99, P2_GOAL, splits=50) == {"sd": 0.0, "above_goal": 0.0}


def test_a_few_slow_stretches_widen_the_interval_and_the_aa_floor():
    # A capture that costs nothing, and one stall in the plain copy's 8 stretches: some random
    # halves hold the stall and some do not, so off against off lands above the goal.
    rng = np.random.default_rng(1)
    off = [rng.normal(500, 20, 40) for _ in range(8)]
    off[3] = off[3] + 300.0
    runs = [one_run([rng.normal(500, 20, 40) for _ in range(8)], off)]
    lo, hi = ratio_ci(runs, 99, resamples=300)
    assert lo < ratio(runs, 99) < hi and hi - lo > 0.1
    aa = aa_noise(runs, 99, P2_GOAL, splits=200)
    assert aa["sd"] > 0.1 and 0.2 < aa["above_goal"] < 0.8
    assert aa_noise(runs, 50, P2_GOAL, splits=200)["above_goal"] < aa["above_goal"]  # the median barely moves


def test_a_server_runs_offset_widens_the_interval_the_aa_floor_cannot_see():
    # Each restart draws the copies' speeds: here the capturing copy is 10 % faster in one server
    # run and 10 % slower in the other, with no noise inside either. Resampling stretches alone
    # would give one exact ratio; drawing server runs spreads the interval to both offsets, while
    # off against off, inside each server run, shows nothing.
    base = [np.full(10, 100.0)] * 4
    runs = [one_run([b * 0.9 for b in base], base), one_run([b * 1.1 for b in base], base)]
    lo, hi = ratio_ci(runs, 50, resamples=400)
    assert lo == pytest.approx(0.9) and hi == pytest.approx(1.1)
    assert aa_noise(runs, 50, P2_GOAL, splits=50)["sd"] == 0.0


def test_too_few_stretches_is_an_error_naming_the_counts():
    with pytest.raises(ValueError, match="need a server run with stretches of both roles; got 1 server runs, 0 on and 1 off"):
        ratio_ci([one_run([], [[1.0]])], 99)
    with pytest.raises(ValueError, match=r"at least 2 off stretches; got \[1, 0\]"):
        aa_noise([one_run([[1.0]], [[1.0]]), one_run([[1.0]], [])], 99, P2_GOAL)


def test_a_committed_run_gives_its_reports_ratios_inside_their_intervals():
    results = ROOT / "bench" / "results"
    doc = json.loads((results / "capture-resnet50-2026-12-06-w.json").read_text())
    trace = json.loads((results / "capture-resnet50-2026-12-06-w-trace.json").read_text())
    got = latency_noise([trace], LEVELS, P2_GOAL, resamples=200, splits=100)
    for level, r in doc["results"].items():
        for label, key in (("p50", "p50_ratio_on_off"), ("p99", "p99_ratio_on_off")):
            g = got[level][label]
            assert g["ratio"] == pytest.approx(r[key], rel=1e-4)  # latencies in the trace: 0.01 ms
            assert g["ci_low"] < g["ratio"] < g["ci_high"]
    # The tail at concurrency 8 is this run's noisiest ratio: off against off swings most there.
    assert got[LEVEL8]["p99"]["aa_sd"] > 2 * got[LEVEL8]["p50"]["aa_sd"]


def test_the_summary_reports_each_runs_intervals_and_the_pooled_ones(tmp_path):
    import datetime as dt
    import shutil

    from bench.capture_bench import summary

    runs = ["2026-12-05-u", "2026-12-06-w"]
    for name in runs:
        for suffix in ("", "-trace"):
            shutil.copy(ROOT / "bench" / "results" / f"capture-resnet50-{name}{suffix}.json", tmp_path)
    assert summary(runs, "resnet50", tmp_path, tag="-t", resamples=100, splits=50) == 0
    stem = tmp_path / f"capture-resnet50-summary-{dt.date.today().isoformat()}-t"
    noise = json.loads(stem.with_suffix(".json").read_text())["latency_noise"]
    assert sorted(noise) == sorted(runs + ["pooled"])
    assert noise["pooled"][LEVEL8]["p50"]["stretches"] == sum(noise[n][LEVEL8]["p50"]["stretches"] for n in runs)
    text = stem.with_suffix(".md").read_text()
    w = noise["2026-12-06-w"][LEVEL8]["p99"]
    assert f"| 2026-12-06-w | {LEVEL8} | 8 | 48 |" in text
    assert f"{w['ratio']:.3f} [{w['ci_low']:.3f}, {w['ci_high']:.3f}]" in text
