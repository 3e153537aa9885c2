"""Per-host singleton services, started and kept alive by the model processes themselves.

On SageMaker's stock Triton container only `tritonserver` runs and nothing of ours can start a
second process, so the models do it: every model process (Triton Python-backend stub) calls
:func:`start_for_model` from ``initialize``. For each service in the host's list it checks the
service's lock file and, if no process holds it, spawns the service **detached** (own session,
stdin closed, log to a file), so it outlives the model that started it (MME unloads models at
any time). A daemon thread in every model process repeats the check every
``HOST_SERVICES_CHECK_S`` seconds (default 5), so a service that dies is restarted by whichever
model process looks first. A second lock (``<lock>.start``), taken by the model process that
spawns and inherited by the process it spawns, keeps the others from spawning more candidates
while that one imports; a candidate that still loses (to one started by hand) exits at once
because the lock is taken. Every restart is logged as a WARNING by the model process that made
it, also when the service died before a check saw it run: in the
stub only WARNING and above reach tritonserver's log (no handler is set; Python's last-resort
handler writes them to the stub's stderr, flushed per record).
Services get the tritonserver pid (the stub's parent) and are expected to drain and exit when
it is gone (the sidecar's ``--exit-with-pid``).

The same code path runs in every shape: ``make serve``, ``make mme``, the stock SageMaker MME
and ``make rehearse``. In the docker image the entrypoint supervisor runs the sidecar itself and
sets ``HOST_SERVICES_SKIP=sidecar`` (see deploy/docker/entrypoint.py).

Adding a service is one provider function ``(HostSettings) -> HostService | None`` (None: not
wanted on this host) passed to :func:`register_service` at import time; `sidecar_service` and
`watchdog_service` below are the two there are. A service's contract: take
``fcntl.flock(LOCK_EX | LOCK_NB)`` on its ``lock`` at start and exit (any status) if it is held;
hold it until exit; exit when the tritonserver pid it is given is gone (the sidecar's
``--exit-with-pid``, the watchdog's ``--server-pid``).

Settings come from the model's config.pbtxt parameters (any key starting with ``CAPTURE_``,
``MONITORING_`` or ``HOST_SERVICES_``), then the environment; parameters win because SageMaker
sets the container environment per endpoint, not per model. The first model whose process
starts a service decides its settings (one service per host).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.capture.private import private_dir
import monitoring.capture.sidecar_command as sidecar_command
from serving.runtime.triton_http import CONTROL_KEY_ENV

log = logging.getLogger(__name__)

SETTING_PREFIXES = ("CAPTURE_", "MONITORING_", "HOST_SERVICES_")
DEFAULT_CHECK_S = 5.0
# Where records wait for the sidecar when a store is set but no spool: local disk of the host.
DEFAULT_SPOOL_DIR = os.path.join(tempfile.gettempdir(), "triton-capture-spool")
SIDECAR_LOCK = sidecar_command.LOCK_NAME


@dataclass(frozen=True)
class HostService:
    """One per-host singleton: run ``argv`` unless a process holds an exclusive flock on ``lock``."""

    name: str
    argv: tuple[str, ...]
    lock: str
    env: Mapping[str, str] = field(default_factory=dict)  # added to the model process's environment
    log_path: str | None = None  # default: <state_dir>/<name>.log
    # Hand it tritonserver's control key ($TRITON_CONTROL_KEY, serving/runtime/triton_http.py)? Only a
    # service that loads/unloads models needs it; the others run without it in their environment.
    control_key: bool = False


@dataclass(frozen=True)
class HostSettings:
    """What providers see: merged settings, the interpreter to run, where state goes."""

    values: Mapping[str, str]
    python: str
    server_pid: int
    state_dir: str

    def get(self, key: str, default: str = "") -> str:
        value = self.values.get(key)
        return default if value is None or value.strip() == "" else value.strip()


Provider = Callable[[HostSettings], "HostService | None"]
_PROVIDERS: list[Provider] = []


def register_service(provider: Provider) -> Provider:
    """Add a provider to this host's list (idempotent); usable as a decorator."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)
    return provider


