"""P8: overload without collapse. `python bench/overload.py [--duration 15] [--steps 20]`.

tiny sd_img2img, open loop, each request with a 5 s client deadline, at about capacity and at
4x capacity for 15 s, on one tritonserver that serves two copies of the model:

* `sd_img2img_unbounded`: the config as it was before admission control (no queue policy, one
  instance), hit
  by clients as they were (no deadline sent, no retries): the issue's "before" table;
* `sd_img2img`: the shipped config (bounded queue, REJECT), clients that send their deadline
  and retry refusals with jittered backoff within it.

Capacity is measured first (closed loop, concurrency 8). Goals, for the shipped side at 4x:
goodput >= 0.9x its goodput at capacity; work for nobody (server successes - client successes)
<= 5 % of server successes; refusals answered in < 100 ms (p50) and < 1 s (p99); the queue
empty within one request's time (the p50 latency at capacity) after the load stops; and at
capacity, goodput and p50 latency as the unbounded side's (same run, within noise).

Writes bench/results/overload-<date>.json/.md and overload-<date>.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadtest.payloads import PayloadFactory  # noqa: E402
from bench.loadtest.report import plot_overload  # noqa: E402
from bench.loadtest.runner import Recorder, run_concurrency_step, run_rate_step  # noqa: E402
from bench.loadtest.stats import QueueProbe, ServerStats  # noqa: E402
from bench.loadtest.transports import TritonTransport  # noqa: E402
from serving.common.retry import NO_RETRY, RetryPolicy  # noqa: E402

REPO = ROOT / "build" / "bench" / "overload" / "model_repository"
TRACE = ROOT / "build" / "bench" / "overload" / "trace" / "trace.json"
SHIPPED, UNBOUNDED = "sd_img2img", "sd_img2img_unbounded"
_POLICY = re.compile(r"\n\s*# Bounded queue.*?default_queue_policy\s*\{[^}]*\}\n", re.S)
_COUNT = re.compile(r"count:\s*\d+\s*,")


def trace_args(prefix: Path) -> tuple[str, ...]:
    """tritonserver flags for a timestamp trace of every request, flushed every 20 requests."""
    shutil.rmtree(prefix.parent, ignore_errors=True)
    prefix.parent.mkdir(parents=True)
    return ("--trace-config", f"triton,file={prefix}", "--trace-config", "triton,log-frequency=20",
            "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1")


def log(msg: str) -> None:
    print(f"[overload {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_repo() -> Path:
    """The shipped sd_img2img, and a copy without its queue policy, sharing one checkpoint."""
    src = ROOT / "model_repository" / SHIPPED
    shutil.rmtree(REPO, ignore_errors=True)
    for name in (SHIPPED, UNBOUNDED):
        (REPO / name / "1").mkdir(parents=True)
        shutil.copy2(src / "1" / "model.py", REPO / name / "1" / "model.py")
        (REPO / name / "1" / "checkpoint").symlink_to((src / "1" / "checkpoint").resolve())
        text = (src / "config.pbtxt").read_text().replace(f'name: "{SHIPPED}"', f'name: "{name}"')
        if name == UNBOUNDED:
            text, n = _POLICY.subn("\n", text)
            assert n == 1, "the shipped config has no queue policy to remove"
            # Before issue 26: one instance as well (the second one came with the queue policy).
            text, n = _COUNT.subn("count: 1,", text)
            assert n == 1, "the shipped config has no instance count to reset"
        (REPO / name / "config.pbtxt").write_text(text)
    return REPO


def failures_on_metrics(metrics_port: int) -> list[str]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return [line for line in text.splitlines() if line.startswith(("nv_inference_request_failure",
                                                                   "nv_inference_pending_request_count",
                                                                   "pipeline_expired", "pipeline_late"))]


class CpuMeter:
    """CPU seconds used by the load generator (this process), tritonserver and its model stubs
    during one step: on a shared 2-core host the client's CPU is the model's CPU."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def sample(self) -> dict[str, float]:
        from serving.common import procfs

        out = {"load_generator": procfs.cpu_seconds(os.getpid()) or 0.0,
               "tritonserver": procfs.cpu_seconds(self.server_pid) or 0.0, "model_stubs": 0.0}
        for pid in procfs.descendants(self.server_pid):
            if pid != self.server_pid:
                out["model_stubs"] += procfs.cpu_seconds(pid) or 0.0
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, Any]:
        d = {k: round(after[k] - before[k], 2) for k in before}
        return {"cpu_s": d, "wall_s": round(wall_s, 2),
                "cores_used": {k: round(v / max(wall_s, 1e-9), 2) for k, v in d.items()}}


