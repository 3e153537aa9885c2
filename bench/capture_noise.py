"""How far one P2 run's latency ratios can be trusted: confidence intervals and an A/A noise floor,
from a run's ``--trace`` (bench/capture_bench.py ``--summary`` prints them).

A run measures the two copies in alternating stretches of requests (one model, one concurrency,
A B B A) over several server runs. Its requests are not independent, in two ways: at concurrency 8
a host stall or one slow batch makes a block's 8 callers slow together, so a run's slowest 1 %
come from a few dozen such events; and each server run draws the two copies' speeds anew (where
their memory landed), so a server run's stretches share an offset (per server run, p50 on÷off at
concurrency 1 ranged 0.889–1.134 in run 2026-12-05-s). Both estimates below resample whole
stretches, never single requests:

* :func:`ratio_ci` -- a two-stage percentile bootstrap: server runs drawn with replacement, then
  each drawn server run's on and off stretches drawn with replacement, and the ratio recomputed;
  its 2.5 and 97.5 percentiles.
* :func:`aa_noise` -- capture off against capture off: each server run's off stretches split at
  random into two halves; one half's percentile over the other's is what a run would report for a
  capture that costs nothing (an A/A test at half the run's size, so ~1.4 times a whole run's
  spread). It sees only the noise inside server runs (both halves are the same copy), so it is a
  floor: under it no single run can resolve a cost.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

#: (percentile, label) of the latency ratios the report gives.
PERCENTILES = ((50, "p50"), (99, "p99"))


def stretches(traces: Iterable[dict], concurrency: int) -> list[dict[str, list[np.ndarray]]]:
    """Per server run (in the traces' order), the latencies (ms) of each of its stretches at
    ``concurrency`` by role ("on", "off"): a stretch is a maximal sequence of one model's requests
    in the trace's order inside the server run, its role that model's there. Requests outside
    every server run (warm-ups) are left out; a server run with none at this level too."""
    out = []
    for t in traces:
        for r in t["runs"]:
            role = {r["on"]: "on", r["off"]: "off"}
            run: dict[str, list[np.ndarray]] = {"on": [], "off": []}
            current: list[float] = []
            current_model = None
            for model, c, start, ms in t["requests"]:
                if c != concurrency or model not in role or not r["start"] <= start <= r["end"]:
                    continue
                if model != current_model and current:
                    run[role[current_model]].append(np.asarray(current))
                    current = []
                current_model = model
                current.append(ms)
            if current:
                run[role[current_model]].append(np.asarray(current))
            if run["on"] or run["off"]:
                out.append(run)
    return out


def _pct(parts: list[np.ndarray], q: float) -> float:
    return float(np.percentile(np.concatenate(parts), q))


def _all(runs: list[dict[str, list[np.ndarray]]], role: str) -> list[np.ndarray]:
    return [s for run in runs for s in run[role]]


def ratio(runs: list[dict[str, list[np.ndarray]]], q: float) -> float:
    """Percentile ``q`` of the on requests over that of the off requests."""
    return _pct(_all(runs, "on"), q) / _pct(_all(runs, "off"), q)


def ratio_ci(runs: list[dict[str, list[np.ndarray]]], q: float, resamples: int = 1000,
             seed: int = 0) -> tuple[float, float]:
    """The 95 % two-stage bootstrap interval of :func:`ratio` (server runs, then their stretches)."""
    usable = [run for run in runs if run["on"] and run["off"]]
    if not usable:
        raise ValueError(f"need a server run with stretches of both roles; got {len(runs)} server runs, "
                         f"{len(_all(runs, 'on'))} on and {len(_all(runs, 'off'))} off stretches")
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(resamples):
        on: list[np.ndarray] = []
        off: list[np.ndarray] = []
        for k in rng.integers(0, len(usable), len(usable)):
            run = usable[k]
            on += [run["on"][i] for i in rng.integers(0, len(run["on"]), len(run["on"]))]
            off += [run["off"][i] for i in rng.integers(0, len(run["off"]), len(run["off"]))]
        ratios.append(_pct(on, q) / _pct(off, q))
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def aa_noise(runs: list[dict[str, list[np.ndarray]]], q: float, goal: float, splits: int = 400,
             seed: int = 0) -> dict[str, float]:
    """Capture off against capture off: each server run's off stretches split at random into two
    halves, ``splits`` times; the sd of the halves' percentile-``q`` ratio and the share of splits
    whose ratio is above ``goal``. Server runs with fewer than 2 off stretches are left out."""
    usable = [run["off"] for run in runs if len(run["off"]) >= 2]
    if not usable:
        raise ValueError(f"an A/A split needs a server run with at least 2 off stretches; "
                         f"got {[len(run['off']) for run in runs]}")
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(splits):
        a: list[np.ndarray] = []
        b: list[np.ndarray] = []
        for off in usable:
            order = rng.permutation(len(off))
            half = len(off) // 2
            a += [off[i] for i in order[:half]]
            b += [off[i] for i in order[half:]]
        ratios.append(_pct(a, q) / _pct(b, q))
    r = np.asarray(ratios)
    return {"sd": float(r.std()), "above_goal": float((r > goal).mean())}


def latency_noise(traces: list[dict], levels: Iterable[tuple[str, int]], goal: float, resamples: int = 1000,
                  splits: int = 400, seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """For each (level name, concurrency) and each of p50 and p99: the on÷off ratio over these
    traces' requests, its 95 % bootstrap interval, and the A/A noise of the off stretches."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for level, concurrency in levels:
        runs = stretches(traces, concurrency)
        out[level] = {}
        for q, label in PERCENTILES:
            lo, hi = ratio_ci(runs, q, resamples, seed)
            aa = aa_noise(runs, q, goal, splits, seed)
            out[level][label] = {"ratio": ratio(runs, q), "ci_low": lo, "ci_high": hi, "server_runs": len(runs),
                                 "stretches": min(len(_all(runs, "on")), len(_all(runs, "off"))),
                                 "aa_sd": aa["sd"], "aa_above_goal": aa["above_goal"]}
    return out