def merged_settings(parameters: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment's settings overridden by the model's config.pbtxt parameters of the same names."""
    env = dict(os.environ if environ is None else environ)
    for key, value in (parameters or {}).items():
        if key.startswith(SETTING_PREFIXES) and value is not None and str(value).strip() != "":
            env[key] = str(value)
    if env.get("CAPTURE_STORE", "").strip() and not env.get("CAPTURE_SPOOL_DIR", "").strip():
        env["CAPTURE_SPOOL_DIR"] = DEFAULT_SPOOL_DIR
    return env


def python_executable() -> str:
    """The interpreter this process runs: inside the Triton stub ``sys.executable`` may be the
    stub or empty, so fall back to the ``python3`` of the active (execution) environment."""
    exe = sys.executable or ""
    if os.path.basename(exe).startswith("python") and os.access(exe, os.X_OK):
        return exe
    for candidate in (os.path.join(sys.prefix, "bin", "python3"), shutil.which("python3") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return "python3"


def default_state_dir(settings: Mapping[str, str]) -> str:
    return settings.get("HOST_SERVICES_DIR") or os.path.join(tempfile.gettempdir(), "triton-host-services")


def host_settings(parameters: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None,
                  server_pid: int | None = None) -> HostSettings:
    values = merged_settings(parameters, environ)
    return HostSettings(values=values, python=python_executable(),
                        server_pid=os.getppid() if server_pid is None else server_pid,
                        state_dir=default_state_dir(values))


def services(settings: HostSettings) -> list[HostService]:
    """The services this host should run, minus those named in ``HOST_SERVICES_SKIP``."""
    skip = {s.strip() for s in settings.get("HOST_SERVICES_SKIP").split(",") if s.strip()}
    if "all" in skip:
        return []
    out = []
    for provider in _PROVIDERS:
        try:
            service = provider(settings)
        except ValueError as exc:  # a bad setting: say so at model load, keep serving
            log.error("host service %s not started: %s", getattr(provider, "__name__", provider), exc)
            continue
        if service is not None and service.name not in skip:
            out.append(service)
    return out


def running(service: HostService) -> bool:
    """Whether some process holds the service's lock (probed with a shared, non-blocking flock)."""
    try:
        fd = os.open(service.lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock too
    return False


def holder_pid(service: HostService) -> int | None:
    """The pid the running service wrote into its lock file (the sidecar does), if any."""
    try:
        text = Path(service.lock).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def take_start_lock(service: HostService) -> int | None:
    """An exclusive flock on the service's start lock (``<lock>.start``), as an fd to hand to the
    process about to be spawned; None when another process holds it: a candidate that some model
    process spawned is still starting (or runs). The spawned process inherits the fd and holds the
    lock until it exits, so while it imports (seconds, on a busy host) no other model process
    spawns a second candidate: one start per death, and the keeper that made it logs it."""
    path = service.lock + ".start"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def spawn(service: HostService, state_dir: str, start_lock: int | None = None) -> subprocess.Popen:
    """Start ``service`` detached from this process: new session, no stdin, output to its log;
    ``start_lock`` (from :func:`take_start_lock`) is inherited by it."""
    private_dir(state_dir)  # holds the code snapshots services run: never another user's
    os.makedirs(os.path.dirname(service.lock) or ".", exist_ok=True)
    log_path = service.log_path or os.path.join(state_dir, f"{service.name}.log")
    env = dict(os.environ)
    if not service.control_key:
        env.pop(CONTROL_KEY_ENV, None)
    env.update(service.env)
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(service.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True,
                                pass_fds=() if start_lock is None else (start_lock,))


def exit_status(returncode: int | None) -> str:
    """Popen's returncode in words: ``status 1`` or ``signal 9`` (a negative code is a signal)."""
    if returncode is None:
        return "still running"
    return f"signal {-returncode}" if returncode < 0 else f"status {returncode}"


def wait_running(service: HostService, timeout: float) -> bool:
    """Wait (polling the lock, with a deadline) until some process runs ``service``."""
    deadline = time.monotonic() + timeout
    while not running(service):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)  # polling another process's lock, with a deadline
    return True


def wait_stopped(service: HostService, timeout: float) -> bool:
    """Wait (polling the lock, with a deadline) until no process runs ``service``."""
    deadline = time.monotonic() + timeout
    while running(service):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)  # polling another process's lock, with a deadline
    return True


