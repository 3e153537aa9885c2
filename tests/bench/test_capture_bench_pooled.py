"""bench/capture_bench.py's pooled ratios: several runs' requests counted as one run, each request
as on or off by the roles of the server run it fell in."""

from __future__ import annotations

import pytest

from bench.capture_bench import LEVELS, OFF, ON, pooled_ratios

LEVEL1, LEVEL8 = (level for level, _ in LEVELS)


def trace(scale_on: float, start: float) -> dict:
    """Two server runs with the roles swapped; the capturing copy is `scale_on` times slower, so
    whichever model name it has, the on÷off ratios are `scale_on`."""
    runs, requests = [], []
    for k, (on, off) in enumerate(((ON, OFF), (OFF, ON))):
        t0 = start + 100 * k
        runs.append({"on": on, "off": off, "start": t0, "end": t0 + 50})
        for i in range(200):
            base = 10.0 + i  # spread, so p50 and p99 differ
            for concurrency, factor in ((1, 1.0), (8, 5.0)):
                requests.append([on, concurrency, t0 + 1 + i * 0.1, base * factor * scale_on])
                requests.append([off, concurrency, t0 + 1 + i * 0.1, base * factor])
        requests.append([on, 2, t0 + 0.5, 10_000.0])  # a warm-up (concurrency 2): not counted
    return {"runs": runs, "requests": requests}


def rounds(rps_on: float, rps_off: float) -> dict:
    per_round = {"per_round": {"rounds": [[0.0, 0.0, rps_on, rps_off]] * 4}}
    return {LEVEL1: per_round, LEVEL8: per_round}


def test_one_run_pools_to_its_own_ratios_with_roles_taken_from_each_server_run():
    got = pooled_ratios([trace(1.10, 1000.0)], [rounds(10.0, 11.0)])
    for level in (LEVEL1, LEVEL8):
        assert got[level]["requests_per_condition"] == 400
        assert got[level]["p50 on÷off"] == pytest.approx(1.10)
        assert got[level]["p99 on÷off"] == pytest.approx(1.10)
        assert got[level]["throughput off÷on"] == pytest.approx(1.10)


def test_two_runs_pool_their_requests_and_rounds():
    # One run with no cost, one with 20 %: the pooled p50 sits between, and every request counts.
    got = pooled_ratios([trace(1.0, 1000.0), trace(1.2, 5000.0)], [rounds(10.0, 10.0), rounds(10.0, 12.0)])
    assert got[LEVEL1]["requests_per_condition"] == 800
    assert 1.0 < got[LEVEL1]["p50 on÷off"] < 1.2
    assert got[LEVEL8]["p99 on÷off"] > got[LEVEL8]["p50 on÷off"] > 1.0
    assert got[LEVEL1]["throughput off÷on"] == pytest.approx(1.1)  # median of 10, 10, ..., 12, 12


def test_a_committed_run_pools_to_the_ratios_its_report_gives():
    # The run and its trace as the benchmark wrote them: the trace holds every measured request,
    # its latencies rounded to 0.01 ms (hence rel=1e-4).
    import json

    from bench.capture_bench import ROOT

    results = ROOT / "bench" / "results"
    doc = json.loads((results / "capture-resnet50-2026-12-05-u.json").read_text())
    got = pooled_ratios([json.loads((results / "capture-resnet50-2026-12-05-u-trace.json").read_text())],
                        [doc["results"]])
    for level, r in doc["results"].items():
        assert got[level]["requests_per_condition"] == r["capture_on"]["requests"] == 7680
        assert got[level]["p50 on÷off"] == pytest.approx(r["p50_ratio_on_off"], rel=1e-4)
        assert got[level]["p99 on÷off"] == pytest.approx(r["p99_ratio_on_off"], rel=1e-4)
        assert got[level]["throughput off÷on"] == pytest.approx(1.0 / r["throughput_ratio_on_off"], rel=1e-4)
