"""Soak: mixed traffic to all five models with every fault of the matrix injected (`make soak`).

A benchmark, not a test: it starts the real tritonserver with capture on into a moto S3 store
on 127.0.0.1 (the models start the capture sidecar and the stub watchdog themselves,
serving/runtime/host_services.py), runs concurrent gRPC clients sending good requests and a share of bad
ones to every model (bench/loadtest/payloads.py), injects each fault once, one after the other
on a schedule, and writes a report to bench/results/soak-<date>.{json,md}:

- requests ok / error by kind, each error either *expected* (a bad input rejected with
  INVALID_ARG), *explained* (inside a fault's window, and of the kind that fault explains) or
  *unexplained*;
- per fault: when it was injected, how long recovery took, and what it cost (requests failed,
  records dropped and counted);
- RSS per process (tritonserver, each model's stub, sidecar, watchdog) sampled over time, with
  its slope after warm-up (leak check);
- records captured in the store vs successful responses, and which losses fall inside a
  documented window (docs/reliability.md).

Faults, in schedule order (each once):

- `stub_kill`: SIGKILL one model's stub (for each of `--kill-models`): the watchdog reloads it.
- `sidecar_kill`: SIGKILL the sidecar: a model process starts a new one.
- `store_unreachable`: stop the S3 server (its port held, so connections are refused) for
  `--outage-s`, then start it again: the sidecar retries and catches up.
- `spool_full`: SIGSTOP the sidecar until the bounded spool (`--spool-max-mb`) is full and
  capture drops records, then SIGCONT: capture resumes by itself.
- `model_evict`: unload one model under traffic through Triton's repository API and load it
  again, as a SageMaker multi-model endpoint evicts a model and loads it on the next request.
- `server_kill`: SIGKILL tritonserver. The shape the soak runs (`make serve`) has no supervisor:
  the container exits (docker entrypoint, SageMaker) and the platform starts a new one. The
  soak plays the platform: it starts a new tritonserver with the same configuration, spool and
  store, and counts recovery until every model is ready again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving import MODEL_NAMES  # noqa: E402
from serving.runtime import host_services  # noqa: E402
from serving.common import procfs  # noqa: E402
from bench.loadtest.payloads import PayloadFactory  # noqa: E402
from bench.loadtest.loss import match_ids  # noqa: E402
from serving.launch.server import TritonProcess, capture_env, end_orphaned_stubs, free_port, sidecar_of  # noqa: E402
from serving.runtime.watchdog import list_stubs  # noqa: E402

FLUSH_S = 0.5  # CAPTURE_FLUSH_INTERVAL_S of the soak: the window of records a killed process loses
FAULT_WINDOW_MARGIN_S = 5.0  # errors this long after recovery still count as the fault's
FAULT_ORDER = ("stub_kill", "sidecar_kill", "store_unreachable", "spool_full", "model_evict", "server_kill")
# Credentials for the moto server only: the soak never talks to anything but 127.0.0.1.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


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
    kind: str  # one of FAULT_ORDER
    target: str
    at_s: float  # earliest time into the run (injected once the previous fault recovered)
    injected_at: float = 0.0
    recovered_at: float | None = None
    recovery_s: float | None = None
    detail: dict = field(default_factory=dict)

    def window_end(self) -> float:
        return (self.recovered_at or time.time()) + FAULT_WINDOW_MARGIN_S

    def explains(self, o: Outcome) -> bool:
        """Whether this fault accounts for the error a client saw."""
        if not self.injected_at or not self.injected_at - 1.0 <= o.end <= self.window_end():
            return False
        if self.kind in ("stub_kill", "model_evict"):  # Triton's error names the model (or its instance)
            return o.model == self.target and self.target in o.message
        return self.kind == "server_kill"  # connection refused / reset, or a model still loading
        # sidecar_kill, store_unreachable, spool_full: clients must see nothing at all.

    def loses_unflushed(self, o: Outcome) -> bool:
        """A success answered by a process within the flush interval before it was killed."""
        hit = self.kind == "server_kill" or (self.kind == "stub_kill" and o.model == self.target)
        return hit and self.injected_at - FLUSH_S - 1.0 <= o.end <= self.injected_at + 1.0


def metric_values(text: str, name: str) -> dict[str, float]:
    """Prometheus text -> {model label: value} for one metric family (summed over other labels)."""
    out: dict[str, float] = {}
    for m in re.finditer(rf'^{name}(?:{{([^}}]*)}})? (\S+)$', text, re.M):
        model = re.search(r'model="([^"]*)"', m.group(1) or "")
        key = model.group(1) if model else ""
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()
    except OSError:
        return ""


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the soak's own boto3/pyarrow S3 calls, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class S3Store:
    """A moto S3 server on 127.0.0.1 that can be taken away (port held, connections refused)
    and brought back on the same port with its buckets (moto keeps them in this process)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = f"soak-{uuid.uuid4().hex[:12]}"
        self.uri = f"s3://{self.bucket}/capture"
        self.server = None
        self._held: socket.socket | None = None

    def start(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 call otherwise

        if self._held is not None:
            self._held.close()
            self._held = None
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def create_bucket(self) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1").create_bucket(Bucket=self.bucket)

    def take_away(self) -> None:
        self.server.stop()
        self.server = None
        # Bound, not listening: the sidecar gets "connection refused", as with S3 unreachable,
        # and nothing else takes the port meanwhile.
        self._held = socket.socket()
        self._held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._held.bind(("127.0.0.1", self.port))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._held is not None:
            self._held.close()
            self._held = None


class Soak:
    def __init__(self, duration_s: float, clients: int, bad_share: float, work: Path,
                 kill_models: list[str] | tuple[str, ...] = ("resnet_classifier", "sd_img2img"), *,
                 models: tuple[str, ...] = MODEL_NAMES, evict_model: str | None = "sd_depth",
                 faults: tuple[str, ...] = FAULT_ORDER, outage_s: float = 15.0, spool_max_mb: float = 4.0,
                 sample_s: float = 5.0) -> None:
        self.duration_s = duration_s
        self.clients = clients
        self.bad_share = bad_share
        self.work = work
        self.models = tuple(models)
        self.outage_s = outage_s
        self.spool_max_mb = spool_max_mb
        self.sample_s = sample_s
        self.outcomes: list[Outcome] = []
        self.rss: list[dict] = []
        self.exit_codes: list[int | None] = []
        self.events_paths: list[Path] = []
        planned: list[tuple[str, str]] = []
        for kind in FAULT_ORDER:
            if kind not in faults:
                continue
            if kind == "stub_kill":
                planned += [(kind, m) for m in kill_models]
            elif kind == "model_evict":
                planned.append((kind, evict_model or self.models[-1]))
            else:
                planned.append((kind, {"sidecar_kill": "sidecar", "spool_full": "sidecar", "server_kill": "tritonserver",
                                       "store_unreachable": "s3"}[kind]))
        # Spread over the run, the last one early enough that traffic goes on after it.
        self.faults = [Fault(kind, target, duration_s * (i + 1) / (len(planned) + 1.5))
                       for i, (kind, target) in enumerate(planned)]
        self.stop = threading.Event()

    # -- setup ------------------------------------------------------------------------------------
    def configure(self) -> None:
        self.spool, self.host = self.work / "spool", self.work / "host"
        self.store = S3Store()
        self.sidecar_port = free_port()
        self.sidecar_log = self.work / "sidecar.log"
        env = capture_env(self.spool, self.store.uri, self.sidecar_port, self.sidecar_log)
        env.update(AWS_ENV)
        env.update({"OMP_NUM_THREADS": "1", "CAPTURE_FLUSH_INTERVAL_S": str(FLUSH_S),
                    "CAPTURE_S3_ENDPOINT_URL": self.store.url, "CAPTURE_SPOOL_MAX_MB": str(self.spool_max_mb),
                    "HOST_SERVICES_DIR": str(self.host), "HOST_SERVICES_WATCHDOG_METRICS_PORT": str(free_port()),
                    "HOST_SERVICES_CHECK_S": "2"})
        self.server = TritonProcess(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                    log_path=self.work / "tritonserver.log", models=self.models, extra_env=env)
        self.sidecar = sidecar_of(self.spool)

    def start_server(self) -> None:
        self.server.proc = None
        self.server.start(wait_s=900)
        self.events_paths.append(self.host / f"watchdog-{self.server.proc.pid}.events.jsonl")

    # -- traffic ----------------------------------------------------------------------------------
    def client(self, k: int) -> None:
        rng = random.Random(k)
        factories = {m: PayloadFactory(m, inference_steps=2, seed=k) for m in self.models}
        bad_factories = {m: PayloadFactory(m, inference_steps=2, seed=k, bad_fraction=1.0) for m in self.models}
        grpc = grpcclient.InferenceServerClient(self.server.grpc_url)
        n = 0
        while not self.stop.is_set():
            n += 1
            model = self.models[(k + n) % len(self.models)]
            kind = "bad" if rng.random() < self.bad_share else "good"
            payload = (bad_factories if kind == "bad" else factories)[model](n)
            inputs = []
            for name, value in payload.inputs.items():
                inp = grpcclient.InferInput(name, [1, 1], "BYTES")
                inp.set_data_from_numpy(np.array([[value]], dtype=np.object_))
                inputs.append(inp)
            rid = f"soak-{k}-{n}"
            t0 = time.time()
            try:
                grpc.infer(model, inputs, request_id=rid, client_timeout=300)
                status, message = "ok", ""
            except InferenceServerException as exc:
                status, message = str(exc.status()).replace("StatusCode.", ""), exc.message() or ""
            self.outcomes.append(Outcome(model, kind, status, message[:300], t0, time.time(), rid))
            if status == "UNAVAILABLE":  # the server went away: a fresh channel, as a client would
                grpc.close()
                self.stop.wait(0.5)
                grpc = grpcclient.InferenceServerClient(self.server.grpc_url)
        grpc.close()

    # -- faults -----------------------------------------------------------------------------------
    def run_faults(self, t0: float) -> None:
        """One fault at a time: each waits for its time and for the previous one's recovery, so
        that every error and every lost record has exactly one fault to answer for it."""
        for fault in self.faults:
            if self.stop.wait(max(0.0, t0 + fault.at_s - time.time())):
                return
            drops_before = self.dropped()
            fault.injected_at = time.time()
            getattr(self, f"inject_{fault.kind}")(fault)
            if fault.recovered_at is not None:
                fault.recovery_s = round(fault.recovered_at - fault.injected_at, 2)
            if fault.kind != "server_kill":  # a new server's counters start again
                self.stop.wait(2.5)  # Triton's capture metrics refresh every second (CAPTURE_METRICS_INTERVAL_S)
                dropped = {m: int(v - drops_before.get(m, 0.0)) for m, v in self.dropped().items()
                           if v - drops_before.get(m, 0.0) > 0}
                fault.detail["records_dropped"] = dropped
            print(f"[soak] {fault.kind} {fault.target}: recovery {fault.recovery_s} s {fault.detail}", flush=True)

    def poll(self, cond, timeout: float = 300.0, step: float = 0.2):
        """Poll another process's state until `cond()` is truthy; None after `timeout`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = cond()
            if value:
                return value
            time.sleep(step)  # polling processes we do not own
        return None

    def dropped(self) -> dict[str, float]:
        return metric_values(scrape(self.server.metrics_port), "capture_records_dropped_total")

    def inject_stub_kill(self, fault: Fault) -> None:
        pids = [s.pid for s in list_stubs(self.server.proc.pid).values()
                if not s.zombie and s.instance.startswith(fault.target + "_")]
        os.kill(pids[0], signal.SIGKILL)
        fault.detail["pid"] = pids[0]
        # Recovered: the watchdog's event for this pid says when the model was ready again.
        event = self.poll(lambda: next((e for e in self.watchdog_events() if e["pid"] == pids[0] and e.get("ready_at")),
                                       None))
        if event:
            fault.recovered_at = event["ready_at"]
            fault.detail.update(detected_after_s=round(event["detected_at"] - fault.injected_at, 2),
                                unloaded_after_s=round(event["unloaded_at"] - fault.injected_at, 2),
                                watchdog_recovery_s=event["recovery_s"], failed_requests=event["failed_requests"])

    def inject_sidecar_kill(self, fault: Fault) -> None:
        pid = host_services.holder_pid(self.sidecar)
        fault.detail["pid"] = pid
        if pid:
            os.kill(pid, signal.SIGKILL)
        if self.poll(lambda: (h := host_services.holder_pid(self.sidecar)) and h != pid and host_services.running(self.sidecar)):
            fault.recovered_at = time.time()

    def sidecar_caught_up(self, outages_before: float, caught_up_before: int) -> bool:
        text = scrape(self.sidecar_port)
        outages = metric_values(text, "capture_store_outages_total").get("", 0.0)
        return outages > outages_before and "capture_store_last_catchup_seconds" in text \
            and self.sidecar_log.read_text(errors="replace").count("caught up") > caught_up_before

    def inject_store_unreachable(self, fault: Fault) -> None:
        outages_before = metric_values(scrape(self.sidecar_port), "capture_store_outages_total").get("", 0.0)
        caught_up_before = self.sidecar_log.read_text(errors="replace").count("caught up")
        self.store.take_away()
        self.stop.wait(self.outage_s)
        self.store.start()
        back = time.time()
        fault.detail["outage_s"] = round(back - fault.injected_at, 2)
        if self.poll(lambda: self.sidecar_caught_up(outages_before, caught_up_before)):
            fault.recovered_at = time.time()
            fault.detail["caught_up_after_back_s"] = round(fault.recovered_at - back, 2)

    def inject_spool_full(self, fault: Fault) -> None:
        log_path = self.server.log_path
        resumed_before = log_path.read_text(errors="replace").count("spool has room again")
        before = sum(self.dropped().values())
        pid = host_services.holder_pid(self.sidecar)
        fault.detail["pid"] = pid
        os.kill(pid, signal.SIGSTOP)  # the sidecar stalls: nothing leaves the spool
        try:
            filled = self.poll(lambda: sum(self.dropped().values()) > before, timeout=300.0, step=0.5)
            fault.detail["filled_after_s"] = round(time.time() - fault.injected_at, 2) if filled else None
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.time()
        if self.poll(lambda: log_path.read_text(errors="replace").count("spool has room again") > resumed_before):
            fault.recovered_at = time.time()
            fault.detail["capture_resumed_after_sigcont_s"] = round(fault.recovered_at - resumed, 2)

    def inject_model_evict(self, fault: Fault) -> None:
        triton = self.server.control(timeout_s=600)  # the server's control key: its repository API is locked
        triton.unload(fault.target)
        self.poll(lambda: not triton.ready(fault.target))
        fault.detail["unloaded_after_s"] = round(time.time() - fault.injected_at, 2)
        triton.load(fault.target)
        if self.poll(lambda: triton.ready(fault.target)):
            fault.recovered_at = time.time()

    def inject_server_kill(self, fault: Fault) -> None:
        proc = self.server.proc
        fault.detail["pid"] = proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        self.exit_codes.append(proc.wait())
        # The platform's part: a new container with the same configuration, spool and store.
        self.start_server()
        fault.recovered_at = time.time()
        fault.detail["new_pid"] = self.server.proc.pid
        # ... where the old container's processes are gone too: a stub of the killed server that
        # has not exited by now (its start-up took seconds) is deadlocked, not flushing.
        fault.detail["orphaned_stubs_killed"] = len(end_orphaned_stubs(proc.pid, grace_s=0))

    def watchdog_events(self) -> list[dict]:
        events = []
        for path in self.events_paths:
            if path.exists():
                events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return events

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
            rss = procfs.rss_bytes(pid)
            if rss is None:
                continue
            self.rss.append({"t": round(time.time() - t0, 1), "process": name, "pid": pid, "rss_mb": round(rss / 2**20, 1)})

    # -- run --------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.configure()
        with environ(AWS_ENV):
            self.store.start()
            try:
                self.store.create_bucket()
                return self._run()
            finally:
                self.store.stop()

    def _run(self) -> dict:
        self.start_server()
        drained = False
        try:
            t0 = time.time()
            threads = [threading.Thread(target=self.client, args=(k,), daemon=True) for k in range(self.clients)]
            for t in threads:
                t.start()
            faults = threading.Thread(target=self.run_faults, args=(t0,), daemon=True)
            faults.start()
            while time.time() - t0 < self.duration_s or faults.is_alive():
                self.sample(t0)
                self.stop.wait(self.sample_s)
            self.stop.set()
            for t in threads:
                t.join(timeout=600)
            self.sample(t0)
            end = time.time()
        finally:
            self.stop.set()
            self.exit_codes.append(self.server.stop())
            drained = host_services.wait_stopped(self.sidecar, timeout=300.0)
        return self.report(t0, end, drained)

    # -- report -------------------------------------------------------------------------------------
    def classify_error(self, o: Outcome) -> str:
        if o.kind == "bad" and o.status in ("INVALID_ARGUMENT", "400"):
            return "expected_bad_input"
        f = next((f for f in self.faults if f.explains(o)), None)
        return f"explained_{f.kind}" if f is not None else "unexplained"

    def captured(self) -> dict[str, dict]:
        from monitoring.ingest.store import read_records_df

        out = {}
        for model in self.models:
            try:
                df = read_records_df(self.store.uri, model, columns=["request_id", "outcome"], dedup=False,
                                     s3_endpoint_url=self.store.url)
            except Exception as exc:  # noqa: BLE001 - an empty store for a model is a finding, not a crash
                out[model] = {"error": str(exc)[:200], "ids": [], "errors": 0, "watchdog_errors": 0}
                continue
            ok = df[df.outcome == "ok"]
            out[model] = {"ids": list(ok.request_id), "errors": int((df.outcome == "error").sum()),
                          "watchdog_errors": int(df.request_id.str.startswith("watchdog:").sum())}
        return out

    def report(self, t0: float, end: float, drained: bool) -> dict:
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
        captured = self.captured()  # the store is still up: read back after the server is gone
        records, lost_outside, duplicated = {}, [], {}
        for model in self.models:
            oks = [o for o in self.outcomes if o.model == model and o.status == "ok"]
            # By request id, not by totals: a lost record and a duplicate must not cancel out.
            match = match_ids([o.request_id for o in oks], captured[model]["ids"])
            missing = set(match.missing)
            lost = [o for o in oks if o.request_id in missing]
            unflushed = [o for o in lost if any(f.loses_unflushed(o) for f in self.faults if f.injected_at)]
            # Dropped at the spool bound: documented as long as it was counted (Triton's metric).
            counted = sum(f.detail.get("records_dropped", {}).get(model, 0) for f in self.faults)
            rest = [o for o in lost if o not in unflushed]
            as_dropped = min(len(rest), counted)
            lost_outside += [o.request_id for o in rest[as_dropped:]]
            duplicated.update({f"{model}/{rid}": n for rid, n in match.duplicated.items()})
            records[model] = {"ok_responses": len(oks), "ok_records": match.answered - len(match.missing),
                              "duplicates": len(match.duplicated),
                              "records_of_unanswered_ids": len(match.unexpected),
                              "lost_unflushed_at_kill": len(unflushed), "lost_dropped_counted": as_dropped,
                              "dropped_counted": counted, "lost_outside": len(rest) - as_dropped,
                              "error_records": captured[model].get("errors", 0),
                              "watchdog_error_records": captured[model].get("watchdog_errors", 0)}
        slopes = rss_slopes(self.rss, warmup_s=0.2 * self.duration_s)
        kills = [f for f in self.faults if f.kind == "stub_kill"]
        stub_recoveries = [f.recovery_s for f in kills if f.recovery_s is not None]
        goals = {
            "unexplained_errors": errors["unexplained"],
            "records_lost_outside_fault_windows": len(lost_outside),
            "duplicate_records": sum(r["duplicates"] for r in records.values()),
            "every_fault_recovered": all(f.recovery_s is not None for f in self.faults),
            "max_stub_recovery_s": max(stub_recoveries) if stub_recoveries else None,
            "stub_recovery_under_30s": bool(stub_recoveries) and len(stub_recoveries) == len(kills) and max(stub_recoveries) < 30,
            "max_rss_slope_mb_per_min": max((abs(s["slope_mb_per_min"]) for s in slopes.values()), default=None),
            "max_rss_late_slope_mb_per_min": max((abs(s["late_slope_mb_per_min"]) for s in slopes.values()
                                                  if s["late_slope_mb_per_min"] is not None), default=None),
        }
        return {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(end - t0, 1), "planned_duration_s": self.duration_s, "clients": self.clients,
            "bad_share": self.bad_share, "models": list(self.models), "spool_max_mb": self.spool_max_mb,
            "machine": f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}",
            "requests": dict(errors),
            "by_model": {f"{m}/{k}/{s}": c for (m, k, s), c in Counter((o.model, o.kind, o.status) for o in self.outcomes).items()},
            "unexplained": unexplained[:50],
            "faults": [{"kind": f.kind, "target": f.target, "at_s": round(f.injected_at - t0, 1) if f.injected_at else None,
                        "recovery_s": f.recovery_s, **f.detail} for f in self.faults],
            "explained_by_fault": {f"{f.kind}:{f.target}": sum(1 for o in self.outcomes if o.status != "ok"
                                                              and self.classify_error(o) != "expected_bad_input"
                                                              and f.explains(o)) for f in self.faults},
            "records": records, "records_lost_outside": lost_outside[:50],
            "records_duplicated": dict(list(duplicated.items())[:50]),
            "rss_slopes": slopes, "rss_samples": self.rss,
            "tritonserver_exit_codes": self.exit_codes, "sidecar_drained": drained, "goals": goals,
        }


def _slope(run: list[dict]) -> float | None:
    if len(run) < 3:
        return None
    t = np.array([s["t"] for s in run]) / 60.0
    r = np.array([s["rss_mb"] for s in run])
    return round(float(np.polyfit(t, r, 1)[0]), 3) if np.ptp(t) > 0 else 0.0


def rss_slopes(samples: list[dict], warmup_s: float, start_warmup_s: float = 60.0) -> dict[str, dict]:
    """Least-squares RSS slope per process over its longest run with one pid (a restarted stub
    or sidecar starts a new series), leaving out the run's warm-up: samples before `warmup_s`
    into the soak and before `start_warmup_s` after the process first appeared (a reloaded
    model is still loading its weights then). `late_slope` is the same over the second half of
    that run only: a one-off step (a cache filling once) shows in the first, a leak in both."""
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
        out[name] = {"samples": len(best), "first_mb": best[0]["rss_mb"], "last_mb": best[-1]["rss_mb"],
                     "slope_mb_per_min": _slope(best), "late_slope_mb_per_min": _slope(best[len(best) // 2:])}
    return out


def rescore(rep: dict) -> dict:
    """Recompute the RSS analysis of a saved report (its raw samples are in it)."""
    rep["rss_slopes"] = rss_slopes(rep["rss_samples"], warmup_s=0.2 * rep["duration_s"])
    slopes = rep["rss_slopes"].values()
    rep["goals"]["max_rss_slope_mb_per_min"] = max((abs(s["slope_mb_per_min"]) for s in slopes), default=None)
    rep["goals"]["max_rss_late_slope_mb_per_min"] = max(
        (abs(s["late_slope_mb_per_min"]) for s in slopes if s.get("late_slope_mb_per_min") is not None), default=None)
    return rep


def markdown(rep: dict) -> str:
    g = rep["goals"]
    lines = [f"# Soak {rep['date']} ({rep['duration_s'] / 60:.1f} min, {rep['clients']} clients, "
             f"{rep['bad_share']:.0%} bad inputs, {len(rep['models'])} models; {rep['machine']})", "",
             "## Goals", "",
             f"- unexplained errors: **{g['unexplained_errors']}** (goal 0)",
             f"- records lost outside documented fault windows: **{g['records_lost_outside_fault_windows']}** (goal 0); "
             f"duplicate records: **{g['duplicate_records']}**",
             f"- every fault injected once and recovered: **{g['every_fault_recovered']}**",
             f"- stub kill recovery, max: **{g['max_stub_recovery_s']} s** (goal < 30 s): "
             f"{'met' if g['stub_recovery_under_30s'] else 'NOT met'}",
             f"- RSS slope after warm-up, max |slope|: **{g['max_rss_slope_mb_per_min']} MB/min** over the steady "
             f"run, **{g['max_rss_late_slope_mb_per_min']} MB/min** over its second half (goal ≈ 0)", "",
             "## Requests", "", "| outcome | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(rep["requests"].items())]
    lines += ["", "## Faults (one at a time, in this order)", "",
              "| fault | target | at (s) | recovery (s) | client errors it explains | detail |", "|---|---|---|---|---|---|"]
    for f in rep["faults"]:
        detail = {k: v for k, v in f.items() if k not in ("kind", "target", "at_s", "recovery_s")}
        explained = rep.get("explained_by_fault", {}).get(f"{f['kind']}:{f['target']}", "")
        lines.append(f"| {f['kind']} | {f['target']} | {f['at_s']} | {f['recovery_s']} | {explained} | {json.dumps(detail)} |")
    lines += ["", "## Records captured vs successful responses", "",
              "| model | ok responses | ok records | lost: unflushed at a kill | lost: dropped at the spool bound (counted) "
              "| lost outside | duplicates | error records (watchdog) |",
              "|---|---|---|---|---|---|---|---|"]
    for m, r in rep["records"].items():
        lines.append(f"| {m} | {r['ok_responses']} | {r['ok_records']} | {r['lost_unflushed_at_kill']} | "
                     f"{r['lost_dropped_counted']} (of {r['dropped_counted']} counted) | {r['lost_outside']} | "
                     f"{r['duplicates']} | {r['error_records']} ({r['watchdog_error_records']}) |")
    lines += ["", "## RSS after warm-up (longest same-pid run)", "",
              "| process | samples | first MB | last MB | slope MB/min | second-half slope MB/min |", "|---|---|---|---|---|---|"]
    for name, s in rep["rss_slopes"].items():
        lines.append(f"| {name} | {s['samples']} | {s['first_mb']} | {s['last_mb']} | {s['slope_mb_per_min']} | "
                     f"{s.get('late_slope_mb_per_min')} |")
    lines += ["", f"tritonserver exit codes: {rep['tritonserver_exit_codes']} (-9 = the server_kill fault; 1 = Triton's "
              "30 s exit timeout, expected after a stub died under traffic: docs/reliability.md); sidecar drained: "
              f"{rep['sidecar_drained']}", ""]
    if rep["unexplained"]:
        lines += ["## Unexplained errors (first 50)", ""] + [f"- {json.dumps(u)}" for u in rep["unexplained"]]
    # The ids themselves, so that a loss is traced to a request, not inferred from a total.
    if rep.get("records_lost_outside"):
        lines += ["", "## Request ids lost outside the fault windows (first 50)", "",
                  ", ".join(rep["records_lost_outside"])]
    if rep.get("records_duplicated"):
        lines += ["", "## Request ids with more than one record (first 50)", "",
                  ", ".join(f"{k} x{v}" for k, v in rep["records_duplicated"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bad-share", type=float, default=0.1)
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="models served and sent traffic")
    parser.add_argument("--kill-models", default="resnet_classifier,sd_img2img",
                        help="models whose stub is killed once each (comma-separated)")
    parser.add_argument("--evict-model", default="sd_depth", help="the model unloaded and loaded again under traffic")
    parser.add_argument("--faults", default=",".join(FAULT_ORDER), help=f"which faults to inject (of {','.join(FAULT_ORDER)})")
    parser.add_argument("--outage-s", type=float, default=15.0, help="how long the S3 store stays unreachable")
    parser.add_argument("--spool-max-mb", type=float, default=4.0, help="the spool bound (CAPTURE_SPOOL_MAX_MB)")
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
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(FAULT_ORDER)
    if unknown:
        parser.error(f"--faults: unknown {sorted(unknown)}; choose from {list(FAULT_ORDER)}")
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        soak = Soak(args.minutes * 60, args.clients, args.bad_share, Path(work),
                    [m for m in args.kill_models.split(",") if m], models=tuple(m for m in args.models.split(",") if m),
                    evict_model=args.evict_model, faults=faults,
                    outage_s=args.outage_s, spool_max_mb=args.spool_max_mb)
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