class HostServices:
    """The keeper inside one model process: ensures each service runs, now and every ``check_s``."""

    def __init__(self, settings: HostSettings, wanted: list[HostService], check_s: float = DEFAULT_CHECK_S) -> None:
        self.settings = settings
        self.services = wanted
        self.check_s = check_s
        self.children: dict[str, subprocess.Popen] = {}  # service name -> the process we last spawned
        self.last_seen: dict[str, float] = {}
        self.spawned_at: dict[str, float] = {}  # service name -> when we last spawned it (monotonic)
        self.restarts: dict[str, int] = {s.name: 0 for s in wanted}
        self.checks = 0  # after the first (at model load), a service this process must start had gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> list[str]:
        """Start every service that is not running; returns the names started."""
        started = []
        for service in self.services:
            now = time.monotonic()
            if running(service):
                self.last_seen[service.name] = now
                continue
            previous = self.children.get(service.name)
            if previous is not None and previous.poll() is None:
                continue  # ours, still starting up (it takes the lock after its imports)
            try:
                start_lock = take_start_lock(service)
            except OSError as exc:
                log.error("cannot start host service %s: its start lock %s.start: %s", service.name, service.lock, exc)
                continue
            if start_lock is None:
                continue  # another model process's, still starting up: that process logs the start
            try:
                child = spawn(service, self.settings.state_dir, start_lock)
            except OSError as exc:
                log.error("cannot start host service %s (%s): %s", service.name, " ".join(service.argv), exc)
                continue
            finally:
                os.close(start_lock)  # the child holds it now (or nobody, if it did not start)
            self.children[service.name] = child  # the previous one is reaped (poll) above
            spawned_at, self.spawned_at[service.name] = self.spawned_at.get(service.name, now), now
            started.append(service.name)
            seen = self.last_seen.pop(service.name, None)
            if seen is not None:
                self.restarts[service.name] += 1
                # Downtime is bounded by the check interval: this is the number to watch.
                log.warning("host service %s died: restarted as pid %d, %.1f s after it was last seen running",
                            service.name, child.pid, now - seen)
            elif previous is not None:
                # The process we started is gone and nobody holds the lock: it died (or crashed at
                # start) before a check of ours saw it run (a busy model process checks late). Still a
                # restart: a WARNING, since INFO reaches no log in the stub (no handler is set there).
                self.restarts[service.name] += 1
                log.warning("host service %s died: restarted as pid %d; pid %d, started by this process %.1f s "
                            "earlier, exited (%s) before a check saw it running", service.name, child.pid,
                            previous.pid, now - spawned_at, exit_status(previous.returncode))
            elif self.checks:
                # It ran (another model process started it) and is gone, between two checks of ours.
                self.restarts[service.name] += 1
                log.warning("host service %s died: restarted as pid %d; started by another model process, it "
                            "ended before a check of this one saw it running", service.name, child.pid)
            else:
                log.info("host service %s was not running: started pid %d (pid %d checks it every %.0f s)",
                         service.name, child.pid, os.getpid(), self.check_s)
        self.checks += 1
        return started

    def start(self) -> "HostServices":
        self.check()
        if self.check_s > 0 and self.services:
            self._thread = threading.Thread(target=self._loop, name="host-services", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.check_s):
            try:
                self.check()
            except Exception:  # the keeper must never take the model down
                log.exception("host services check failed")

    def close(self) -> None:
        """Stop checking; the services keep running for the other models on the host."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


def start_for_model(parameters: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> HostServices:
    """Called from every model's ``initialize``: ensure this host's services run, keep checking."""
    settings = host_settings(parameters, environ)
    check_s = float(settings.get("HOST_SERVICES_CHECK_S", str(DEFAULT_CHECK_S)))
    return HostServices(settings, services(settings), check_s=check_s).start()


def _package_root(name: str) -> str | None:
    """The sys.path entry that holds package ``name`` (without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]).parent)


