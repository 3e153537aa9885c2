"""The benchmark suite in one command: `python bench/run.py` (`make bench`).

Measures side by side in one run and writes `bench/results/<YYYY-MM-DD>.json` and `.md`:

  P1  served classifier throughput at saturation / best in-process throughput over a batch
      sweep 1-32 (goal >= 0.85)
  P2  capture on vs off at concurrency 1 and 8: p50 and p99 latency on/off and throughput
      off/on (bench/capture_bench.py; goal <= 1.03 on all six)
  P3  drift detectors vs Evidently / alibi-detect (bench/drift_bench.py, subprocess; its
      drift-<date>.json is merged)
  P4  SD: 4 compatible concurrent requests batched / one at a time, with and without the
      batching delay on the one-at-a-time side (goal >= 1.5)
  P5  MME cold start / (extract + load) lower bound, per model (deploy.mme.coldstart)
  P7  fleet-scale drift scoring, 10k -> 1M records (bench/fleet_bench.py, subprocess; goal
      1M in <= 30 s and <= 2 GB RSS)

    python bench/run.py                      # everything (about 5-10 minutes on 2 cores)
    python bench/run.py --only p1,p4         # a subset
    python bench/run.py --p1-seconds 10 --p4-rounds 3 --skip p3

Ratios, not absolute numbers, are the point: both sides of each ratio are measured in the same
run on the same machine. Tests never assert timings; this script only prints and records them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving.common import procfs  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ALL = ("p1", "p2", "p3", "p4", "p5", "p7")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    import numpy
    import torch

    info: dict[str, Any] = {"cpus": os.cpu_count(), "machine": platform.machine(), "platform": platform.platform(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "numpy": numpy.__version__, "cuda": torch.cuda.is_available()}
    import importlib.metadata as md

    info["packages"] = {}
    for pkg in ("torch", "numpy", "transformers", "diffusers", "tritonclient", "nvidia-pytriton", "pyarrow",
                "scikit-learn", "scipy", "pandas", "dask", "distributed"):
        try:
            info["packages"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info["packages"][pkg] = "not installed"
    if cpu := procfs.cpu_model():
        info["cpu_model"] = cpu
    if mem := procfs.mem_total_bytes():
        info["mem_gib"] = round(mem / 2**30, 1)
    return info


def run_script(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    log(f"running {' '.join(cmd)} (timeout {timeout_s:.0f} s) ...")
    return subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)


from bench.capture_bench import P2_GOAL  # noqa: E402  (one place for the goal)


def run_p2(date: str, arch: str, rounds: int, requests: int, timeout_s: float = 1800) -> dict[str, Any]:
    """Capture on vs off (bench/capture_bench.py) at concurrency 1 and 8: p50 and p99 on/off and
    throughput off/on (all "cost" ratios, 1 = free), goal <= 1.03 on every one; value = the worst."""
    out_dir = ROOT / "build" / "bench" / "p2"
    proc = run_script(["bench/capture_bench.py", "--arch", arch, "--rounds", str(rounds), "--requests", str(requests),
                       "--out", str(out_dir)], timeout_s)
    base = {"id": "P2", "name": f"capture cost, worst of p50/p99 on÷off and throughput off÷on at concurrency 1 and 8 ({arch})",
            "goal": f"<= {P2_GOAL} (each)"}
    if proc.returncode != 0:
        return dict(base, value=None, status="failed", why=proc.stderr[-1500:])
    doc = json.loads((out_dir / f"capture-{arch}-{date}.json").read_text())
    ratios = {}
    for level, r in doc["results"].items():
        ratios[level] = {"p50 on/off": r["p50_ratio_on_off"], "p99 on/off": r["p99_ratio_on_off"],
                         "throughput off/on": 1.0 / r["throughput_ratio_on_off"]}
    value = max(v for per in ratios.values() for v in per.values())
    return dict(base, value=value, **{"pass": value <= P2_GOAL}, status="measured", ratios=ratios, detail=doc)


def run_p5(timeout_s: float = 1800) -> dict[str, Any]:
    """MME cold start (deploy.mme.coldstart): first response / (extract + Triton load), per model."""
    out = ROOT / "build" / "bench" / "p5" / "coldstart.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = run_script(["-m", "deploy.mme.coldstart", "--out", str(out)], timeout_s)
    base = {"id": "P5", "name": "MME cold start / (extract + load) lower bound", "goal": "close to 1"}
    if proc.returncode != 0:
        return dict(base, value=None, status="failed", why=proc.stderr[-1500:])
    doc = json.loads(out.read_text())
    ratios = {m["model"]: m["first_response_s"] / (m["extract_s"] + m["load_s"]) for m in doc["models"]}
    return dict(base, value=max(ratios.values()), **{"pass": None}, status="measured", per_model=ratios, detail=doc)


P3_OUT = ROOT / "build" / "bench" / "p3"


def run_p3(date: str, timeout_s: float, extra_args: list[str], out_dir: Path = P3_OUT) -> dict[str, Any]:
    """Run the drift benchmark into `out_dir` (never over its owner's bench/results/drift-* files)."""
    script = ROOT / "bench" / "drift_bench.py"
    base = {"id": "P3", "name": "drift detectors (bench/drift_bench.py)", "value": None, "goal": "see drift issue",
            "pass": None}
    if not script.exists():
        return dict(base, status="not yet measured", why="bench/drift_bench.py does not exist yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [*extra_args, "--out", str(out_dir)]
    started = time.time()
    log(f"P3: running {script.relative_to(ROOT)} {' '.join(args)} (timeout {timeout_s:.0f} s) ...")
    try:
        proc = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return dict(base, status="failed", why=f"drift_bench.py ran past {timeout_s:.0f} s")
    result_json = out_dir / f"drift-{date}.json"
    out = dict(base, returncode=proc.returncode, seconds=round(time.time() - started, 1),
               stdout_tail=proc.stdout[-2000:], stderr_tail=proc.stderr[-2000:])
    if proc.returncode != 0:
        return dict(out, status="failed", why=f"drift_bench.py exited {proc.returncode}")
    if result_json.exists() and result_json.stat().st_mtime >= started - 1:
        md = result_json.with_suffix(".md")
        out.update(status="measured", results_file=str(result_json.relative_to(ROOT)),
                   drift=json.loads(result_json.read_text()),
                   drift_md=md.read_text() if md.exists() else None)
    else:
        out.update(status="ran", why=f"drift_bench.py wrote no {result_json.relative_to(ROOT)}")
    return out


P7_OUT = ROOT / "build" / "bench" / "p7"


def run_p7(date: str, timeout_s: float, extra_args: list[str], out_dir: Path = P7_OUT) -> dict[str, Any]:
    """bench/fleet_bench.py in a subprocess (it starts its own fresh scoring processes)."""
    base = {"id": "P7", "name": "1M records x 2048-d, 24 hourly windows, every default method: score time / 30 s "
                                "(and peak RSS / 2 GB)", "goal": "<= 1 (both)"}
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    failure = None
    try:
        proc = run_script(["bench/fleet_bench.py", *extra_args, "--out", str(out_dir)], timeout_s)
        if proc.returncode != 0:
            failure = proc.stderr[-1500:]
    except subprocess.TimeoutExpired:
        failure = f"fleet_bench.py ran past --p7-timeout {timeout_s:.0f} s (sizes still pending are listed)"
    result_json = out_dir / f"fleet-{date}.json"
    if not result_json.exists() or result_json.stat().st_mtime < started:
        return dict(base, value=None, status="failed", why=failure or "fleet_bench.py wrote no results")
    # fleet_bench writes its results after every size: a run stopped at the timeout keeps those
    doc = json.loads(result_json.read_text())
    md = result_json.with_suffix(".md").read_text()
    goal = doc.get("goal")
    out = dict(base, seconds=round(time.time() - started, 1), detail=doc, fleet_md=md,
               plot=str(out_dir / doc["plot"]), why=failure)
    if not goal:
        return dict(out, value=None, status="not measured (no 1M point)", **{"pass": None})
    value = max(goal["score_s"] / 30.0, goal["peak_rss_mb"] / 2048.0)
    return dict(out, value=value, status="measured", **{"pass": goal["time_met"] and goal["rss_met"]},
                time_ratio=goal["score_s"] / 30.0, rss_ratio=goal["peak_rss_mb"] / 2048.0)


def fmt_ratio(r: dict[str, Any]) -> str:
    return f"{r['value']:.2f}" if isinstance(r.get("value"), (int, float)) else "—"


def verdict(r: dict[str, Any]) -> str:
    if r.get("pass") is True:
        return "✓ meets goal"
    if r.get("pass") is False:
        return "✗ below goal"
    return r.get("status", "—")


def markdown(doc: dict[str, Any]) -> str:
    res = doc["results"]
    m = doc["machine"]
    lines = [f"# Benchmarks {doc['date']}", "",
             f"One run of `python bench/run.py` ({doc['seconds']:.0f} s). Machine: {m.get('cpu_model', m['machine'])}, "
             f"{m['cpus']} CPU cores, {m.get('mem_gib', '?')} GiB, no GPU{' (CUDA visible)' if m['cuda'] else ''}; "
             f"Python {m['python']}, torch {m['torch']}. Load average at start {doc['loadavg_start']}, "
             f"at end {doc['loadavg_end']}.",
             "Packages: " + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items()) + ".", "",
             ("**Other processes shared this machine during the run** (load average above 1 at the start), "
              "so absolute numbers are noisy; " if doc["loadavg_start"][0] > 1.0 else
              "The machine was otherwise idle at the start; client, server and sidecar share its cores. ")
             + "Each ratio's two sides were measured in the same run, interleaved "
             "(medians over rounds where rounds are used).", "",
             "| ID | measures | result | goal | status |", "|---|---|---|---|---|"]
    for key in ("P1", "P2", "P3", "P4", "P5", "P7"):
        r = res.get(key)
        if r is None:
            continue
        lines.append(f"| {key} | {r['name']} | {fmt_ratio(r)} | {r.get('goal', '')} | {verdict(r)} |")
        if key == "P4" and r.get("value_without_delay") is not None:
            r2 = {"value": r["value_without_delay"], "pass": r["pass_without_delay"]}
            lines.append(f"| P4 (no delay) | same, one-at-a-time side on a copy with no batching delay "
                         f"(the shipped {r.get('queue_delay_ms')} ms delay removed) | {fmt_ratio(r2)} | "
                         f"{r.get('goal', '')} | {verdict(r2)} |")
    p1, p4, p3, p2, p7 = res.get("P1"), res.get("P4"), res.get("P3"), res.get("P2"), res.get("P7")
    if p1 and p1.get("value") is not None:
        lines += ["", "## P1 — classifier served vs in-process", "",
                  f"{p1['model']}; {p1['images']}. {p1['threads']} intra-op threads on both sides "
                  "(OMP_NUM_THREADS for the Triton model process, torch.set_num_threads in-process). "
                  "In-process = `runtime.handle()` on whole batches (decode + preprocess + forward + postprocess) — "
                  "the physical limit. Served = closed loop at the same concurrency through Triton HTTP with dynamic "
                  "batching (max_batch_size 32, 2 ms queue delay); the load-test client runs in the bench process and "
                  f"competes with the server for the cores. {p1['rounds']} interleaved rounds of {p1['window_s']:.0f} s "
                  "windows (in-process, then served) so both sides see the same background load; medians. "
                  "CPU s/image (server + stub + client processes vs the in-process runtime) is a cross-check that "
                  "background load barely affects.", "",
                  "| batch = concurrency | in-process img/s | served img/s | ratio | in-process CPU s/img | "
                  "served CPU s/img | CPU-efficiency ratio | served avg batch | served p50 ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c, v in p1["by_concurrency"].items():
            lines.append(f"| {c} | {v['inprocess_ips']:.2f} | {v['served_ips']:.2f} | {v['ratio']:.2f} | "
                         f"{v['inprocess_cpu_s_per_image']:.3f} | {v['served_cpu_s_per_image']:.3f} | "
                         f"{v['cpu_efficiency_ratio']:.2f} | {v['served_avg_batch']} | {v['served_p50_ms']} |")
        if p1.get("inprocess_sweep"):
            lines += ["", "In-process batch sweep after warm-up (same images; medians over rounds):", "",
                      "| in-process batch | img/s | CPU s/img |", "|---|---|---|"]
            for b, v in p1["inprocess_sweep"].items():
                lines.append(f"| {b} | {v['ips_median']:.2f} | {v['cpu_s_per_image']:.3f} |")
        lines += ["", f"P1 = best served ({p1['served_images_per_s']:.2f} img/s) / best in-process "
                      f"(batch {p1.get('inprocess_best_batch', '?')}: {p1['inprocess_images_per_s']:.2f} img/s) = "
                      f"**{p1['value']:.2f}**. Per-window figures are in the JSON."]
    if p2 and p2.get("ratios"):
        lines += ["", "## P2 — capture on vs off", "",
                  "Cost ratios (1 = capture is free; goal <= 1.03 on each): p50 and p99 latency on ÷ off, "
                  "throughput off ÷ on.", "", "| load | p50 on/off | p99 on/off | throughput off/on |",
                  "|---|---|---|---|"]
        for level, v in p2["ratios"].items():
            cells = " | ".join(f"{v[k]:.3f}{'' if v[k] <= 1.03 else ' ✗'}" for k in ("p50 on/off", "p99 on/off", "throughput off/on"))
            lines.append(f"| {level} | {cells} |")
    if p4 and p4.get("value") is not None:
        sv, ip = p4["served"], p4["inprocess"]
        lines += ["", "## P4 — Stable Diffusion batching", "",
                  f"{p4['model']}, {p4['rounds']} rounds, medians. Served: 4 requests with the same size, steps and "
                  "set of inputs (different seeds and prompts) sent at once vs the same 4 sent one after another "
                  "(what the AWS sample's one-request-per-call model does). Triton's dynamic batcher waits up to "
                  "50 ms to fill a batch, which a lone request also pays; the no-delay row sends them to a copy "
                  "without that delay in the same server, every round measuring all three sides in rotated "
                  "order.", "",
                  "| | 4 together | 4 one at a time | throughput ratio |", "|---|---|---|---|",
                  f"| served (Triton HTTP) | {sv['median_concurrent_s'] * 1000:.0f} ms (avg batch {sv['avg_batch_size']}) "
                  f"| {sv['median_sequential_s'] * 1000:.0f} ms | **{p4['value']:.2f}** |",
                  f"| in-process `handle()` | {sorted(ip['batched_s'])[len(ip['batched_s']) // 2] * 1000:.0f} ms "
                  f"| {sorted(ip['sequential_s'])[len(ip['sequential_s']) // 2] * 1000:.0f} ms | {ip['ratio']:.2f} |"]
        if p4.get("value_without_delay") is not None:
            lines.insert(len(lines) - 1,
                         f"| served, one-at-a-time side without the {p4['queue_delay_ms']} ms batching delay | "
                         f"{sv['median_concurrent_s'] * 1000:.0f} ms (same as above) | "
                         f"{p4['median_sequential_nodelay_s'] * 1000:.0f} ms | **{p4['value_without_delay']:.2f}** |")
        if p4.get("mixed_inputs"):
            mx = p4["mixed_inputs"]
            lines += ["", f"Same 4 requests but only two carry the optional `negative_prompt`: served ratio "
                          f"{mx['ratio']:.2f} (avg batch {mx['avg_batch_size']}). Triton's dynamic batcher only "
                          "batches requests that send the same set of inputs, so clients should send optional "
                          "inputs consistently (e.g. an empty negative prompt is not the same as none)."]
    if p3 and p3.get("status") == "measured":
        lines += ["", "## P3 — drift", "", f"`bench/drift_bench.py`, run by this command ({p3['seconds']} s); its "
                                          "report, headings demoted:", ""]
        lines += [("#" + ln) if ln.startswith("#") else ln for ln in (p3.get("drift_md") or "").splitlines()]
    if p7 and p7.get("fleet_md"):
        lines += ["", "## P7 — fleet-scale drift scoring", "", f"`bench/fleet_bench.py`, run by this command "
                                                             f"({p7['seconds']} s); its report, headings demoted "
                                                             "(plot: the fleet-<date>.png next to this file):", ""]
        lines += [("#" + ln) if ln.startswith("#") else ln for ln in p7["fleet_md"].splitlines()]
    lines += ["", "## Not yet measured", ""]
    for key in ("P2", "P3", "P5", "P7"):
        r = res.get(key)
        if r and r.get("status") != "measured":
            lines.append(f"- {key} ({r['name']}): {r.get('status')} — {r.get('why', '')}")
    errors = doc.get("errors") or {}
    for key, tb in errors.items():
        lines.append(f"- {key.upper()} failed in this run: `{tb.strip().splitlines()[-1]}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(ALL), help="comma-separated subset of p1..p5")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                    help="intra-op threads for the model on both sides (default: min(2, cores))")
    ap.add_argument("--p1-seconds", type=float, default=15.0, help="seconds per P1 window")
    ap.add_argument("--p1-rounds", type=int, default=3)
    ap.add_argument("--p1-concurrency", default="8,16")
    ap.add_argument("--p4-steps", type=int, default=20)
    ap.add_argument("--p4-rounds", type=int, default=7)
    ap.add_argument("--p2-arch", choices=["resnet50", "tiny"], default="resnet50")
    ap.add_argument("--p2-rounds", type=int, default=6)
    ap.add_argument("--p2-requests", type=int, default=30)
    ap.add_argument("--p3-timeout", type=float, default=3600.0)
    ap.add_argument("--p3-args", default="", help="extra arguments for bench/drift_bench.py")
    ap.add_argument("--p1-batches", default=",".join(str(b) for b in (1, 2, 4, 8, 16, 32)),
                    help="in-process batch sizes swept for P1's limit")
    ap.add_argument("--p7-timeout", type=float, default=3600.0)
    ap.add_argument("--p7-args", default="", help="extra arguments for bench/fleet_bench.py (e.g. --sizes=10000,100000)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--date", default=dt.date.today().isoformat())
    ap.add_argument("--name", default=None, help="results file stem (default: the date), e.g. to keep a "
                                                   "partial run (--only) next to another one of the same day")
    args = ap.parse_args(argv)
    parts = [p for p in args.only.lower().split(",") if p and p not in args.skip.lower().split(",")]
    unknown = set(parts) - set(ALL)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; choose from {ALL}")

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.time()
    doc: dict[str, Any] = {"date": args.date, "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "machine": machine(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                           "args": {k: str(v) for k, v in vars(args).items()}, "results": {}, "errors": {},
                           "notes": ["Ratios are same-run; see the load averages for how busy the machine was.",
                                     "No GPU: CPU fp32 on both sides of every ratio."]}
    from bench.served import run_p1, run_p4  # noqa: E402  (heavy imports after argument parsing)

    steps = {
        "p1": lambda: run_p1(seconds=args.p1_seconds, threads=args.threads, rounds=args.p1_rounds,
                             concurrencies=[int(c) for c in args.p1_concurrency.split(",")],
                             inprocess_batches=tuple(int(b) for b in args.p1_batches.split(","))),
        "p2": lambda: run_p2(args.date, args.p2_arch, args.p2_rounds, args.p2_requests),
        "p3": lambda: run_p3(args.date, args.p3_timeout, args.p3_args.split(), out_dir=args.out),
        "p4": lambda: run_p4(steps=args.p4_steps, rounds=args.p4_rounds, threads=args.threads),
        "p5": run_p5,
        "p7": lambda: run_p7(args.date, args.p7_timeout, args.p7_args.split(), out_dir=args.out),
    }
    for part in ALL:
        if part not in parts:
            continue
        log(f"{part.upper()} ...")
        try:
            doc["results"][part.upper()] = steps[part]()
        except Exception:  # one failing part must not lose the others
            doc["errors"][part] = traceback.format_exc()
            log(f"{part.upper()} failed:\n{doc['errors'][part]}")
        r = doc["results"].get(part.upper())
        if r is not None:
            log(f"{part.upper()}: {fmt_ratio(r)} (goal {r.get('goal')}) {verdict(r)}")
    doc["seconds"] = round(time.time() - started, 1)
    doc["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or args.date
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md_path.write_text(markdown(doc))
    log(f"wrote {json_path} and {md_path}")
    print(md_path.read_text())
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # tritonclient/gRPC threads must not hold the interpreter open
