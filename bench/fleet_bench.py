"""P7: drift over a fleet's day of traffic, from 10k to 1M captured records.

For each size N: N records with 2048-d embeddings (ResNet-50 pooled width) are written into a
Hive-partitioned Parquet store (24 hour partitions, 2 files per hour, the real record schema),
hour by hour so generation never holds more than one file. Then, in a FRESH process (so its peak
RSS is this job's alone), the 24 hourly windows are scored against a 10k-row baseline by every
default method (cluster_jsd, centroid, mmd, domain_classifier) plus metadata (KS/PSI) with
:func:`monitoring.analysis.fleet.score_windows`: pruned listing, per-partition projected reads,
mergeable states, merge, score. Hours 18-23 carry a mild drift (two cluster weights 0.10 ->
0.13/0.07 + 0.1 sd shift, as in bench/drift_bench.py), hours 0-17 are clean: every window has a
right answer and the report counts the verdicts.

    python bench/fleet_bench.py                           # 10k, 100k, 1M (needs ~9 GB disk for 1M)
    python bench/fleet_bench.py --sizes 10000,100000      # smaller
    python bench/fleet_bench.py --cluster local2           # map step on a local 2-worker Dask cluster

Goal (issue #11): 1M records scored as 24 hourly windows in <= 30 s end to end and <= 2 GB RSS
on 2 cores. "Score" = list + read + map + merge + score, baseline suite already fitted (a stored
baseline is fitted once, not per scoring run); fit time and process start are reported next to
it. The float32-vs-float16 storage comparison (bytes on disk, read+map time, verdicts) runs on
the smallest size >= 100k.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.analysis.drift import DriftSuite  # noqa: E402
from monitoring.analysis.fleet import hourly_windows, score_windows  # noqa: E402
from monitoring.analysis.fleet.synthetic import write_day  # noqa: E402

DAY_MS = 1_795_651_200_000  # 2026-11-26T00:00Z
MODEL = "resnet_classifier"
DRIFT_FROM_HOUR = 18
K = 10


class Recipe:
    """Mixture of 10 Gaussians in d dims (the drift bench's recipe); drifted hours shift it."""

    def __init__(self, d: int, seed: int = 0) -> None:
        self.d = d
        self.centers = np.random.default_rng(seed).standard_normal((K, d)).astype(np.float32)
        self.base_w = np.full(K, 0.1)
        self.drift_w = self.base_w.copy()
        self.drift_w[0], self.drift_w[1] = 0.13, 0.07

    def sample(self, rng: np.random.Generator, n: int, hour: int) -> np.ndarray:
        drift = hour >= DRIFT_FROM_HOUR
        lab = rng.choice(K, size=n, p=self.drift_w if drift else self.base_w)
        x = rng.standard_normal((n, self.d), dtype=np.float32)
        x += self.centers[lab]
        if drift:
            x += np.float32(0.1)
        return x


def cpu_s() -> float:
    """User + system CPU seconds of this process (with Dask: workers' CPU is not included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fitted_suite(d: int, n_ref: int, full_width: bool = False) -> tuple[DriftSuite, float]:
    """The baseline suite in the product's default representation (``scoring_projection``: the
    seeded 128-d projection of the same sample for d > 128, as ``ModelFits.fit`` does, so it
    scores the store's projected column); ``full_width``: fitted on the full embeddings."""
    import pandas as pd

    from monitoring.ingest.store.projection import scoring_projection

    rng = np.random.default_rng(12345)
    X = Recipe(d).sample(rng, n_ref, hour=0)
    meta = pd.DataFrame({"brightness": rng.normal(120.0, 20.0, n_ref), "contrast": rng.normal(50.0, 8.0, n_ref)})
    t = time.perf_counter()
    projection = scoring_projection(d, full_width=full_width)
    if projection is not None:
        suite = DriftSuite().fit(projection.apply(X), meta)
        suite.projection_ = projection
    else:
        suite = DriftSuite().fit(X, meta)
    return suite, time.perf_counter() - t


def representation(suite: DriftSuite) -> str:
    from monitoring.ingest.store.projection import projection_spec

    return projection_spec(getattr(suite, "projection_", None)) or "full"


STATE_TAG = "bench"  # the bench's suite is not a stored baseline: one tag per (dim, n_ref), see score_job


def score_job(store: Path, d: int, n_ref: int, cluster: str | None, phase: str = "raw") -> dict[str, Any]:
    """Runs in a fresh process: fit the baseline, score, report time, RSS and every p-value.

    Every phase but ``full`` scores the default representation (the stored 128-d projection):
    ``raw`` (24 hourly windows from the raw partitions; writes each hour's state, as scoring does
    when none is stored), ``states`` (the day from the stored states), ``hour`` (the last hour
    alone from its state), ``dask`` (raw partitions, map on ``cluster``, no states); ``full``
    (raw partitions, a suite fitted on the full 2048-d sample reads the full embedding column, as
    ``--full-width``; no states).
    """
    from monitoring.analysis.fleet.states import StateCache
    from monitoring.ingest.store.backend import open_backend

    t0 = time.perf_counter()
    suite, fit_s = fitted_suite(d, n_ref, full_width=phase == "full")
    rss_after_fit = rss_mb()
    client = None
    if cluster == "local2":
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0"))
    elif cluster:
        from distributed import Client

        client = Client(cluster)
    rep = representation(suite)
    cache = None if phase in ("dask", "full") else StateCache(open_backend(store), MODEL, "image", f"{STATE_TAG}-d{d}-r{n_ref}-{rep}",
                                                                None if rep == "full" else rep)
    hours = list(range(24)) if phase != "hour" else [23]
    windows = [w for h, w in enumerate(hourly_windows(DAY_MS, 24)) if h in hours]
    t, cpu = time.perf_counter(), cpu_s()
    res = score_windows(suite, store, MODEL, windows, cluster=client, states=cache)
    score_s, score_cpu_s = time.perf_counter() - t, cpu_s() - cpu
    if client is not None:
        client.close()
    verdicts = {name: [bool(w.results[name].is_drift) if w.results else None for w in res] for name in (res[0].results or {})}
    truth = [h >= DRIFT_FROM_HOUR for h in hours]
    # the metadata fields are never shifted: its right answer is "no drift" in every hour
    truths = {name: ([False] * len(hours) if name == "metadata" else truth) for name in verdicts}
    from monitoring.analysis.alerts.levels import page_level

    return {
        "phase": phase,
        "representation": rep,
        "hours": hours,
        "fit_s": fit_s,
        "score_s": score_s,
        "score_cpu_s": score_cpu_s,
        "process_s": time.perf_counter() - t0,
        "peak_rss_mb": rss_mb(),
        "rss_after_fit_mb": rss_after_fit,
        "rows": [w.n for w in res],
        "verdicts": verdicts,
        "p_values": {name: [float(w.results[name].p_value) for w in res] for name in verdicts},
        "statistics": {name: [float(w.results[name].statistic) for w in res] for name in verdicts},
        "any_drift": [w.any_drift for w in res],
        "page": [page_level({k: {"p_value": r.p_value} for k, r in w.results.items()}) for w in res],
        "truth": truth,
        "states": None if cache is None else {"hits": cache.hits, "misses": cache.misses, "writes": cache.writes},
        "correct_windows": {name: int(sum(v == t for v, t in zip(vs, truths[name]))) for name, vs in verdicts.items()},
    }


def run_score(store: Path, d: int, n_ref: int, cluster: str | None, phase: str = "raw") -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__)), "--score-one", str(store), "--dim", str(d), "--n-ref", str(n_ref), "--phase", phase]
    if cluster:
        cmd += ["--cluster", cluster]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"score job failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s_with_interpreter"] = wall
    return out