def pin(server_pid: int, server_cpus: set[int], client_cpus: set[int]) -> None:
    """`--pin`: the load generator (this process) on its own cores, tritonserver and its model
    processes on the others, as if the clients ran on another host. Every existing thread is
    moved; threads started later inherit their creator's set."""
    from serving.common import procfs

    for pid in procfs.descendants(server_pid):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), server_cpus)
            except OSError:  # a thread that just ended
                pass
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), client_cpus)


def instances_of(model: str) -> int:
    from serving.runtime.capacity.admission import instance_count

    return instance_count((REPO / model / "config.pbtxt").read_text())


def where_the_time_went(step: dict[str, Any], instances: int) -> dict[str, Any]:
    """The model's instances' share of the step inside execute() and what each process used meanwhile.
    With two instances and the compute baton, execute() time includes waiting for the baton: the
    busy share per instance is then not the model's compute share (the trace table's union is)."""
    srv, cpu = step.get("server") or {}, step["cpu"]
    execs, infer_ms = srv.get("execution_count") or 0, srv.get("compute_infer_ms") or 0.0
    busy_s = execs * infer_ms / 1000
    return {"executions": execs, "mean_batch": srv.get("avg_batch_size"), "compute_ms_per_execution": infer_ms,
            "instances": instances,
            "instance_busy_fraction": round(busy_s / instances / max(cpu["wall_s"], 1e-9), 3),
            "idle_ms_per_execution": (round((cpu["wall_s"] - busy_s) * 1000 / execs, 1)
                                      if execs and instances == 1 else None),
            "cores_used": cpu["cores_used"]}


def read_trace(prefix: Path) -> list[dict[str, Any]]:
    """Triton's trace files (`--trace`, level TIMESTAMPS) as one dict of timestamps per request."""
    merged: dict[int, dict[str, Any]] = {}
    for path in sorted(prefix.parent.glob(prefix.name + "*")):
        try:
            entries = json.loads(path.read_text())
        except ValueError:  # a file cut short by a forced stop
            continue
        for entry in entries:
            rec = merged.setdefault(entry["id"], {})
            if "model_name" in entry:
                rec["model"] = entry["model_name"]
            for ts in entry.get("timestamps", []):
                rec[ts["name"]] = ts["ns"]
    return list(merged.values())


