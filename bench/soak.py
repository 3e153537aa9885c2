"""Soak: mixed traffic to all five models with faults injected on a schedule (`make soak`).

A benchmark, not a test: it starts the real tritonserver with capture on (the models start the
capture sidecar and the stub watchdog themselves, serving/host_services.py), runs concurrent
gRPC clients sending good requests and a share of bad ones to every model, injects each fault
once, and writes a report to bench/results/soak-<date>.{json,md}:

- requests ok / error by kind, each error either *expected* (a bad input rejected with
  INVALID_ARG), *explained* (inside a fault's window, naming the model) or *unexplained*;
- per fault: when it was injected and how long recovery took;
- RSS per process (tritonserver, each model's stub, sidecar, watchdog) sampled over time, with
  its slope after warm-up (leak check);
- records captured in the Parquet store vs successful responses, and which losses fall inside a
  documented window (docs/reliability.md).

Faults: `stub_kill` (SIGKILL one model's stub: the watchdog reloads it) for each model in
`--kill-models`, and `sidecar_kill` (SIGKILL the sidecar: a model process restarts it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving import MODEL_NAMES, host_services  # noqa: E402
from serving.server import TritonProcess, capture_env, sidecar_of  # noqa: E402
from serving.watchdog import list_stubs  # noqa: E402
from tests.conftest import free_port, gen_args, mask_png, png, tensor  # noqa: E402

FLUSH_S = 0.5  # CAPTURE_FLUSH_INTERVAL_S of the soak: the window of records a killed stub loses
FAULT_WINDOW_MARGIN_S = 5.0  # errors this long after recovery still count as the fault's


def good_inputs(model: str, seed: int) -> dict[str, np.ndarray]:
    image = tensor(png(64, seed))
    if model == "resnet_classifier":
        return {"image": image}
    base = {"prompt": tensor(b"a house by a lake"), "gen_args": tensor(gen_args(num_inference_steps=2, seed=seed))}
    if model == "sd_upscale":
        return dict(base, image=tensor(png(32, seed)))
    if model == "sd_inpaint":
        return dict(base, image=image, mask_image=tensor(mask_png(64)))
    return dict(base, image=image)


def bad_inputs(model: str, seed: int) -> dict[str, np.ndarray]:
    """Inputs the server must reject with INVALID_ARG without harming anything else."""
    inputs = good_inputs(model, seed)
    if seed % 2 and model != "resnet_classifier":
        inputs["gen_args"] = tensor(b'{"num_inference_steps": 100000}')
    else:
        inputs["image"] = tensor(b"not an image")
    return inputs


@dataclass
class Outcome:
    model: str
    kind: str  # good | bad
    status: str  # ok | error code
    message: str
    start: float
    end: float
    request_id: str


@dataclass
class Fault:
    kind: str  # stub_kill | sidecar_kill
    target: str
    at_s: float  # seconds into the run
    injected_at: float = 0.0
    recovered_at: float | None = None
    recovery_s: float | None = None
    detail: dict = field(default_factory=dict)


class Soak:
    def __init__(self, duration_s: float, clients: int, bad_share: float, work: Path, kill_models: list[str],
                 sample_s: float = 5.0) -> None:
        self.duration_s = duration_s
        self.clients = clients
        self.bad_share = bad_share
        self.work = work
        self.sample_s = sample_s
        self.outcomes: list[Outcome] = []
        self.rss: list[dict] = []
        self.faults = [Fault("stub_kill", m, duration_s * (i + 1) / (len(kill_models) + 2))
                       for i, m in enumerate(kill_models)]
        self.faults.append(Fault("sidecar_kill", "sidecar", duration_s * (len(kill_models) + 1) / (len(kill_models) + 2)))
        self.stop = threading.Event()

    # -- setup ------------------------------------------------------------------------------------
    def start_server(self) -> None:
        self.spool, self.store, self.host = self.work / "spool", self.work / "store", self.work / "host"
        env = capture_env(self.spool, self.store, free_port(), self.work / "sidecar.log")
        env.update({"OMP_NUM_THREADS": "1", "CAPTURE_FLUSH_INTERVAL_S": str(FLUSH_S),
                    "HOST_SERVICES_DIR": str(self.host), "HOST_SERVICES_WATCHDOG_METRICS_PORT": str(free_port()),
                    "HOST_SERVICES_CHECK_S": "2"})
        self.server = TritonProcess(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                    log_path=self.work / "tritonserver.log", extra_env=env)
        self.server.start(wait_s=900)
        self.sidecar = sidecar_of(self.spool)
        self.events_path = self.host / f"watchdog-{self.server.proc.pid}.events.jsonl"

    # -- traffic ----------------------------------------------------------------------------------
    def client(self, k: int) -> None:
        rng = random.Random(k)
        grpc = grpcclient.InferenceServerClient(self.server.grpc_url)
        n = 0
        while not self.stop.is_set():
            n += 1
            model = MODEL_NAMES[(k + n) % len(MODEL_NAMES)]
            kind = "bad" if rng.random() < self.bad_share else "good"
            arrays = (bad_inputs if kind == "bad" else good_inputs)(model, rng.randrange(1000))
            inputs = []
            for name, arr in arrays.items():
                inp = grpcclient.InferInput(name, list(arr.shape), "BYTES")
                inp.set_data_from_numpy(arr)
                inputs.append(inp)
            rid = f"soak-{k}-{n}"
            t0 = time.time()
            try:
                grpc.infer(model, inputs, request_id=rid, client_timeout=300)
                status, message = "ok", ""
            except InferenceServerException as exc:
                status, message = str(exc.status()).replace("StatusCode.", ""), exc.message() or ""
            self.outcomes.append(Outcome(model, kind, status, message[:300], t0, time.time(), rid))
        grpc.close()

    # -- faults -----------------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        fault.injected_at = time.time()
        if fault.kind == "stub_kill":
            pids = [s.pid for s in list_stubs(self.server.proc.pid).values()
                    if not s.zombie and s.instance.startswith(fault.target + "_")]
            os.kill(pids[0], signal.SIGKILL)
            fault.detail["pid"] = pids[0]
            # Recovered: the watchdog's event for this pid says when the model was ready again.
            deadline = time.time() + 300
            while time.time() < deadline and fault.recovered_at is None:
                for event in self.watchdog_events():
                    if event["pid"] == pids[0] and event.get("ready_at"):
                        fault.recovered_at = event["ready_at"]
                        fault.detail.update(watchdog_recovery_s=event["recovery_s"],
                                            failed_requests=event["failed_requests"])
                time.sleep(0.2)  # polling a file another process writes
        elif fault.kind == "sidecar_kill":
            pid = host_services.holder_pid(self.sidecar)
            fault.detail["pid"] = pid
            if pid:
                os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 300
            while time.time() < deadline:
                holder = host_services.holder_pid(self.sidecar)
                if holder and holder != pid and host_services.running(self.sidecar):
                    fault.recovered_at = time.time()
                    break
                time.sleep(0.2)
        if fault.recovered_at is not None:
            fault.recovery_s = round(fault.recovered_at - fault.injected_at, 2)

    def watchdog_events(self) -> list[dict]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]

    # -- RSS ----------------------------------------------------------------------------------------
    def processes(self) -> dict[str, int]:
        procs = {"tritonserver": self.server.proc.pid}
        for stub in list_stubs(self.server.proc.pid).values():
            if not stub.zombie:
                procs[f"stub:{stub.instance}"] = stub.pid
        sidecar = host_services.holder_pid(self.sidecar)
        if sidecar:
            procs["sidecar"] = sidecar
        lock = self.host / f"watchdog-{self.server.proc.pid}.lock"
        try:
            procs["watchdog"] = int(lock.read_text().strip())
        except (OSError, ValueError):
            pass
        return procs

    def sample(self, t0: float) -> None:
        for name, pid in self.processes().items():
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError):
                continue
            self.rss.append({"t": round(time.time() - t0, 1), "process": name, "pid": pid, "rss_mb": round(rss / 2**20, 1)})

    # -- run --------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.start_server()
        try:
            t0 = time.time()
            threads = [threading.Thread(target=self.client, args=(k,), daemon=True) for k in range(self.clients)]
            for t in threads:
                t.start()
            pending = sorted(self.faults, key=lambda f: f.at_s)
            next_sample = 0.0
            injectors: list[threading.Thread] = []
            while time.time() - t0 < self.duration_s:
                now = time.time() - t0
                if now >= next_sample:
                    self.sample(t0)
                    next_sample = now + self.sample_s
                if pending and now >= pending[0].at_s:
                    # Its own thread: waiting for one fault's recovery must not delay the next.
                    injector = threading.Thread(target=self.inject, args=(pending.pop(0),), daemon=True)
                    injector.start()
                    injectors.append(injector)
                time.sleep(0.2)  # the benchmark's own clock tick
            for injector in injectors:  # recoveries still under way are part of the run
                injector.join(timeout=600)
            self.stop.set()
            for t in threads:
                t.join(timeout=600)
            self.sample(t0)
        finally:
            self.stop.set()
            code = self.server.stop()
        drained = host_services.wait_stopped(self.sidecar, timeout=300.0)
        return self.report(t0, code, drained)

    # -- report -------------------------------------------------------------------------------------
    def fault_window(self, o: Outcome) -> Fault | None:
        for f in self.faults:
            end = (f.recovered_at or time.time()) + FAULT_WINDOW_MARGIN_S
            if f.injected_at and f.injected_at - 1.0 <= o.end <= end and (f.kind == "stub_kill" and f.target == o.model):
                return f
        return None

    def classify_error(self, o: Outcome) -> str:
        if o.kind == "bad" and o.status in ("INVALID_ARGUMENT", "400"):
            return "expected_bad_input"
        f = self.fault_window(o)
        if f is not None and o.model in o.message:
            return f"explained_{f.kind}"
        return "unexplained"

    def captured(self) -> dict[str, dict]:
        from monitoring.store import read_records_df

        out = {}
        for model in MODEL_NAMES:
            try:
                df = read_records_df(str(self.store), model, columns=["request_id", "outcome"])
            except Exception as exc:  # noqa: BLE001 - an empty store for a model is a finding, not a crash
                out[model] = {"error": str(exc)[:200], "ids": set(), "errors": 0}
                continue
            out[model] = {"ids": set(df.loc[df.outcome == "ok", "request_id"]),
                          "errors": int((df.outcome == "error").sum()),
                          "watchdog_errors": int(df.request_id.str.startswith("watchdog:").sum())}
        return out

    def report(self, t0: float, exit_code: int | None, drained: bool) -> dict:
        errors = Counter()
        unexplained = []
        for o in self.outcomes:
            if o.status == "ok":
                errors["ok"] += 1
                continue
            cls = self.classify_error(o)
            errors[cls] += 1
            if cls == "unexplained":
                unexplained.append({"model": o.model, "kind": o.kind, "status": o.status, "message": o.message,
                                    "t": round(o.end - t0, 1)})
        captured = self.captured()
        kills = [f for f in self.faults if f.kind == "stub_kill"]
        records = {}
        lost_outside = []
        for model in MODEL_NAMES:
            oks = [o for o in self.outcomes if o.model == model and o.status == "ok"]
            ids = captured[model]["ids"]
            lost = [o for o in oks if o.request_id not in ids]
            # Documented window: answered by a stub within the flush interval (+1 s) before it was killed.
            in_window = [o for o in lost if any(f.target == model and f.injected_at - FLUSH_S - 1.0 <= o.end <= f.injected_at + 1.0
                                                for f in kills)]
            lost_outside += [o.request_id for o in lost if o not in in_window]
            records[model] = {"ok_responses": len(oks), "ok_records": len(ids & {o.request_id for o in oks}),
                              "lost_in_fault_window": len(in_window), "lost_outside": len(lost) - len(in_window),
                              "error_records": captured[model].get("errors", 0),
                              "watchdog_error_records": captured[model].get("watchdog_errors", 0)}
        slopes = rss_slopes(self.rss, warmup_s=0.2 * self.duration_s)
        stub_recoveries = [f.recovery_s for f in kills if f.recovery_s is not None]
        goals = {
            "unexplained_errors": errors["unexplained"],
            "records_lost_outside_fault_windows": len(lost_outside),
            "max_stub_recovery_s": max(stub_recoveries) if stub_recoveries else None,
            "stub_recovery_under_30s": bool(stub_recoveries) and len(stub_recoveries) == len(kills) and max(stub_recoveries) < 30,
            "max_rss_slope_mb_per_min": max((abs(s["slope_mb_per_min"]) for s in slopes.values()), default=None),
        }
        return {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": self.duration_s, "clients": self.clients, "bad_share": self.bad_share,
            "machine": f"{os.cpu_count()} CPUs, shared with other jobs (noisy)",
            "requests": dict(errors),
            "by_model": {f"{m}/{k}/{s}": c for (m, k, s), c in Counter((o.model, o.kind, o.status) for o in self.outcomes).items()},
            "unexplained": unexplained[:50],
            "faults": [{"kind": f.kind, "target": f.target, "at_s": round(f.injected_at - t0, 1) if f.injected_at else None,
                        "recovery_s": f.recovery_s, **f.detail} for f in self.faults],
            "records": records, "records_lost_outside": lost_outside[:50],
            "rss_slopes": slopes, "rss_samples": self.rss,
            "tritonserver_exit_code": exit_code, "sidecar_drained": drained, "goals": goals,
        }


def rss_slopes(samples: list[dict], warmup_s: float, start_warmup_s: float = 60.0) -> dict[str, dict]:
    """Least-squares RSS slope per process over its longest run with one pid (a restarted stub
    or sidecar starts a new series), leaving out the run's warm-up: samples before `warmup_s`
    into the soak and before `start_warmup_s` after the process first appeared (a reloaded
    model is still loading its weights then)."""
    out = {}
    for name in sorted({s["process"] for s in samples}):
        runs: dict[int, list[dict]] = {}
        for s in samples:
            if s["process"] == name:
                runs.setdefault(s["pid"], []).append(s)
        steady = [[s for s in run if s["t"] >= max(warmup_s, run[0]["t"] + start_warmup_s)] for run in runs.values()]
        best = max(steady, key=len, default=[])
        if len(best) < 3:
            continue
        t = np.array([s["t"] for s in best]) / 60.0
        r = np.array([s["rss_mb"] for s in best])
        slope = float(np.polyfit(t, r, 1)[0]) if np.ptp(t) > 0 else 0.0
        out[name] = {"samples": len(best), "first_mb": r[0], "last_mb": r[-1], "slope_mb_per_min": round(slope, 3)}
    return out


def rescore(rep: dict) -> dict:
    """Recompute the RSS analysis of a saved report (its raw samples are in it)."""
    rep["rss_slopes"] = rss_slopes(rep["rss_samples"], warmup_s=0.2 * rep["duration_s"])
    rep["goals"]["max_rss_slope_mb_per_min"] = max((abs(s["slope_mb_per_min"]) for s in rep["rss_slopes"].values()),
                                                   default=None)
    return rep


def markdown(rep: dict) -> str:
    g = rep["goals"]
    lines = [f"# Soak {rep['date']} ({rep['duration_s'] / 60:.1f} min, {rep['clients']} clients, "
             f"{rep['bad_share']:.0%} bad inputs; {rep['machine']})", "",
             "## Goals", "",
             f"- unexplained errors: **{g['unexplained_errors']}** (goal 0)",
             f"- records lost outside documented fault windows: **{g['records_lost_outside_fault_windows']}** (goal 0)",
             f"- stub kill recovery, max: **{g['max_stub_recovery_s']} s** (goal < 30 s): "
             f"{'met' if g['stub_recovery_under_30s'] else 'NOT met'}",
             f"- RSS slope after warm-up, max |slope|: **{g['max_rss_slope_mb_per_min']} MB/min** (goal ≈ 0)", "",
             "## Requests", "", "| outcome | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(rep["requests"].items())]
    lines += ["", "## Faults", "", "| fault | target | at (s) | recovery (s) | detail |", "|---|---|---|---|---|"]
    for f in rep["faults"]:
        detail = {k: v for k, v in f.items() if k not in ("kind", "target", "at_s", "recovery_s")}
        lines.append(f"| {f['kind']} | {f['target']} | {f['at_s']} | {f['recovery_s']} | {json.dumps(detail)} |")
    lines += ["", "## Records captured vs successful responses", "",
              "| model | ok responses | ok records | lost in fault window | lost outside | error records (watchdog) |",
              "|---|---|---|---|---|---|"]
    for m, r in rep["records"].items():
        lines.append(f"| {m} | {r['ok_responses']} | {r['ok_records']} | {r['lost_in_fault_window']} | "
                     f"{r['lost_outside']} | {r['error_records']} ({r['watchdog_error_records']}) |")
    lines += ["", "## RSS after warm-up (longest same-pid run)", "",
              "| process | samples | first MB | last MB | slope MB/min |", "|---|---|---|---|---|"]
    for name, s in rep["rss_slopes"].items():
        lines.append(f"| {name} | {s['samples']} | {s['first_mb']} | {s['last_mb']} | {s['slope_mb_per_min']} |")
    lines += ["", f"tritonserver exit code: {rep['tritonserver_exit_code']} (1 = Triton's 30 s exit timeout, "
              "expected after a stub died under traffic: docs/reliability.md); sidecar drained: "
              f"{rep['sidecar_drained']}", ""]
    if rep["unexplained"]:
        lines += ["## Unexplained errors (first 50)", ""] + [f"- {json.dumps(u)}" for u in rep["unexplained"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bad-share", type=float, default=0.1)
    parser.add_argument("--kill-models", default="resnet_classifier,sd_img2img",
                        help="models whose stub is killed once each (comma-separated)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for soak-<date>.{json,md}")
    parser.add_argument("--name", default="", help="report file stem (default soak-<date>)")
    parser.add_argument("--rescore", default="", help="re-analyse a saved soak-<date>.json instead of running")
    args = parser.parse_args(argv)
    if args.rescore:
        path = Path(args.rescore)
        rep = rescore(json.loads(path.read_text()))
        path.write_text(json.dumps(rep, indent=1, default=str) + "\n")
        path.with_suffix(".md").write_text(markdown(rep))
        print(markdown(rep))
        return 0
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        soak = Soak(args.minutes * 60, args.clients, args.bad_share, Path(work),
                    [m for m in args.kill_models.split(",") if m])
        rep = soak.run()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"soak-{dt.date.today().isoformat()}"
    (out / f"{stem}.json").write_text(json.dumps(rep, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