def same_numbers(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Whether two phases gave the same verdicts, and the largest p-value / relative statistic gap."""
    idx = [a["hours"].index(h) for h in b["hours"]]
    same = all([a["verdicts"][m][i] for i in idx] == b["verdicts"][m] for m in b["verdicts"])
    dp = max(abs(a["p_values"][m][i] - b["p_values"][m][j]) for m in b["p_values"] for j, i in enumerate(idx))
    ds = max(abs(a["statistics"][m][i] - b["statistics"][m][j]) / max(abs(a["statistics"][m][i]), 1e-300)
             for m in b["statistics"] for j, i in enumerate(idx))
    return {"same_verdicts": bool(same), "max_p_value_gap": float(dp), "max_statistic_rel_gap": float(ds)}


def same_verdicts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Verdicts only (another space: p-values and statistics are not comparable), and the hours
    where they differ per method."""
    per = {m: a["verdicts"][m] == b["verdicts"][m] for m in b["verdicts"]}
    differ = {m: [h for h, x, y in zip(a["hours"], a["verdicts"][m], b["verdicts"][m]) if x != y] for m in b["verdicts"]}
    return {"same_verdicts": all(per.values()), "per_method": per, "same_any_drift": a["any_drift"] == b["any_drift"],
            "same_page": a["page"] == b["page"], "differing_hours": {m: h for m, h in differ.items() if h}}


def false_alarms(d: int, n_window: int, n_ref: int, n_baselines: int, per_baseline: int, seed: int = 2026,
                 full_width: bool = False) -> dict[str, Any]:
    """Clean windows at fleet scale: ``n_window``-row windows (a day's hour) vs an ``n_ref``-row
    baseline, ``n_baselines`` baselines x ``per_baseline`` windows, scored through the mergeable
    states (the engine every path uses) in the product's default representation: ``d``-wide
    embeddings (2048) projected to the seeded 128 dimensions slice by slice, as the store's writer
    does, against a suite fitted on the projected baseline (``full_width``: the full vectors).
    Rates per method, any method, and what pages (alerts.yml)."""
    import pandas as pd

    from monitoring.analysis.alerts.levels import ALERT_LEVELS, page_level
    from monitoring.analysis.drift.mergeable import merge_states, score_state, window_state
    from monitoring.ingest.store.projection import projection_spec, scoring_projection

    projection = scoring_projection(d, full_width=full_width)
    project = (lambda X: X) if projection is None else projection.apply

    rows = []
    t = time.perf_counter()
    for b in range(n_baselines):
        recipe = Recipe(d, seed=seed + b)  # a different mixture per baseline: the rates are not one draw's
        rng = np.random.default_rng(seed * 1000 + b)
        X = recipe.sample(rng, n_ref, hour=0)
        meta = pd.DataFrame({"brightness": rng.normal(120.0, 20.0, n_ref), "contrast": rng.normal(50.0, 8.0, n_ref)})
        suite = DriftSuite().fit(project(X), meta)
        del X
        for w in range(per_baseline):
            state: dict[str, Any] = {}
            for start in range(0, n_window, 8192):  # slices, as the fleet map does
                m = min(8192, n_window - start)
                Xs = project(recipe.sample(rng, m, hour=0))
                ms = pd.DataFrame({"brightness": rng.normal(120.0, 20.0, m), "contrast": rng.normal(50.0, 8.0, m)})
                state = merge_states([state, window_state(suite, Xs, ms, part_id=w, row_offset=start)])
            res = score_state(suite, state)
            row = {k: float(r.p_value) for k, r in res.items()}
            row["baseline"] = b
            row["page"] = page_level({k: {"p_value": r.p_value} for k, r in res.items()})
            # the same rule at the per-method levels (0.01 / 0.001), for comparison
            row["page_at_0.01"] = page_level({k: {"p_value": r.p_value} for k, r in res.items()}, ALERT_LEVELS)
            rows.append(row)
        print(f"false alarms: baseline {b + 1}/{n_baselines} done ({time.perf_counter() - t:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    methods = [c for c in df.columns if c not in ("baseline", "page", "page_at_0.01")]
    alpha = 0.01
    fired = df[methods] <= alpha
    return {
        "dim": d, "representation": projection_spec(projection) or "full", "n_window": n_window, "n_ref": n_ref, "baselines": n_baselines, "windows": int(len(df)), "alpha": alpha,
        "seconds": round(time.perf_counter() - t, 1),
        "per_method": {m: float(fired[m].mean()) for m in methods},
        "per_method_count": {m: int(fired[m].sum()) for m in methods},
        "any_method": float(fired.any(axis=1).mean()),
        "any_method_count": int(fired.any(axis=1).sum()),
        "page_warning_or_critical": float((df["page"] != "ok").mean()),
        "page_count": int((df["page"] != "ok").sum()),
        "page_critical_count": int((df["page"] == "critical").sum()),
        "page_at_0.01_count": int((df["page_at_0.01"] != "ok").sum()),
        "page_at_0.01": float((df["page_at_0.01"] != "ok").mean()),
        "any_method_per_baseline": {int(b): int(g.any(axis=1).sum()) for b, g in fired.groupby(df["baseline"])},
    }


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def ingest_cost(d: int, rows: int, n_ref: int, tmp: Path) -> dict[str, Any]:
    """A proxy for the sidecar's CPU per record with states on vs off: writing an hour partition of
    ``rows`` records (what the sidecar's store write does, without segment decoding; the writer
    also stores the 128-d projection) vs making that partition's states from the rows in memory
    (what the compaction hook does) with the suite the sidecar fits (the default representation:
    the projection); for comparison, by reading the hour back (the pass after a partial
    compaction), and from the rows with a full-width suite (what the hook did before)."""
    from monitoring.analysis.fleet.score import PartitionTask, map_partition, map_table, partition_id
    from monitoring.analysis.fleet.synthetic import records_table
    from monitoring.ingest.store.backend import open_backend
    from monitoring.ingest.store.projection import add_projections
    from monitoring.ingest.store.schema import FILE_SCHEMA
    from monitoring.ingest.store.writer import StoreWriter

    suite, _ = fitted_suite(d, n_ref)  # the default: the projection (what the sidecar fits now)
    fsuite, _ = fitted_suite(d, n_ref, full_width=True)
    store = tmp / "ingest-cost"
    shutil.rmtree(store, ignore_errors=True)
    rng = np.random.default_rng(11)
    X = Recipe(d).sample(rng, rows, 0)
    table = records_table(MODEL, X, DAY_MS + np.sort(rng.integers(0, 3_600_000, rows)), rng, "ing")
    del X
    from threadpoolctl import threadpool_limits

    out: dict[str, Any] = {"rows": rows, "dim": d}
    with threadpool_limits(limits=1):  # the sidecar's hook runs with one BLAS thread, as scoring does
        c = cpu_s()
        StoreWriter(open_backend(tmp / "ingest-cost-noproj"), projection=None).write_parts(table, "ing")
        out["write_noproj_cpu_s"] = cpu_s() - c
        shutil.rmtree(tmp / "ingest-cost-noproj", ignore_errors=True)
        backend = open_backend(store)
        c = cpu_s()
        parts = StoreWriter(backend).write_parts(table, "ing")
        write_cpu = cpu_s() - c
        keys = tuple(sorted(e.key for e in backend.list(f"model={MODEL}/") if e.key.endswith(".parquet")))
        part = keys[0].rsplit("/", 1)[0]
        task = PartitionTask(partition_id(part), 0, part, keys, 0, 2**62)
        rows_table, _ = add_projections(table.select(FILE_SCHEMA.names))  # what compaction holds in memory
        c = cpu_s()
        map_partition(task, suite, backend, MODEL)
        out["states_reread_cpu_s"] = cpu_s() - c
        c = cpu_s()
        map_table(task, suite, rows_table)
        states_cpu = cpu_s() - c
        c = cpu_s()
        map_table(task, fsuite, rows_table)
        out["states_rows_full_width_cpu_s"] = cpu_s() - c
    shutil.rmtree(store, ignore_errors=True)
    out.update(files=len(parts), write_cpu_s=write_cpu, states_cpu_s=states_cpu,
               write_us_per_record=1e6 * write_cpu / rows, states_us_per_record=1e6 * states_cpu / rows,
               states_reread_us_per_record=1e6 * out["states_reread_cpu_s"] / rows,
               states_rows_full_width_us_per_record=1e6 * out["states_rows_full_width_cpu_s"] / rows,
               write_noproj_us_per_record=1e6 * out["write_noproj_cpu_s"] / rows,
               representation=representation(suite),
               ratio_on_off=(write_cpu + states_cpu) / write_cpu, ratio_goal=1.2,
               ratio_met=(write_cpu + states_cpu) / write_cpu <= 1.2,
               ratio_on_off_reread=(write_cpu + out["states_reread_cpu_s"]) / write_cpu,
               ratio_on_off_full_width=(write_cpu + out["states_rows_full_width_cpu_s"]) / write_cpu)
    return out


def float16_check(recipe: Recipe, n: int, suite: DriftSuite, tmp: Path) -> dict[str, Any]:
    """float32 vs float16 embeddings: bytes, read+decode time, and verdicts, on one hour of n/24 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitoring.analysis.drift.mergeable import merge_states, score_state, window_state
    from monitoring.analysis.fleet.score import embedding_matrix

    rows = max(n // 24, 1000)
    out: dict[str, Any] = {"rows_per_window": rows, "windows": {}}
    rng = np.random.default_rng(7)
    for label, hour in (("clean", 0), ("mild", DRIFT_FROM_HOUR)):
        X = recipe.sample(rng, rows, hour)
        per: dict[str, Any] = {}
        for dtype, pa_type in (("float32", pa.float32()), ("float16", pa.float16())):
            flat = X.reshape(-1).astype(dtype)
            arr = pa.ListArray.from_arrays(pa.array(np.arange(0, (rows + 1) * recipe.d, recipe.d, dtype=np.int32)),
                                           pa.array(flat, type=pa_type))
            path = tmp / f"f16check-{label}-{dtype}.parquet"
            pq.write_table(pa.table({"embedding": arr}), path, compression="zstd")
            reads = []
            for _ in range(3):
                t = time.perf_counter()
                Xr = embedding_matrix(pq.read_table(path)["embedding"]).astype(np.float32, copy=False)
                reads.append(time.perf_counter() - t)
            res = score_state(suite, merge_states([window_state(suite, Xr)]))
            per[dtype] = {
                "bytes": path.stat().st_size,
                "read_decode_s_median": float(np.median(reads)),
                "verdicts": {k: bool(r.is_drift) for k, r in res.items()},
                "p_values": {k: float(r.p_value) for k, r in res.items()},
                "statistics": {k: float(r.statistic) for k, r in res.items()},
            }
            path.unlink()
        out["windows"][label] = per
    same = all(out["windows"][w]["float32"]["verdicts"] == out["windows"][w]["float16"]["verdicts"] for w in out["windows"])
    out["same_verdicts"] = same
    return out


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = [p["n"] for p in points]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.loglog(n, [p["score"]["score_s"] for p in points], "o-", label="score 24 windows")
    a.loglog(n, [p["score"]["process_s"] for p in points], "s--", label="+ fit + imports")
    a.axhline(30, color="r", lw=0.8, ls=":", label="goal 30 s")
    a.set_xlabel("records (2048-d)")
    a.set_ylabel("seconds")
    a.legend(fontsize=8)
    b.semilogx(n, [p["score"]["peak_rss_mb"] for p in points], "o-", label="peak RSS")
    b.axhline(2048, color="r", lw=0.8, ls=":", label="goal 2 GB")
    b.set_xlabel("records (2048-d)")
    b.set_ylabel("MB")
    b.legend(fontsize=8)
    fig.suptitle("P7: 24 hourly windows, every default method (bench/fleet_bench.py)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "pyarrow", "scikit-learn", "scipy", "pandas", "dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    lines = [
        f"# P7 fleet-scale drift scoring {doc['date']}",
        "",
        f"`{doc.get('command', 'python bench/fleet_bench.py')}` ({doc['seconds']:.0f} s). {doc['machine']}. Load average at start "
        f"{doc['loadavg_start']}, at end {doc['loadavg_end']} (a shared machine: other engineers' jobs ran at "
        f"the same time, so seconds are noisy; RSS is not). Packages: "
        + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()) + ".",
        "",
        f"{cfg['dim']}-d embeddings, 24 hour partitions x 2 files, baseline {cfg['n_ref']} rows; hours "
        f"{DRIFT_FROM_HOUR}-23 drifted (mild: two cluster weights 0.10->0.13/0.07 + 0.1 sd shift), 0-{DRIFT_FROM_HOUR - 1} "
        "clean. Score = list + read (only the needed columns) + per-partition mergeable states + merge + score, "
        "suite fitted beforehand, in a fresh process; map engine: "
        + (f"Dask ({cfg['cluster']})" if cfg["cluster"] else "in process") + ".",
        "",
        "Every path but the full-width comparison scores the **default representation** (issue #28): a space wider "
        "than 128-d is scored on the seeded 128-d random projection the store's writer keeps beside each embedding "
        "(`embedding__p128`, `monitoring.ingest.store.projection.scoring_projection`); `monitoring score` / "
        "`python -m monitoring.analysis.fleet` / the watch loop / the sidecar's states at ingest all use it; `--full-width` "
        "scores the 2048-d vectors.",
        "",
        "Raw: the day from the raw partitions with no state stored yet, default representation (the run also "
        "writes each hour's state).",
        "",
        "| records | store GB | raw: score 24 windows s | its CPU s | fit s | process total s | peak RSS MB | right verdicts (of 24) per method | any-drift right |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in doc["points"]:
        s = p["score"]
        right = ", ".join(f"{k} {v}" for k, v in s["correct_windows"].items())
        any_right = sum(a == t for a, t in zip(s["any_drift"], s["truth"]))
        lines.append(f"| {p['n']:,} | {p['store_bytes'] / 1e9:.2f} | {s['score_s']:.1f} | {s['score_cpu_s']:.1f} | {s['fit_s']:.1f} | "
                     f"{s['process_s']:.1f} | {s['peak_rss_mb']:.0f} | {right} | {any_right} |")
    if any("full" in p for p in doc["points"]):
        lines += ["", "### The same raw day at full width (`--full-width`), and whether its verdicts agree", "",
                  "Same store; the suite is fitted on the full 2048-d baseline sample and reads the full embedding "
                  "column; no states are read or written. The two representations are different tests of the same "
                  "hypothesis: p-values are not comparable, verdicts are.", "",
                  "| records | full width: score 24 windows s | its CPU s | peak RSS MB | right verdicts (of 24) per method | same verdicts as the default (per method, any-drift, page) | hours that differ |",
                  "|---|---|---|---|---|---|---|"]
        for p in doc["points"]:
            if "full" not in p:
                continue
            q, sv = p["full"], p["full_vs_raw"]
            right = ", ".join(f"{k} {v}" for k, v in q["correct_windows"].items())
            differ = "; ".join(f"{m}: {h}" for m, h in sv.get("differing_hours", {}).items()) or "none"
            lines.append(f"| {p['n']:,} | {q['score_s']:.1f} | {q['score_cpu_s']:.1f} | {q['peak_rss_mb']:.0f} | "
                         f"{right} | {'yes' if sv['same_verdicts'] else 'NO'}, {'yes' if sv['same_any_drift'] else 'NO'}, "
                         f"{'yes' if sv['same_page'] else 'NO'} | {differ} |")
    lines += ["", "### The same day from the states (made by the raw run, as at ingest), and one new hour", "",
              "| records | states on disk MB | day from states s | its peak RSS MB | one hour from its state s | same verdicts (states, hour, Dask) as raw | largest p-value gap |",
              "|---|---|---|---|---|---|---|"]
    for p in doc["points"]:
        same = p.get("same", {})
        flags = ", ".join(f"{k.split('_vs')[0]} {'yes' if v['same_verdicts'] else 'NO'}" for k, v in same.items())
        gap = max((v["max_p_value_gap"] for v in same.values()), default=float("nan"))
        lines.append(f"| {p['n']:,} | {p.get('states_bytes', 0) / 1e6:.1f} | {p['states']['score_s']:.2f} | "
                     f"{p['states']['peak_rss_mb']:.0f} | {p['hour']['score_s']:.2f} | {flags} | {gap:.2g} |")
    lines += ["", "Hours that page (deploy/prometheus/alerts.yml rule, `monitoring.analysis.alerts.levels.page_level`), per size: "
              + "; ".join(f"{p['n']:,}: {sum(x != 'ok' for x, t in zip(p['score']['page'], p['score']['truth']) if not t)}/"
                          f"{sum(1 for t in p['score']['truth'] if not t)} clean, drifted hours paged "
                          f"{sum(x != 'ok' for x, t in zip(p['score']['page'], p['score']['truth']) if t)}/"
                          f"{sum(1 for t in p['score']['truth'] if t)}" for p in doc["points"]) + ".", ""]
    fa = doc.get("false_alarms")
    if fa:
        lines += ["## False alarms at fleet scale", "",
                  f"{fa['windows']} clean windows of {fa['n_window']:,} rows ({fa['dim']}-d inputs, the same mixture recipe, scored on "
                  f"{'the full vectors' if fa.get('representation', 'full') == 'full' else 'their seeded 128-d projection (' + fa['representation'] + ', the default)'}) against "
                  f"{fa['baselines']} baselines of {fa['n_ref']:,} rows ({fa['windows'] // fa['baselines']} windows each, a new "
                  f"mixture per baseline), scored through the mergeable states; alpha {fa['alpha']} per method "
                  f"({fa['seconds']:.0f} s).", "",
                  "| what | clean windows that fire | rate |", "|---|---|---|"]
        for m, r in fa["per_method"].items():
            lines.append(f"| {m} (p <= {fa['alpha']}) | {fa['per_method_count'][m]} | {100 * r:.1f} % |")
        lines.append(f"| any method | {fa['any_method_count']} | {100 * fa['any_method']:.1f} % |")
        lines.append(f"| same rule at the per-method level (>= 2 embedding methods at p <= 0.01, or metadata at p <= 0.01) | "
                     f"{fa['page_at_0.01_count']} | {100 * fa['page_at_0.01']:.1f} % |")
        lines.append(f"| **page** (alerts.yml, `page_level`: >= 2 embedding methods at p <= 0.005, or metadata at p <= 0.005) | "
                     f"**{fa['page_count']}** (critical {fa['page_critical_count']}) | **{100 * fa['page_warning_or_critical']:.1f} %** |")
        lines += ["", f"Any-method alarms per baseline: {fa['any_method_per_baseline']}.", ""]
    lines += ["", "![time and memory vs records](" + doc["plot"] + ")", ""]
    goal = doc.get("goal")
    if goal:
        lines += ["## Goal", "", f"1M records, raw day on the default path ({goal.get('representation', 'full')}): score {goal['score_s']:.1f} s (goal <= 30 s): "
                  f"**{'met' if goal['time_met'] else 'NOT met'}**; peak RSS {goal['peak_rss_mb']:.0f} MB (goal <= 2048 MB): "
                  f"**{'met' if goal['rss_met'] else 'NOT met'}**.", ""]
        lines += [f"Day from the states: {goal['states_day_s']:.2f} s (goal <= 3 s): **{'met' if goal['states_day_met'] else 'NOT met'}**; "
                  f"one new hour: {goal['hour_s']:.2f} s (goal <= 2 s): **{'met' if goal['hour_met'] else 'NOT met'}**.", ""]
        if "full_score_s" in goal:
            lines += [f"1M records at full width (`--full-width`, for comparison): score {goal['full_score_s']:.1f} s, "
                      f"peak RSS {goal['full_peak_rss_mb']:.0f} MB; same verdicts as the default: "
                      f"**{'yes' if goal['full_same_verdicts'] else 'NO'}**.", ""]
    else:
        pending = doc.get("pending_sizes") or []
        why = (f"sizes {pending} were still to run when these results were written" if pending
               else "the 1M point was not run in this invocation")
        lines += ["## Goal", "", f"Not measured: {why}.", ""]
    f16 = doc.get("float16")
    if f16:
        lines += ["## Embedding storage: float32 vs float16", "",
                  f"One hour window of {f16['rows_per_window']:,} rows, Parquet zstd, same rows in both.", "",
                  "| window | dtype | bytes | read+decode s | verdicts (D = drift) |", "|---|---|---|---|---|"]
        for w, per in f16["windows"].items():
            for dtype, v in per.items():
                ver = " ".join(f"{k}:{'D' if d else '.'}" for k, d in v["verdicts"].items())
                lines.append(f"| {w} | {dtype} | {v['bytes'] / 1e6:.1f} MB | {v['read_decode_s_median']:.2f} | {ver} |")
        lines += ["", f"Same verdicts in float16: {'yes' if f16['same_verdicts'] else 'NO'}.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--n-ref", type=int, default=10000)
    ap.add_argument("--cluster", default=None, help="'local2' or a Dask scheduler address")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "fleet")
    ap.add_argument("--keep", action="store_true", help="keep the generated stores (1M is ~8 GB)")
    ap.add_argument("--no-float16", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--tag", default="", help="results file suffix, e.g. '-c' for a day's third run (default none)")
    ap.add_argument("--score-one", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", default="raw", help=argparse.SUPPRESS)
    ap.add_argument("--dask-check-max", type=int, default=100_000,
                    help="sizes up to this also run the map on a local 2-worker Dask cluster and compare (default 100000)")
    ap.add_argument("--fa-baselines", type=int, default=5, help="false-alarm table: baselines (default 5)")
    ap.add_argument("--fa-windows", type=int, default=40, help="false-alarm table: clean windows per baseline (default 40)")
    ap.add_argument("--fa-dim", type=int, default=2048,
                    help="false-alarm table: input embedding width, scored in the default representation (default 2048: "
                         "its 128-d projection)")
    ap.add_argument("--fa-window-rows", type=int, default=41_666, help="false-alarm table: rows per window (1M / 24)")
    ap.add_argument("--ingest-cost-only", type=int, default=None, metavar="ROWS",
                    help="only measure the ingest-cost proxy (write an hour of ROWS records vs make its states)")
    args = ap.parse_args(argv)
    if args.score_one is not None:
        print(json.dumps(score_job(args.score_one, args.dim, args.n_ref, args.cluster, args.phase)))
        return 0

    started = time.time()
    date = dt.date.today().isoformat()
    if args.ingest_cost_only:
        args.work.mkdir(parents=True, exist_ok=True)
        res = dict(ingest_cost(args.dim, args.ingest_cost_only, args.n_ref, args.work), date=date,
                   loadavg=[round(x, 2) for x in os.getloadavg()], versions=versions())
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"fleet-ingest-cost-{date}{args.tag}.json").write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res))
        return 0
    doc: dict[str, Any] = {
        "date": date,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "config": {"dim": args.dim, "n_ref": args.n_ref, "cluster": args.cluster},
        "tag": args.tag,
        "command": " ".join(["python bench/fleet_bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "points": [],
    }
    recipe = Recipe(args.dim)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("" if not args.cluster else "-dask")
    if not args.no_float16:
        n16 = min([n for n in sizes if n >= 100_000] or [max(sizes)])
        suite, _ = fitted_suite(args.dim, args.n_ref, full_width=True)  # a check of the full embedding's storage
        args.work.mkdir(parents=True, exist_ok=True)
        doc["float16"] = float16_check(recipe, n16, suite, args.work)
        del suite
    if args.fa_baselines > 0 and args.fa_windows > 0:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # as the engine runs in process (monitoring/analysis/fleet/score.py)
            doc["false_alarms"] = false_alarms(args.fa_dim, args.fa_window_rows, args.n_ref, args.fa_baselines, args.fa_windows)
        print(json.dumps(doc["false_alarms"]), flush=True)
    for n in sizes:
        store = args.work / f"n{n}-d{args.dim}"
        shutil.rmtree(store, ignore_errors=True)
        t = time.perf_counter()
        nbytes = write_day(store, MODEL, DAY_MS, n, recipe.sample, hours=24, files_per_hour=2, seed=n)
        gen_s = time.perf_counter() - t
        print(f"n={n}: wrote {nbytes / 1e9:.2f} GB in {gen_s:.1f} s; scoring ...", flush=True)
        score = run_score(store, args.dim, args.n_ref, args.cluster, "raw")
        print(f"n={n}: raw day {score['score_s']:.1f} s, peak RSS {score['peak_rss_mb']:.0f} MB, "
              f"right {score['correct_windows']}", flush=True)
        point: dict[str, Any] = {"n": n, "store_bytes": nbytes, "generate_s": gen_s, "score": score}
        point["full"] = run_score(store, args.dim, args.n_ref, None, "full")
        point["full_vs_raw"] = same_verdicts(score, point["full"])
        print(f"n={n}: full-width raw day {point['full']['score_s']:.1f} s, peak RSS {point['full']['peak_rss_mb']:.0f} MB, "
              f"right {point['full']['correct_windows']}, same verdicts as the default {point['full_vs_raw']}", flush=True)
        point["states"] = run_score(store, args.dim, args.n_ref, None, "states")
        point["hour"] = run_score(store, args.dim, args.n_ref, None, "hour")
        point["states_bytes"] = sum(q.stat().st_size for q in (store / "_monitoring").rglob("*.npz"))
        point["same"] = {"states_vs_raw": same_numbers(score, point["states"]), "hour_vs_raw": same_numbers(score, point["hour"])}
        if n <= args.dask_check_max:
            point["dask"] = run_score(store, args.dim, args.n_ref, "local2", "dask")
            point["same"]["dask_vs_raw"] = same_numbers(score, point["dask"])
        print(f"n={n}: day from states {point['states']['score_s']:.2f} s, one hour {point['hour']['score_s']:.2f} s, "
              f"same {point['same']}", flush=True)
        doc["points"].append(point)
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
        # results after every size: a run stopped during a big size keeps the smaller ones
        write_results(doc, args.out, suffix, date, started, pending=[m for m in sizes if m > n])
    return 0


def write_results(doc: dict[str, Any], out: Path, suffix: str, date: str, started: float, pending: list[int]) -> None:
    big = [p for p in doc["points"] if p["n"] >= 1_000_000]
    if big:
        s = big[-1]["score"]
        doc["goal"] = {"representation": s.get("representation", "full"), "score_s": s["score_s"], "peak_rss_mb": s["peak_rss_mb"],
                       "time_met": s["score_s"] <= 30.0, "rss_met": s["peak_rss_mb"] <= 2048.0,
                       "states_day_s": big[-1]["states"]["score_s"], "states_day_met": big[-1]["states"]["score_s"] <= 3.0,
                       "hour_s": big[-1]["hour"]["score_s"], "hour_met": big[-1]["hour"]["score_s"] <= 2.0}
        if "full" in big[-1]:
            q = big[-1]["full"]
            doc["goal"].update(full_score_s=q["score_s"], full_peak_rss_mb=q["peak_rss_mb"],
                               full_same_verdicts=big[-1]["full_vs_raw"]["same_verdicts"])
    doc["pending_sizes"] = pending
    png = out / f"fleet{suffix}-{date}{doc.get('tag', '')}.png"
    plot(doc["points"], png)
    doc["plot"] = png.name
    doc["seconds"] = round(time.time() - started, 1)
    doc["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / f"fleet{suffix}-{date}{doc.get('tag', '')}.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    (out / f"fleet{suffix}-{date}{doc.get('tag', '')}.md").write_text(md)
    print(md, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