def execution_gaps(requests: list[dict[str, Any]], model: str, start_ns: int, end_ns: int) -> dict[str, Any] | None:
    """The model's executions that started in [start_ns, end_ns], merged over its instances (an
    interval during which some instance was inside execute()), and the idle gaps between them: how
    long, and how much of that idle time had requests waiting in the queue (admitted before the gap
    began, computed after it ended): idle while work waited is time the server lost, not the load."""
    computed = [r for r in requests if r.get("model") == model and "COMPUTE_START" in r and "COMPUTE_END" in r]
    execs = sorted({(r["COMPUTE_START"], r["COMPUTE_END"]) for r in computed if start_ns <= r["COMPUTE_START"] <= end_ns})
    if len(execs) < 2:
        return None
    merged = [list(execs[0])]
    for s, e in execs[1:]:
        if s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    gaps = []
    for (_, end0), (start1, _) in zip(merged, merged[1:]):
        waiting = sum(1 for r in computed if r.get("QUEUE_START", end_ns + 1) <= end0 and r["COMPUTE_START"] >= start1)
        gaps.append((start1 - end0, waiting))
    busy = sum(e - s for s, e in merged)
    span = merged[-1][1] - merged[0][0]
    ms = sorted(g / 1e6 for g, _ in gaps) or [0.0]
    return {"executions": len(execs), "busy_fraction": round(busy / max(span, 1), 3),
            "compute_ms_per_execution": round(sum(e - s for s, e in execs) / len(execs) / 1e6, 1),
            "gap_ms_p50": round(ms[len(ms) // 2], 1), "gap_ms_p90": round(ms[int(len(ms) * 0.9)], 1),
            "idle_s": round(sum(g for g, _ in gaps) / 1e9, 3),
            "idle_s_while_requests_waited": round(sum(g for g, w in gaps if w) / 1e9, 3)}


def run_step(server, model: str, rate: float, duration: float, deadline_s: float, steps: int, shipped: bool,
             seed: int, retry: bool = True) -> dict[str, Any]:
    transport = TritonTransport(model, server.http_url, "http", timeout_s=deadline_s,
                                retry=RetryPolicy() if shipped and retry else NO_RETRY, send_deadline=shipped)
    stats = ServerStats(server.http_url, "http", model)
    probe = QueueProbe(f"127.0.0.1:{server.metrics_port}", model, stats, max_wait_s=300)
    payloads = PayloadFactory(SHIPPED, inference_steps=steps, seed=seed)
    meter = CpuMeter(server.proc.pid)
    cpu0, wall0 = meter.sample(), time.perf_counter()
    window0 = time.monotonic_ns()  # Triton's trace clock (steady_clock)
    try:
        step = run_rate_step(transport, payloads, rate, duration_s=duration, max_workers=512, stats=stats,
                             recorder=Recorder(), settle=probe.settle, seed=seed)
    finally:
        transport.close()
        stats.close()
    step["cpu"] = meter.delta(cpu0, meter.sample(), time.perf_counter() - wall0)
    step["time"] = where_the_time_went(step, instances_of(model))
    step["_window_ns"] = (window0, time.monotonic_ns())
    step.pop("_records", None)
    step["model"] = model
    step["side"] = ("shipped" if retry else "shipped, clients without retries") if shipped else "unbounded (before)"
    ov, q, lat = step["overload"], step["queue_after"] or {}, step["latency_ms"]
    log(f"{step['side']:>18} {rate:5.1f}/s: goodput {step['throughput_rps']:.2f}/s ok {step['ok']}/{step['sent']} "
        f"refused {ov['refused']} (attempts {ov['refused_attempts']}) timeouts {ov['timeouts']} "
        f"other {ov['other_errors']} work for nobody {ov['work_for_nobody']}/{ov['server_successes']} "
        f"p50 {lat['p50']} ms queued at end {q.get('pending_at_end')} drained {q.get('drained_after_load_s')} s")
    log(f"    {step['time']}")
    return step


def warm_up(server, model: str, steps: int) -> None:
    """Two full batches on each model before anything is measured: a model's first pipeline
    calls are several times slower (allocation, lazy init), which counted in the capacity before."""
    transport = TritonTransport(model, server.http_url, "http", timeout_s=300)
    try:
        run_concurrency_step(transport, PayloadFactory(SHIPPED, inference_steps=steps, seed=99), 4, duration_s=300,
                             max_requests=8)
    finally:
        transport.close()


def measure_capacity(server, duration: float, steps: int) -> float:
    transport = TritonTransport(SHIPPED, server.http_url, "http", timeout_s=60)
    try:
        step = run_concurrency_step(transport, PayloadFactory(SHIPPED, inference_steps=steps), 8,
                                    duration_s=duration)
    finally:
        transport.close()
    return step["throughput_rps"]


def goals(at_cap: dict, over: dict, before_cap: dict) -> dict[str, Any]:
    ov, q = over["overload"], over["queue_after"] or {}
    rl = ov["refusal_latency_ms"]
    one_request_s = (at_cap["latency_ms"]["p50"] or 0) / 1000
    drained = q.get("drained_after_last_answer_s")
    idle = q.get("idle_after_last_answer_s")
    out = {
        "goodput_ratio_4x_vs_capacity": round(over["throughput_rps"] / max(at_cap["throughput_rps"], 1e-9), 3),
        "work_for_nobody_fraction_4x": ov["work_for_nobody_fraction"],
        "refusal_p50_ms": rl["p50"], "refusal_p99_ms": rl["p99"],
        "one_request_s": round(one_request_s, 3),
        "queue_drained_after_last_answer_s": drained, "server_idle_after_last_answer_s": idle,
        "queue_drained_after_last_send_s": q.get("drained_after_load_s"),
        "capacity_goodput_ratio_vs_before": round(at_cap["throughput_rps"] / max(before_cap["throughput_rps"], 1e-9), 3),
        "capacity_p50_ratio_vs_before": round((at_cap["latency_ms"]["p50"] or 0) / max(before_cap["latency_ms"]["p50"] or 1e-9, 1e-9), 3),
    }
    out["met"] = {
        "goodput >= 0.9x capacity": out["goodput_ratio_4x_vs_capacity"] >= 0.9,
        "work for nobody <= 5%": (ov["work_for_nobody_fraction"] or 0) <= 0.05,
        "refusal p50 < 100 ms": rl["p50"] is not None and rl["p50"] < 100,
        "refusal p99 < 1 s": rl["p99"] is not None and rl["p99"] < 1000,
        "queue empty within one request time": drained is not None and drained <= one_request_s,
        "capacity goodput unchanged (>= 0.95x)": out["capacity_goodput_ratio_vs_before"] >= 0.95,
    }
    return out


def markdown(doc: dict) -> str:
    lines = [f"# P8 overload: sd_img2img {doc['config']['steps']} steps, tiny weights ({doc['date']})", "",
             f"Host: {doc['host']['cpus']} CPUs, load average {doc['host']['loadavg_start']} at start, "
             f"{doc['host']['loadavg_end']} at the end. **Noisy**: the machine is shared with other work, "
             "so single-run numbers move by 10-20 %.", "",
             f"Capacity (closed loop, concurrency 8): **{doc['capacity_rps']:.2f} req/s**; steps at "
             f"{', '.join(f'{r:g}' for r in doc['rates'])} req/s for {doc['config']['duration_s']:g} s, "
             f"{doc['config']['deadline_s']:g} s client deadline.", "",
             "| side | offered/s | goodput (ok/s) | ok / sent | refused (after retries) | refused attempts | "
             "refusal p50 / p99 ms | client timeouts | other errors | server successes | for nobody | "
             "p50 / p99 latency ms | queued at last answer | drained after last answer s | idle after last answer s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in doc["steps"]:
        ov, q, lat, rl = s["overload"], s["queue_after"] or {}, s["latency_ms"], s["overload"]["refusal_latency_ms"]
        lines.append(f"| {s['side']} | {s['target_rps']:g} | {s['throughput_rps']:.2f} | {s['ok']} / {s['sent']} | "
                     f"{ov['refused']} | {ov['refused_attempts']} | {rl['p50']} / {rl['p99']} | {ov['timeouts']} | "
                     f"{ov['other_errors']} | {ov['server_successes']} | {ov['work_for_nobody']} | "
                     f"{lat['p50']} / {lat['p99']} | {q.get('pending_at_end')} | {q.get('drained_after_last_answer_s')} | "
                     f"{q.get('idle_after_last_answer_s')} |")
    lines += ["", "Where the time went (Triton statistics and /proc, over each step until the queue drained): "
              "the instances' share of the step inside execute() (with two instances this includes waiting for the "
              "compute baton), the idle time per execution (one instance only), and the cores each process used.", "",
              "| side | offered/s | executions | mean batch | ms in execute() / execution | instances | busy per instance | idle ms / execution | "
              "cores: load generator / tritonserver / model processes |", "|---|---|---|---|---|---|---|---|---|"]
    for s in doc["steps"]:
        t = s.get("time")
        if t:
            c = t["cores_used"]
            lines.append(f"| {s['side']} | {s['target_rps']:g} | {t['executions']} | {t['mean_batch']} | "
                         f"{t['compute_ms_per_execution']} | {t.get('instances', 1)} | {t['instance_busy_fraction']:.0%} | "
                         f"{t['idle_ms_per_execution']} | "
                         f"{c['load_generator']} / {c['tritonserver']} / {c['model_stubs']} |")
    traced = [s for s in doc["steps"] if s.get("trace")]
    if traced:
        lines += ["", "Triton trace (`--trace`): executions that started in each step, merged over the instances "
                  "(the model is busy while some instance is inside execute()), the idle gaps between them, and "
                  "the idle time during which admitted requests were waiting in the queue.", "",
                  "| side | offered/s | executions | busy | compute ms / execution | gap p50 / p90 ms | idle s | "
                  "idle s while requests waited |", "|---|---|---|---|---|---|---|---|"]
        for s in traced:
            t = s["trace"]
            lines.append(f"| {s['side']} | {s['target_rps']:g} | {t['executions']} | {t['busy_fraction']:.0%} | "
                         f"{t['compute_ms_per_execution']} | {t['gap_ms_p50']} / {t['gap_ms_p90']} | {t['idle_s']} | "
                         f"{t['idle_s_while_requests_waited']} |")
    g = doc["goals"]
    lines += ["", "Goals (shipped side):", ""]
    lines += [f"- {name}: **{'met' if ok else 'NOT met'}**" for name, ok in g["met"].items()]
    g2 = doc["goals_without_client_retries"]
    lines += ["", "The same goals for the shipped server at 4x with clients that do not retry (the load "
              "generator shares the cores, so retry traffic competes with the model here):", ""]
    lines += [f"- {name}: **{'met' if ok else 'NOT met'}**" for name, ok in g2["met"].items()]
    lines += ["", "```", json.dumps({"with retries": {k: v for k, v in g.items() if k != "met"},
                                     "without retries": {k: v for k, v in g2.items() if k != "met"}}, indent=2),
              "```", "",
              "Triton metrics after the run:", "", "```", *doc["metrics_after"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/overload.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--steps", type=int, default=20, help="num_inference_steps")
    p.add_argument("--deadline", type=float, default=5.0, help="client deadline, s")
    p.add_argument("--capacity", type=float, default=None, help="skip the capacity measurement")
    p.add_argument("--threads", type=int, default=2, help="OMP threads of the model process")
    p.add_argument("--pin", action="store_true",
                   help="load generator on the last core, tritonserver and its models on the others "
                        "(clients as if on another host; both phases the same way)")
    p.add_argument("--trace", action="store_true",
                   help="Triton trace of every request (timestamps): idle gaps between executions per step")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    from serving.launch.server import TritonProcess, free_port

    build_repo()
    server = TritonProcess(repo=REPO, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           models=(SHIPPED, UNBOUNDED), log_path=ROOT / "build" / "bench" / "logs" / "overload.log",
                           extra_env={"OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)},
                           extra_args=trace_args(TRACE) if a.trace else ())
    load0 = list(os.getloadavg())
    server.start(wait_s=900)
    cpus = sorted(os.sched_getaffinity(0))
    if a.pin:
        if len(cpus) < 2:
            raise SystemExit(f"--pin needs at least 2 CPUs, this process may use {cpus}")
        pin(server.proc.pid, set(cpus[:-1]), {cpus[-1]})
        log(f"pinned: tritonserver and models on CPUs {cpus[:-1]}, load generator on CPU {cpus[-1]}")
    try:
        for model in (SHIPPED, UNBOUNDED):
            warm_up(server, model, a.steps)
        capacity = a.capacity or measure_capacity(server, a.duration, a.steps)
        log(f"capacity {capacity:.2f} req/s")
        rate = max(0.1, round(capacity, 1))  # "at capacity": the measured rate, to 0.1 req/s
        rates = [rate, 4 * rate]
        steps = []
        # The shipped side first: the unbounded side's backlog (minutes of it at 4x) would
        # otherwise still load the CPU during the shipped steps. Same seeds, same payloads.
        for model, shipped in ((SHIPPED, True), (UNBOUNDED, False)):
            for k, r in enumerate(rates):
                steps.append(run_step(server, model, r, a.duration, a.deadline, a.steps, shipped, seed=k))
        # The load generator shares the 2 cores: the shipped server at 4x without the clients'
        # retry traffic separates what the server achieves from what the retries cost here.
        steps.append(run_step(server, SHIPPED, rates[1], a.duration, a.deadline, a.steps, True, seed=1, retry=False))
        metrics_after = failures_on_metrics(server.metrics_port)
    finally:
        code = server.stop()
    trace = read_trace(TRACE) if a.trace else []
    for s in steps:
        w0, w1 = s.pop("_window_ns")
        if a.trace:
            s["trace"] = execution_gaps(trace, s["model"], w0, w1)
    at_cap, over, before_cap, no_retry = steps[0], steps[1], steps[2], steps[4]
    date = dt.date.today().isoformat()
    doc = {"bench": "P8 overload", "date": date, "capacity_rps": capacity, "rates": rates,
           "config": {"duration_s": a.duration, "steps": a.steps, "deadline_s": a.deadline, "threads": a.threads,
                      "pinned": {"server_cpus": cpus[:-1], "client_cpus": [cpus[-1]]} if a.pin else None},
           "host": {"cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": list(os.getloadavg())},
           "steps": steps, "goals": goals(at_cap, over, before_cap),
           "goals_without_client_retries": goals(at_cap, no_retry, before_cap), "metrics_after": metrics_after,
           "server_exit": code}
    a.out.mkdir(parents=True, exist_ok=True)
    stem = f"overload-{date}{a.tag}"
    (a.out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(doc))
    plot_overload([s for s in steps if s["side"] == "shipped"], a.out / f"{stem}.png",
                  title=f"sd_img2img {a.steps} steps, tiny, shipped admission control")
    plot_overload([s for s in steps if s["model"] == UNBOUNDED], a.out / f"{stem}-before.png",
                  title=f"sd_img2img {a.steps} steps, tiny, unbounded queue (before)")
    log(f"wrote {a.out / stem}.json/.md/.png; goals: {doc['goals']['met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
