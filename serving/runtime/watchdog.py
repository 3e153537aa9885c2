"""Self-healing models: notice a dead Python-backend stub and reload its model.

When a model's stub process dies (OOM kill, a crashing CUDA kernel, `kill -9`), Triton 2.51
keeps the model READY and answers every request for it with
`[500] Stub process '<model>_0_0' is not healthy.` until someone reloads it. This watchdog is
that someone. It runs once per host next to tritonserver (`python -m serving.runtime.watchdog`) and,
every `interval_s`:

1. lists the stub processes whose parent is our tritonserver (`/proc`): a stub that is a
   zombie, or that vanished while its model is still READY, has died. Each instance of a model
   is its own stub (every model runs two): one of them dying is enough, since Triton keeps
   handing batches to the dead instance, and each of those fails;
2. unloads that model at once, so `/v2/models/<m>/ready` (and the local MME's `/ping`) turn
   false while it is down, then loads it again through the repository API (explicit model
   control, which every serving shape of this project uses: see docs/reliability.md), with
   the server's control secret from ``$TRITON_CONTROL_KEY`` (serving/runtime/triton_http.py);
3. ends the leftovers: when requests reached the dead stub, Triton never finishes unloading the
   old load, so the model's OTHER stub (every model runs two instances) would stay alive
   forever beside the reloaded pair, holding a whole copy of the model (a GPU's worth of
   memory for a diffusion pipeline). A stub of the old load still alive `drain_s` after the
   reload has long finished what it held (Triton hands an unloading model no new requests):
   the watchdog kills it;
4. reports it: a WARNING log line, Prometheus counters, one JSON line per event in an events
   file, and one capture record (outcome `error`, code `UNAVAILABLE`) per request Triton failed
   because of the dead stub (counted from Triton's model statistics: Triton never tells us the
   ids of those requests).

Why the stub process and not Triton's errors: with no traffic nothing ever fails, and a model
that nobody calls must still be ready when traffic comes back. Why unload + load and not a
plain load: Triton treats a load of an unchanged, loaded model as a no-op.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from urllib.parse import quote

from serving.common import procfs
from serving.runtime.triton_http import CONTROL_KEY_ENV, TritonError, TritonHTTP, control_key

log = logging.getLogger(__name__)

STUB_NAME = "triton_python_backend_stub"
_INSTANCE = re.compile(r"^(?P<model>.+)_\d+_\d+$")  # Triton names instances <model>_<group>_<n>


@dataclass(frozen=True)
class Stub:
    """One Python-backend stub process of our tritonserver."""

    pid: int
    instance: str  # e.g. resnet_classifier_0_0
    zombie: bool


def list_stubs(server_pid: int) -> dict[int, Stub]:
    """Stub processes whose parent is `server_pid`, by pid (zombies included: a dead stub)."""
    stubs: dict[int, Stub] = {}
    for pid in procfs.pids():
        if procfs.parent_of(pid) != server_pid:
            continue
        state, argv = procfs.state(pid), procfs.cmdline(pid)
        if state is None or argv is None:
            continue
        zombie = state == "Z"
        if zombie and not argv[0]:  # a zombie has no cmdline left: it is our child, it is a stub
            argv = [STUB_NAME.encode()]
        if not argv[0].endswith(STUB_NAME.encode()):
            continue
        # argv: stub model.py shm-region shm-size shm-growth parent-pid backend-dir ipc-size instance kind
        instance = argv[8].decode(errors="replace") if len(argv) > 8 else ""
        stubs[pid] = Stub(pid, instance, zombie)
    return stubs


def orphaned_stubs(server_pid: int) -> list[int]:
    """Live stubs started by `server_pid` (their argv names it) that it no longer parents: the
    server died and they were adopted. A stub notices its parent's death and exits, but one
    caught mid-request can deadlock in the backend's exit path and live on, holding its model's
    memory (seen after a tritonserver SIGKILL in the soak)."""
    out = []
    for pid in procfs.pids():
        argv = procfs.cmdline(pid)
        if (argv and len(argv) > 5 and argv[0].endswith(STUB_NAME.encode()) and argv[5] == str(server_pid).encode()
                and procfs.parent_of(pid) != server_pid and procfs.state(pid) not in (None, "Z")):
            out.append(pid)
    return out


def model_of(instance: str, models: set[str]) -> str | None:
    """The model an instance name belongs to (model names may contain underscores)."""
    m = _INSTANCE.match(instance)
    if m and m.group("model") in models:
        return m.group("model")
    candidates = [name for name in models if instance.startswith(name + "_")]
    return max(candidates, key=len) if candidates else None


def config_instances(config: dict[str, Any]) -> int:
    """How many instances (for a Python-backend model: stubs) Triton runs of a loaded model,
    from its config as Triton returns it (kinds resolved: a KIND_GPU group runs `count`
    instances on each of its `gpus`): one per name `config_instance_names` gives."""
    return len(config_instance_names(config))


def config_instance_names(config: dict[str, Any]) -> list[str]:
    """The names Triton gives the instances of a loaded model (its stubs' last-but-one argv),
    one per stub: ``<group name>_<k>`` for k < count, repeated on each GPU of a KIND_GPU group
    (Triton core names an instance by group and index, not by device)."""
    names: list[str] = []
    for i, g in enumerate(config.get("instance_group") or [{}]):
        group = g.get("name") or f"{config.get('name', '')}_{i}"
        devices = len(g.get("gpus") or [0]) if g.get("kind") == "KIND_GPU" else 1
        names += [f"{group}_{k}" for k in range(int(g.get("count", 1) or 1))] * devices
    return names


def find_server_pid(http_port: int) -> int | None:
    """The tritonserver serving HTTP on `http_port` (when the launcher did not tell us its pid)."""
    for pid in procfs.pids():
        argv = [a.decode(errors="replace") for a in procfs.cmdline(pid) or ()]
        if argv and argv[0].endswith("tritonserver") and f"--http-port={http_port}" in argv:
            return pid
    return None


class SageMakerRoutes:
    """The same calls through the SageMaker routes of Triton's front end (``--allow-sagemaker``,
    ``:8080``), for a tritonserver run with ``--allow-http=false`` (SageMaker's stock MME container):
    ``GET /models`` is the index, ``DELETE /models/<n>`` unloads, ``POST /models
    {"model_name", "url"}`` loads from the url ``GET /models`` gave, ``GET /models/<n>`` is readiness.

    The watchdog works with Triton model names (its stubs are named after them). Triton names a
    model loaded through ``POST /models`` after its ``model_name`` (r23.10+); the local MME
    (deploy/mme) names it after the tarball's top folder and says so in a ``tritonName`` field,
    used when present. Triton's statistics are not reachable on these routes: failed requests
    are not counted in this mode (docs/reliability.md).
    """

    def __init__(self, url: str, key: str | None = None, timeout_s: float = 600.0) -> None:
        self.http = TritonHTTP(url, key, timeout_s)
        self.models: dict[str, tuple[str, str]] = {}  # Triton name -> (SageMaker model name, url)

    def index(self) -> list[dict]:
        listed = (self.http.call("GET", "/models", timeout=10) or {}).get("models", [])
        models = {m.get("tritonName") or m["modelName"]: (m["modelName"], m["modelUrl"]) for m in listed}
        self.models.update(models)  # keep the url of a model we unload: we load it back from there
        return [{"name": name, "state": "READY", "version": "1"} for name in models]

    def statistics(self) -> dict:
        return {}

    def config(self, model: str) -> dict:
        # Only Python-backend models have stubs to watch; this route cannot say otherwise.
        return {"backend": "python"}

    def _key(self, model: str) -> str:
        return self.models.get(model, (model, ""))[0]

    def ready(self, model: str) -> bool:
        try:
            self.http.call("GET", f"/models/{quote(self._key(model), safe='')}", timeout=10)
            return True
        except TritonError:
            return False

    def load(self, model: str) -> None:
        key, url = self.models.get(model, (model, ""))
        if not url:
            raise TritonError(f"no url known for model {model!r}: cannot POST /models")
        body = json.dumps({"model_name": key, "url": url}).encode()
        try:
            self.http.call("POST", "/models", body)
        except TritonError as exc:
            if exc.status != 409:  # 409: already loaded (someone else reloaded it)
                raise

    def unload(self, model: str) -> None:
        self.http.call("DELETE", f"/models/{quote(self._key(model), safe='')}", timeout=60)


@dataclass
class Event:
    """One stub death and what the watchdog did about it (a line of the events file)."""

    model: str
    instance: str
    pid: int
    detected_at: float  # epoch seconds; the stub died at most `interval_s` before
    unloaded_at: float | None = None  # readiness false from here
    ready_at: float | None = None  # readiness true again
    recovery_s: float | None = None  # ready_at - detected_at
    failed_requests: int = 0  # requests Triton failed because of the dead stub
    leftover_pids: list[int] = field(default_factory=list)  # the model's other stubs of the old load
    attempts: int = 0
    error: str | None = None


class WatchdogMetrics:
    """Prometheus counters of the watchdog, on their own registry (and port, if asked)."""

    def __init__(self, port: int = 0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.restarts = Counter("triton_model_restarts", "Models reloaded after their stub process died",
                                ["model"], registry=self.registry)
        self.failed = Counter("triton_model_stub_failed_requests", "Requests Triton failed because a stub had died",
                              ["model"], registry=self.registry)
        self.recovery = Gauge("triton_model_last_recovery_seconds", "Detection to ready again, last restart",
                              ["model"], registry=self.registry)
        self.down = Gauge("triton_model_down", "1 while the watchdog is reloading the model", ["model"],
                          registry=self.registry)
        self.leftovers = Counter("triton_model_leftover_stubs_killed",
                                 "Stubs of a reloaded model's old load that Triton never stopped, killed",
                                 ["model"], registry=self.registry)
        self.port = port
        if port:
            from prometheus_client import start_http_server

            start_http_server(port, addr="127.0.0.1", registry=self.registry)


class Watchdog:
    """Watch one tritonserver's stubs and reload models whose stub died.

    Args:
        url: Triton's HTTP endpoint, host:port (loopback is enough).
        server_pid: tritonserver's pid; its stubs are its children.
        interval_s: poll period; a death is noticed within it.
        events_path: append one JSON line per event here (None: don't).
        spool_dir: capture spool; records for failed requests go there (None: no capture).
        load_timeout_s: give up one load attempt after this long, then retry with backoff.
        settle_s: at most this long between detection and unload, to count (and capture) the
            requests Triton fails on the dead stub (see `settled_fail_counts`).
        client: how to reach Triton (default: its HTTP endpoint at `url`; `SageMakerRoutes`
            for a server with HTTP off).
        drain_s: a stub of a reloaded model's old load still alive this long after the reload
            is killed (see `end_leftovers`).
    """

    def __init__(self, url: str, server_pid: int, *, interval_s: float = 0.5, events_path: Path | None = None,
                 spool_dir: str | None = None, metrics: WatchdogMetrics | None = None,
                 load_timeout_s: float = 600.0, settle_s: float = 3.0,
                 client: TritonHTTP | SageMakerRoutes | None = None, drain_s: float = 30.0) -> None:
        self.url = url
        self.server_pid = server_pid
        self.interval_s = interval_s
        self.events_path = events_path
        self.spool_dir = spool_dir or None
        self.metrics = metrics or WatchdogMetrics(0)
        self.load_timeout_s = load_timeout_s
        self.settle_s = settle_s
        self.drain_s = drain_s
        self._leftovers: dict[int, tuple[str, float]] = {}  # pid -> (model, monotonic deadline)
        self.client = client or TritonHTTP(url, timeout_s=load_timeout_s)
        self.events: list[Event] = []
        self._handled: set[int] = set()  # dead stubs already acted on (zombies stay until Triton exits)
        self._alive: dict[int, tuple[str, str]] = {}  # pid -> (model, instance) seen alive
        self._fail_counts: dict[str, int] = {}  # model -> Triton's failure count at the last healthy poll
        self._capturers: dict[str, Any] = {}
        self._backends: dict[str, str] = {}
        self._instance_names: dict[str, list[str]] = {}  # model -> its instances' names (its config)
        self._stop = threading.Event()

    # -- one poll -----------------------------------------------------------------------------
    def server_alive(self) -> bool:
        state = procfs.state(self.server_pid)
        return state is not None and state != "Z"

    def ready_models(self) -> dict[str, str]:
        """READY models of the repository index: name -> version."""
        return {name: version for name, (version, state) in self.index_states().items() if state == "READY"}

    def index_states(self) -> dict[str, tuple[str, str]]:
        """Every model of the repository index: name -> (version, state)."""
        return {m["name"]: (m.get("version", "1"), m.get("state", "")) for m in self.client.index()}

    def fail_counts(self) -> dict[str, int]:
        try:
            stats = self.client.statistics()
        except TritonError:
            return {}
        counts: dict[str, int] = {}
        for s in stats.get("model_stats", []):
            fail = int(s.get("inference_stats", {}).get("fail", {}).get("count", 0))
            counts[s["name"]] = counts.get(s["name"], 0) + fail
        return counts

    def is_python(self, model: str) -> bool:
        if model not in self._backends:
            try:
                self._backends[model] = self.client.config(model).get("backend", "")
            except TritonError:
                return False
        return self._backends[model] == "python"

    def instances(self, model: str) -> int:
        """How many instances (stubs) Triton runs of `model`, from its config; 1 when the config
        does not say (the SageMaker routes give no config: see `SageMakerRoutes.config`)."""
        if model not in self._instance_names:
            try:
                config = self.client.config(model)
            except TritonError:
                return 1
            self._instance_names[model] = config_instance_names(config)
        return max(1, len(self._instance_names[model]))

    def missing_instance(self, model: str, alive: set[str]) -> str:
        """The instance of `model` that has no live stub, by elimination from its config's
        instance names; ``<model>_?`` when that does not name exactly one."""
        self.instances(model)
        missing = Counter(self._instance_names.get(model, [])) - Counter(i for i in alive if model_of(i, {model}))
        return next(iter(missing)) if sum(missing.values()) == 1 else f"{model}_?"

    def settled_fail_counts(self) -> dict[str, int]:
        """Failure counts once the requests in flight on the dead stub have failed.

        Triton fails them only after its stub health check gives up (1-2 s, measured), and the
        count is gone once the model is unloaded, so the unload waits `settle_s`. Requests that
        arrive meanwhile also fail on the dead stub, and are counted and captured too.
        """
        self._stop.wait(self.settle_s)
        return self.fail_counts()

    def dead_stubs(self, ready: dict[str, str], loading: Iterable[str] = ()) -> list[tuple[str, Stub]]:
        """(model, stub) for every stub of a READY model that died since the last poll.

        `loading`: the index's other models (LOADING, ...): their stubs are learned too, so a
        stub killed right after its model turns READY, before any poll saw it READY, is known
        by pid and instance all the same (it was seen while its model loaded)."""
        stubs = list_stubs(self.server_pid)
        names = set(ready)
        known = names | set(loading)
        dead: list[tuple[str, Stub]] = []
        unknown_zombie = False
        for stub in stubs.values():
            if stub.pid in self._handled:
                continue
            if stub.zombie:
                # A zombie's cmdline is gone: fall back to what we saw while it was alive.
                model, instance = self._alive.get(stub.pid, (model_of(stub.instance, names), stub.instance))
                if model in names:
                    dead.append((model, Stub(stub.pid, instance, True)))
                elif model is None:
                    unknown_zombie = True
                # else: a stub of a model that is not READY (its load failed): Triton's own doing
            else:
                model = model_of(stub.instance, known)
                if model is not None:
                    self._alive[stub.pid] = (model, stub.instance)
        alive_instances = {s.instance for s in stubs.values() if not s.zombie}
        if unknown_zombie:
            # A stub died before we ever saw it alive (we started late): a READY Python-backend
            # model with fewer live stubs than its config has instances is the one it served
            # (every model runs two instances: one of them dying leaves the other alive, yet
            # every request Triton hands the dead one fails).
            orphans = [m for m in names if m not in {d[0] for d in dead} and self.is_python(m)
                       and sum(model_of(i, names) == m for i in alive_instances) < self.instances(m)]
            zombies = [s for s in stubs.values() if s.zombie and s.pid not in self._alive and s.pid not in self._handled]
            for model in orphans:
                dead.append((model, Stub(zombies[0].pid if zombies else 0, self.missing_instance(model, alive_instances),
                                         True)))
            self._handled.update(z.pid for z in zombies)
        for pid, (model, instance) in list(self._alive.items()):
            if pid not in stubs:
                del self._alive[pid]
                # Reaped by someone (an init process adopting it) before we saw the zombie.
                if model in names and instance not in alive_instances and pid not in self._handled:
                    dead.append((model, Stub(pid, instance, True)))
        return dead

    def end_leftovers(self) -> list[int]:
        """Kill the stubs of reloaded models' old loads that outlived their deadline; the pids killed.

        Why they outlive it: Triton unloads a model only once every instance has finished its
        requests, and the requests that reached the dead stub never finish, so the old load
        stays UNLOADING (docs/reliability.md, known limitation) and its live stub is never told
        to stop. Triton hands an unloading model no new requests, and `drain_s` after the
        reload the stub has long answered what it held (and its capture flushed), so killing
        it loses nothing; it frees the memory of a whole model copy.
        """
        killed = []
        for pid, (model, deadline) in list(self._leftovers.items()):
            state = procfs.state(pid)
            if state is None or state == "Z" or procfs.parent_of(pid) != self.server_pid:
                del self._leftovers[pid]  # it stopped (Triton finished the unload after all)
                continue
            if time.monotonic() < deadline:
                continue
            del self._leftovers[pid]
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            killed.append(pid)
            self.metrics.leftovers.labels(model).inc()
            log.warning("stub pid %d of model %s's old load still alive %.0f s after the reload (Triton never "
                        "finishes unloading a load whose stub died with requests): killed it to free its memory",
                        pid, model, self.drain_s)
        return killed

    def poll_once(self) -> list[Event]:
        """One round: detect, reload, report. Returns the events it handled."""
        self.end_leftovers()
        try:
            index = self.index_states()
        except TritonError as exc:
            log.debug("triton not answering: %s", exc)
            return []
        ready = {name: version for name, (version, state) in index.items() if state == "READY"}
        dead = self.dead_stubs(ready, loading=set(index) - set(ready))
        if not dead:
            self._fail_counts.update(self.fail_counts())
            return []
        # A model unloaded (MME eviction) between the index read and the /proc scan reaps its
        # stubs normally: ask again, so an evicted model is never loaded back.
        still = self.ready_models()
        dead = [(m, s) for m, s in dead if m in still]
        return self.recover(dead, ready) if dead else []

    # -- recovery -------------------------------------------------------------------------------
    def recover(self, dead: list[tuple[str, Stub]], ready: dict[str, str]) -> list[Event]:
        now = time.time()
        events: dict[str, Event] = {}
        for model, stub in dead:
            self._handled.add(stub.pid)
            if model in events:  # several instances of one model: one reload
                continue
            events[model] = Event(model=model, instance=stub.instance, pid=stub.pid, detected_at=now)
            log.warning("stub %s (pid %d) of model %s died: unloading and reloading %s",
                        stub.instance, stub.pid, model, model)
        dead_pids = {stub.pid for _, stub in dead}
        for model, event in events.items():
            # Its other stubs belong to the load being replaced: their end is no new event.
            event.leftover_pids = sorted(pid for pid, (m, _) in self._alive.items() if m == model and pid not in dead_pids)
            self._handled.update(event.leftover_pids)
        fails = self.settled_fail_counts()
        for model, event in events.items():
            # Unload first: readiness turns false now; new requests get Triton's clean
            # "unknown model" error instead of reaching the dead stub.
            try:
                self.client.unload(model)
            except TritonError as exc:
                log.error("unloading %s failed: %s", model, exc)
            event.unloaded_at = time.time()
            self.metrics.down.labels(model).set(1)
            event.failed_requests = max(0, fails.get(model, 0) - self._fail_counts.get(model, fails.get(model, 0)))
        for model, event in events.items():
            self.reload(event)
            deadline = time.monotonic() + self.drain_s
            self._leftovers.update({pid: (model, deadline) for pid in event.leftover_pids})
            self.capture_failed(event, ready.get(model, "1"))
            self.report(event)
        return list(events.values())

    def reload(self, event: Event) -> None:
        delay = 1.0
        while not self._stop.is_set():
            event.attempts += 1
            try:
                self.client.load(event.model)
                if self.client.ready(event.model):
                    event.ready_at = time.time()
                    event.recovery_s = round(event.ready_at - event.detected_at, 3)
                    event.error = None
                    return
            except TritonError as exc:
                event.error = str(exc)[:500]
                log.error("reloading %s failed (attempt %d): %s; retrying in %.0f s",
                          event.model, event.attempts, exc, delay)
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def report(self, event: Event) -> None:
        self._fail_counts.pop(event.model, None)  # the reloaded model's statistics start again
        self._instance_names.pop(event.model, None)  # and its config is read again (it may have changed)
        self.metrics.down.labels(event.model).set(0 if event.ready_at else 1)
        self.metrics.restarts.labels(event.model).inc()
        self.metrics.failed.labels(event.model).inc(event.failed_requests)
        if event.recovery_s is not None:
            self.metrics.recovery.labels(event.model).set(event.recovery_s)
            log.warning("model %s ready again %.1f s after its stub %s died (%d request(s) failed meanwhile)",
                        event.model, event.recovery_s, event.instance, event.failed_requests)
        self.events.append(event)
        if self.events_path is not None:
            with open(self.events_path, "a") as fh:
                fh.write(json.dumps(asdict(event)) + "\n")

    def capture_failed(self, event: Event, version: str) -> None:
        """One error record per request the dead stub failed, so the store's counts add up."""
        if not self.spool_dir or not event.failed_requests:
            return
        from monitoring.capture import Capturer

        capturer = self._capturers.get(event.model)
        if capturer is None:
            capturer = self._capturers[event.model] = Capturer(self.spool_dir, event.model, version)
        message = (f"model {event.model} unavailable: its stub process {event.instance} (pid {event.pid}) "
                   "died; reloaded by the watchdog")
        key = uuid.uuid4().hex[:8]
        for n in range(event.failed_requests):
            # Triton does not hand us the ids of the requests it failed: name them by event.
            capturer.submit({"request_id": f"watchdog:{key}:{n}", "model": event.model, "model_version": version,
                             "ts_ms": int(event.detected_at * 1000), "outcome": "error",
                             "error_code": "UNAVAILABLE", "error_message": message})
        capturer.flush(timeout=10.0)

    # -- loop -------------------------------------------------------------------------------------
    def run(self) -> int:
        """Poll until stopped or until tritonserver exits (its supervisor restarts both)."""
        first = True
        while not self._stop.is_set():
            if not self.server_alive():
                log.warning("tritonserver pid %d is gone: watchdog exits", self.server_pid)
                break
            try:
                self.poll_once()
            except Exception:  # the watchdog must outlive any one bad poll
                log.exception("watchdog poll failed")
            if first:
                first = False
                log.info("watching tritonserver pid %d at %s every %.2f s: %d stub(s) of %d model(s)", self.server_pid,
                         self.url, self.interval_s, len(self._alive), len({m for m, _ in self._alive.values()}))
            self._stop.wait(self.interval_s)
        self.close()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for capturer in self._capturers.values():
            capturer.close(timeout=10.0)


def server_options(server_pid: int) -> dict[str, str] | None:
    """tritonserver's ``--name=value`` options from its command line (None: no such process)."""
    raw = procfs.cmdline(server_pid)
    if raw is None:
        return None
    argv = [a.decode(errors="replace") for a in raw]
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def _local_url(address: str, port: str) -> str:
    return f"{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{port}"


def server_http_url(server_pid: int) -> str | None:
    """Triton's HTTP endpoint from its command line (None: HTTP disabled, or no such process)."""
    opts = server_options(server_pid)
    if opts is None or opts.get("allow-http", "true").lower() in ("false", "0"):
        return None
    return _local_url(opts.get("http-address", "0.0.0.0"), opts.get("http-port", "8000"))


def server_sagemaker_url(server_pid: int) -> str | None:
    """Triton's SageMaker routes from its command line (None: not enabled, or no such process)."""
    opts = server_options(server_pid)
    if opts is None or opts.get("allow-sagemaker", "false").lower() not in ("true", "1"):
        return None
    return _local_url(opts.get("sagemaker-address", "0.0.0.0"), opts.get("sagemaker-port", "8080"))


def hold_lock(path: str) -> Any:
    """One watchdog per tritonserver: an exclusive flock held for our lifetime (None: taken)."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.runtime.watchdog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="", help="Triton HTTP endpoint host:port (default: from the server's command line)")
    parser.add_argument("--server-pid", "--exit-with-pid", type=int, default=0,
                        help="tritonserver's pid; the watchdog exits when it is gone "
                             "(default: the tritonserver whose --http-port matches --url)")
    parser.add_argument("--sagemaker-url", default="",
                        help="heal through SageMaker's routes at host:port (GET/DELETE/POST /models) instead of "
                             "Triton's HTTP API (default: used when the server has HTTP off and --allow-sagemaker)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds after a reload before a stub of the model's old load that Triton never "
                             "stopped is killed")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port on 127.0.0.1 (0: none)")
    parser.add_argument("--events", default="", help="append one JSON line per restart to this file")
    parser.add_argument("--spool", default=os.environ.get("CAPTURE_SPOOL_DIR", ""),
                        help="capture spool for records of failed requests (default: $CAPTURE_SPOOL_DIR)")
    parser.add_argument("--lock", default="", help="hold an exclusive flock on this file; exit at once if taken")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for tritonserver to appear")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    lock = hold_lock(args.lock) if args.lock else None
    if args.lock and lock is None:
        log.info("another watchdog holds %s: exiting", args.lock)
        return 0
    pid, url = args.server_pid, args.url
    deadline = time.monotonic() + args.wait
    while not pid:
        pid = find_server_pid(int((url or "127.0.0.1:8000").rsplit(":", 1)[1])) or 0
        if not pid:
            if time.monotonic() > deadline:
                log.error("no tritonserver with --http-port matching %s", url)
                return 1
            time.sleep(1.0)  # waiting for a process we do not own to appear
    client: SageMakerRoutes | None = None
    sagemaker_url = args.sagemaker_url
    if not sagemaker_url and not url and not server_http_url(pid):
        sagemaker_url = server_sagemaker_url(pid) or ""
    if sagemaker_url:
        url, client = sagemaker_url, SageMakerRoutes(sagemaker_url)
        log.info("healing through SageMaker's routes at %s (GET/DELETE/POST /models)", sagemaker_url)
    url = url or server_http_url(pid)
    if client is None and "http-restricted-api" in (server_options(pid) or {}) and not control_key():
        # Every load/unload would be refused (403): say why now, not at the first dead stub.
        log.error("tritonserver pid %d restricts its repository API but this watchdog was given no $%s: "
                  "it cannot reload models", pid, CONTROL_KEY_ENV)
    if not url:
        log.error("tritonserver pid %d has neither an HTTP endpoint (--allow-http=false) nor SageMaker routes "
                  "(--allow-sagemaker): nothing to reload models through; not watching", pid)
        return 1
    try:
        metrics = WatchdogMetrics(args.metrics_port)
    except OSError as exc:  # a second server on this host: its watchdog still heals, unexposed
        log.warning("watchdog metrics port %d: %s; counters in the log and events file only", args.metrics_port, exc)
        metrics = WatchdogMetrics(0)
    watchdog = Watchdog(url, pid, interval_s=args.interval, spool_dir=args.spool,
                        events_path=Path(args.events) if args.events else None, metrics=metrics, client=client,
                        drain_s=args.drain)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps where the watchdog is
    signal.signal(signal.SIGTERM, lambda *_: watchdog.stop())
    signal.signal(signal.SIGINT, lambda *_: watchdog.stop())
    code = watchdog.run()
    if lock is not None and not watchdog.server_alive():
        # Its tritonserver is gone, so nothing will ever watch that pid again: without this, one
        # lock file per server that ever ran piles up in the host-services directory. (While
        # the server lives the file stays: unlinking a lock others may open is racy.)
        try:
            os.unlink(args.lock)
        except OSError:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