def snapshot_package(package: Path, dest_root: Path) -> str:
    """Copy a pure-Python package out of a model directory, which an MME deletes when it unloads
    the model, into ``dest_root/<content digest>/``; returns the sys.path entry to use."""
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(package)).encode() + b"\0" + f.read_bytes() + b"\0")
    dest = dest_root / digest.hexdigest()[:16]
    if not (dest / package.name / "__init__.py").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=private_dir(dest_root)))
        for f in files:
            target = tmp / package.name / f.relative_to(package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        try:
            os.rename(tmp, dest)  # atomic: two model processes may snapshot at once
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # the other one won
    return str(dest)


def _service_env(settings: HostSettings) -> dict[str, str]:
    """PYTHONPATH for a service: the stub runs Python isolated, so the service's interpreter must
    be told where our packages are. Both packages, always: the sidecar uses the contract modules
    in serving (procfs), the watchdog the capture contract in monitoring. A package shipped
    inside an MME model directory is snapshotted first (the MME deletes that dir on unload)."""
    roots = []
    for name in ("serving", "monitoring"):
        root = _package_root(name)
        if root and os.path.isfile(os.path.join(root, "config.pbtxt")):
            root = snapshot_package(Path(root) / name, Path(settings.state_dir) / "code")
        if root and root not in roots:
            roots.append(root)
    path = os.pathsep.join([*roots, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    return {"PYTHONPATH": path} if path else {}


def sidecar_service(settings: HostSettings) -> HostService | None:
    """The capture sidecar (spool -> Parquet store), wanted when capture is on and a store is set.

    Without ``CAPTURE_STORE`` nothing drains the spool on this host unless someone runs the
    sidecar by hand; the spool bound (``CAPTURE_SPOOL_MAX_MB``) keeps that from filling the disk.
    """
    spool, store = settings.get("CAPTURE_SPOOL_DIR"), settings.get("CAPTURE_STORE")
    if not spool or not store:
        return None
    # ValueError (a bad port) here, at model load, not in the detached process's log.
    # server_pid 0: a supervisor runs it (deploy/docker/entrypoint.py) and stops it itself.
    argv = sidecar_command.argv(settings, python=settings.python, exit_with_pid=settings.server_pid)
    env = _service_env(settings)
    return HostService(name="sidecar", argv=tuple(argv), lock=sidecar_command.lock_path(spool),
                       env=env, log_path=settings.get("CAPTURE_SIDECAR_LOG") or None)


register_service(sidecar_service)


def watchdog_service(settings: HostSettings) -> HostService | None:
    """The stub watchdog (serving/runtime/watchdog.py): reloads a model whose stub process died.

    One per tritonserver (the lock names its pid); off with ``HOST_SERVICES_SKIP=watchdog``.
    """
    if settings.server_pid <= 0:
        return None
    argv = [settings.python, "-m", "serving.runtime.watchdog", "--server-pid", str(settings.server_pid),
            "--lock", os.path.join(settings.state_dir, f"watchdog-{settings.server_pid}.lock"), "--interval", "0.25",
            "--events", os.path.join(settings.state_dir, f"watchdog-{settings.server_pid}.events.jsonl"),
            "--metrics-port", str(int(settings.get("HOST_SERVICES_WATCHDOG_METRICS_PORT", "8093")))]
    if settings.get("CAPTURE_SPOOL_DIR"):
        argv += ["--spool", os.path.abspath(settings.get("CAPTURE_SPOOL_DIR"))]
    if settings.get("HOST_SERVICES_WATCHDOG_DRAIN_S"):  # seconds a reloaded model's old stubs may finish in
        argv += ["--drain", str(float(settings.get("HOST_SERVICES_WATCHDOG_DRAIN_S")))]
    env = _service_env(settings)
    return HostService(name="watchdog", argv=tuple(argv), env=env, control_key=True,
                       lock=os.path.join(settings.state_dir, f"watchdog-{settings.server_pid}.lock"))


register_service(watchdog_service)
