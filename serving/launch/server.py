"""Run the bundled `tritonserver` (from the nvidia-pytriton wheel) on `model_repository/`.

`python -m serving.launch.server start` starts it in the background, waits until every model is
ready and prints where to look; `stop` stops it; `run` runs it in the foreground. Tests use
`TritonProcess` directly with free ports. On GPU hosts the same repository runs in NVIDIA's
Triton container instead (deploy/docker/).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.capture.private import private_dir
from serving import MODEL_NAMES
from serving.common.load_marker import LoadWatch
from serving.launch.instances import instance_repository
from serving.runtime import host_services
from serving.runtime.deadline import HEADER_FORWARD_PATTERN
from serving.runtime.triton_http import (CONTROL_HEADER, CONTROL_KEY_ENV, TritonError, TritonHTTP, has_restriction,
                                         hide_in_argv, new_control_key, restricted_args)

ROOT = Path(__file__).resolve().parent.parent.parent
STATE_DIR = Path(os.environ.get("SERVING_RUN_DIR") or ROOT / "var" / "run")  # pid and key files of `make serve`
KEY_FILE = STATE_DIR / "tritonserver.key"  # `make serve`'s control key (docs/security.md)


#: The ports `free_port` handed out last, never handed out again while they are this recent.
_RECENT_PORTS: collections.deque[int] = collections.deque(maxlen=64)
_PORTS_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it): tests and tools never use fixed ports.

    Never one of the last 64 it returned: callers take a server's HTTP, gRPC and metrics ports in a
    row before anything binds them, and the OS can give the same free port twice (a P2 run's
    tritonserver refused to start on HTTP and gRPC at one port, 2026-12-06)."""
    with _PORTS_LOCK:
        while True:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _RECENT_PORTS:
                _RECENT_PORTS.append(port)
                return port


def pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed: run `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def backend_dir(build_dir: Path = ROOT / "build" / "triton") -> Path:
    """A backends/ directory whose python backend has the stub for this interpreter's version.

    The wheel ships stubs for Python 3.8-3.13 beside the backend; the backend runs the stub
    found next to libtriton_python.so, so we assemble that directory once.
    """
    src = pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise RuntimeError(f"no Triton Python backend stub for Python {version} in {stub.parent.parent}")
    target = build_dir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source, dst in ((src / "backends" / "python" / "libtriton_python.so", target / "libtriton_python.so"),
                        (src / "backends" / "python" / "triton_python_backend_utils.py",
                         target / "triton_python_backend_utils.py"),
                        (stub, target / "triton_python_backend_stub")):
        if not dst.exists() or dst.read_bytes() != source.read_bytes():
            shutil.copy2(source, dst)
    return build_dir / "backends"


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the Python stub needs: this venv's packages and the repo on sys.path."""
    env = dict(os.environ)
    prefix = Path(sys.prefix)
    env["VIRTUAL_ENV"] = str(prefix)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), site, env.get("PYTHONPATH", "")) if p)
    # The stub must load the libpython of *this* interpreter (a system libpython of another
    # patch release breaks C extensions such as _ssl), and the wheel's bundled libraries, which
    # its relative RPATH no longer finds from our copy of the stub.
    libpython_dir = sysconfig.get_config_var("LIBDIR") or ""
    libs = pytriton_dir().parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libpython_dir, str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    # Two CPU threads per model process keeps five models from oversubscribing small hosts.
    env.setdefault("OMP_NUM_THREADS", str(max(1, min(4, os.cpu_count() or 1))))
    env.update(extra or {})
    return env


class LoadHang(RuntimeError):
    """tritonserver's Python backend hung a load after the model's initialize() returned
    (serving/common/load_marker.py): the server will never become live by itself."""

    def __init__(self, hung: dict[str, float], log_path: Path) -> None:
        self.models = sorted(hung)
        detail = ", ".join(f"{m} ({s:.0f} s ago)" for m, s in sorted(hung.items()))
        super().__init__(f"tritonserver has not marked loaded the model(s) whose every instance returned from "
                         f"initialize(): {detail}; the Python backend's stub handshake hung (docs/serving.md "
                         f"\"A load that hangs\"); see {log_path}")


@dataclass
class TritonProcess:
    repo: Path = ROOT / "model_repository"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log_path: Path = ROOT / "var" / "log" / "tritonserver.log"
    models: tuple[str, ...] = MODEL_NAMES
    explicit: bool = False  # start with no model loaded (load/unload through the repository API)
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    # The whole environment instead of server_env(extra_env), and the working directory: a
    # stock-container rehearsal (bench/rehearse.py) hides this venv and checkout from the stub.
    environ: dict[str, str] | None = None
    cwd: Path = ROOT
    # The control-plane secret (serving/runtime/triton_http.py, docs/security.md): fresh per server,
    # required on the repository, config and shared-memory APIs. None: unrestricted (only for
    # a caller that passes its own --http-restricted-api in extra_args).
    control_key: str | None = field(default_factory=new_control_key, repr=False)
    # Instances per model instead of what the configs say (serving/launch/instances.py): served
    # from a derived repository next to the log (`instances_repo`), its configs rewritten.
    instances: int | None = None
    # A model whose every instance returned from initialize() this long ago and is still not
    # loaded hung in the Python backend (serving/common/load_marker.py): `start` restarts.
    hang_s: float = 120.0
    proc: subprocess.Popen | None = None
    _derived: Path | None = field(default=None, init=False, repr=False)

    @property
    def instances_repo(self) -> Path:
        return self.log_path.parent / f"model_repository-{self.instances}-instances"

    def served_repo(self) -> Path:
        """The repository tritonserver is given: `repo`, or its derivation with `instances`."""
        if self.instances is None:
            return self.repo
        if self._derived is None:  # built once per server object: rebuilding under a live server would break it
            models = sorted(p.parent.name for p in Path(self.repo).glob("*/config.pbtxt"))
            self._derived = instance_repository(self.repo, self.instances, self.instances_repo, models)
        return self._derived

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [
            str(pytriton_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.served_repo()}",
            f"--backend-directory={backend_dir()}",
            f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}", "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1", "--log-verbose=0",
            # The deadline header reaches the model as a request parameter (serving/runtime/deadline.py).
            f"--http-header-forward-pattern={HEADER_FORWARD_PATTERN}",
            f"--grpc-header-forward-pattern={HEADER_FORWARD_PATTERN}",
        ]
        # Always explicit model control: it is what lets the watchdog (serving/runtime/watchdog.py)
        # reload a model whose stub died, and what SageMaker's Triton container runs with.
        cmd.append("--model-control-mode=explicit")
        if not self.explicit:
            cmd += [f"--load-model={m}" for m in self.models]
        # ... and explicit control loads code (a load may carry its own model.py): locked.
        if self.control_key and not has_restriction(list(self.extra_args)):
            cmd += restricted_args(self.control_key)
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """tritonserver's environment: the key goes to its model processes, which hand it to the
        watchdog they start (serving/runtime/host_services.py), and to no one else."""
        env = dict(self.environ) if self.environ is not None else server_env(self.extra_env)
        if self.control_key:
            env[CONTROL_KEY_ENV] = self.control_key
        return env

    def control(self, timeout_s: float = 600.0) -> TritonHTTP:
        """A client of this server's HTTP API that holds its control key."""
        return TritonHTTP(self.http_url, self.control_key or "", timeout_s)

    def start(self, wait_s: float = 300.0, hang_restarts: int = 1) -> "TritonProcess":
        """Start tritonserver and wait (``wait_s`` a try) until it is live and its models ready.
        A load that hung in the Python backend after the model's own initialize() returned
        (:class:`LoadHang`) gets the server stopped and started again, up to ``hang_restarts``
        times, with a warning on stderr. Any other failure to start stops the server too (its
        stubs included) before the error is raised: nothing is left running."""
        # Readiness is probed over HTTP: another server already on our port would look ready.
        import socket

        for port in (self.http_port, self.grpc_port, self.metrics_port):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(f"port {port} is already in use on 127.0.0.1 (another tritonserver? `make stop`)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(hang_restarts + 1):
            log = open(self.log_path, "ab")
            start_offset = log.tell()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.environment(), cwd=self.cwd, start_new_session=True)
            log.close()
            try:
                self.wait_ready(wait_s, log_offset=start_offset)
                break
            except LoadHang as exc:
                self.stop(timeout=10)
                if attempt == hang_restarts:
                    raise
                print(f"warning: {exc}; starting tritonserver again ({attempt + 1} of {hang_restarts} restarts)",
                      file=sys.stderr)
            except BaseException:
                self.stop(timeout=10)
                raise
        # Live means its options are parsed: the key can leave its (world-readable) command line.
        if self.control_key and not hide_in_argv(self.proc.pid, self.control_key):
            print(f"warning: could not hide the control key in tritonserver's command line (pid {self.proc.pid}): "
                  "local users can read it with ps; see docs/security.md", file=sys.stderr)
        return self

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return 0

    def wait_ready(self, wait_s: float, log_offset: int = 0) -> None:
        """Until the server is live and every model in ``models`` ready, at most ``wait_s``; the
        log from ``log_offset`` (this start's part of it) is read for a load that hung
        (:class:`LoadHang`, ``hang_s``)."""
        deadline = time.monotonic() + wait_s
        pending = [] if self.explicit else list(self.models)
        repo = self.served_repo()
        warmed = frozenset(p.parent.name for p in Path(repo).glob("*/config.pbtxt") if "model_warmup" in p.read_text())
        watch = LoadWatch(self.log_path, hang_s=self.hang_s, offset=log_offset, ignore=warmed)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_tail())
            watch.poll()
            hung = watch.hung()
            if hung:
                raise LoadHang(hung, self.log_path)
            if self._get("/v2/health/live") == 200:
                pending = [m for m in pending if self._get(f"/v2/models/{m}/ready") != 200]
                if not pending:
                    return
                failed = self.failed_models()
                if failed:
                    raise RuntimeError(f"models failed to load: {failed}; see {self.log_path}:\n" + self.log_tail())
            time.sleep(0.2)  # polling a process we started; not test synchronisation
        raise TimeoutError(f"models not ready after {wait_s}s: {pending}; see {self.log_path}:\n" + self.log_tail())

    def failed_models(self) -> dict[str, str]:
        """Models the repository index reports UNAVAILABLE, with Triton's reason."""
        try:
            index = self.control(timeout_s=5).index()
        except (TritonError, ValueError):  # not answering yet: nothing failed that we know of
            return {}
        return {m["name"]: m.get("reason", "") for m in index
                if m.get("state") == "UNAVAILABLE" and m["name"] in self.models}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0, orphan_grace_s: float = 10.0) -> int | None:
        """Stop tritonserver (SIGTERM, then SIGKILL after `timeout`) or reap it if it died, and
        end any stub it left behind: stubs outliving their server by `orphan_grace_s` (time to
        notice and flush their capture records) are killed (`end_orphaned_stubs`)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # graceful: finishes in-flight requests
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        end_orphaned_stubs(self.proc.pid, orphan_grace_s)
        return self.proc.returncode


def end_orphaned_stubs(server_pid: int, grace_s: float = 10.0) -> list[int]:
    """SIGKILL the stubs of the dead tritonserver `server_pid` still alive after `grace_s`;
    returns their pids. A stub exits by itself when its server dies, except one deadlocked in
    the Python backend's exit path (serving/runtime/watchdog.py `orphaned_stubs`)."""
    from serving.runtime.watchdog import orphaned_stubs

    deadline = time.monotonic() + grace_s
    while (left := orphaned_stubs(server_pid)) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling processes we cannot wait on (not our children)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        print(f"killed {len(left)} stub(s) of tritonserver pid {server_pid} still alive {grace_s:.0f} s after it "
              f"exited: {left}", file=sys.stderr)
    return left


def write_key_file(key: str, path: Path | None = None) -> Path:
    """The control key for the operator of `make serve`, readable by this user only (0600 from
    its creation: never a moment with wider rights)."""
    path = path or KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return path


def _pid_file(name: str = "tritonserver") -> Path:
    return STATE_DIR / f"{name}.pid"


def _running(name: str) -> int | None:
    pid_file = _pid_file(name)
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
        return pid
    except ProcessLookupError:
        pid_file.unlink()
        return None


def cmd_start(args: argparse.Namespace) -> int:
    pid = _running("tritonserver")
    if pid is not None:
        print(f"tritonserver already running (pid {pid}); `make stop` first")
        return 1
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    extra_env = {}
    if not args.no_capture:
        # The models start the sidecar themselves (serving/runtime/host_services.py), as on SageMaker.
        extra_env.update(capture_env(Path(args.spool), Path(args.store), args.sidecar_metrics_port))
    server = TritonProcess(repo=Path(args.repo).resolve(), http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, extra_env=extra_env, models=tuple(args.models),
                           instances=args.instances)
    served = f"{server.served_repo()} ({args.instances} instance(s) per model of {server.repo})" if args.instances \
        else str(server.repo)
    print(f"starting tritonserver on {served} (log: {server.log_path}) ...", flush=True)
    try:
        server.start(wait_s=args.wait)
    except (RuntimeError, TimeoutError) as exc:
        server.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _pid_file().write_text(str(server.proc.pid))
    key_file = write_key_file(server.control_key or "")
    print(f"all {len(server.models)} models ready: {', '.join(server.models)}")
    print(f"  HTTP     http://127.0.0.1:{args.http_port}/v2/models/<model>/infer")
    print(f"  gRPC     127.0.0.1:{args.grpc_port}")
    print(f"  metrics  http://127.0.0.1:{args.metrics_port}/metrics (Triton)")
    print(f"  control  model load/unload/config need header {CONTROL_HEADER}: the key is in {key_file} "
          "(mode 0600; docs/security.md)")
    if not args.no_capture:
        print(f"  capture  spool {args.spool} -> store {args.store}; sidecar metrics "
              f"http://127.0.0.1:{args.sidecar_metrics_port}/metrics")
        print(f"  records  .venv/bin/python -m monitoring records --model resnet_classifier --store {args.store}")
    print("  try:     .venv/bin/python -m serving.launch.client resnet_classifier --image <file.png>   (or: make client-demo)")
    return 0


def _stop_pid(name: str, timeout_s: float = 120.0) -> int | None:
    pid = _running(name)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)  # both drain gracefully: no captured record is lost
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _pid_file(name).unlink(missing_ok=True)
    if name == "tritonserver":
        KEY_FILE.unlink(missing_ok=True)
    return pid


def capture_env(spool: Path, store: Path | str, sidecar_metrics_port: int,
                sidecar_log: Path = ROOT / "var" / "log" / "sidecar.log") -> dict[str, str]:
    """What the models need to capture into `spool` and keep a sidecar draining it into `store`."""
    spool = spool.resolve()
    private_dir(spool)  # captured requests: this user's only (docs/security.md)
    sidecar_log.parent.mkdir(parents=True, exist_ok=True)
    return {"CAPTURE_SPOOL_DIR": str(spool),
            "CAPTURE_STORE": store if isinstance(store, str) and store.startswith("s3://") else str(Path(store).resolve()),
            "CAPTURE_SIDECAR_METRICS_PORT": str(sidecar_metrics_port), "CAPTURE_SIDECAR_LOG": str(sidecar_log)}


def sidecar_of(spool: Path) -> host_services.HostService:
    return host_services.HostService("sidecar", (), str(spool.resolve() / host_services.SIDECAR_LOCK))


def cmd_stop(args: argparse.Namespace) -> int:
    # Triton first: its models flush their capture queues to the spool on unload; the sidecar
    # sees tritonserver gone, drains the spool into the store and exits (we wait for that).
    pid = _stop_pid("tritonserver")
    print(f"stopped tritonserver (pid {pid})" if pid else "tritonserver was not running")
    sidecar = sidecar_of(Path(args.spool))
    if host_services.running(sidecar):
        holder = host_services.holder_pid(sidecar)
        drained = host_services.wait_stopped(sidecar, timeout=120.0)
        print(f"sidecar (pid {holder}) drained the spool and stopped" if drained
              else f"sidecar (pid {holder}) still draining after 120 s; it exits when done")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    server = TritonProcess(repo=Path(args.repo).resolve(), http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, instances=args.instances)
    write_key_file(server.control_key or "")
    # Foreground: exec'd, so the key stays on tritonserver's command line (docs/security.md).
    os.execve(server.command()[0], server.command(), server.environment())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.launch.server", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "run"])
    parser.add_argument("--repo", default=str(ROOT / "model_repository"))
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for all models")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), help="models to load (default: all five)")
    parser.add_argument("--no-capture", action="store_true", help="serve without monitoring capture and sidecar")
    parser.add_argument("--spool", default=str(ROOT / "var" / "spool"))
    parser.add_argument("--store", default=str(ROOT / "var" / "store"))
    parser.add_argument("--sidecar-metrics-port", type=int, default=8090)
    parser.add_argument("--instances", type=int, default=None, metavar="N",
                        help="instances per model instead of the configs' two (1: one copy of each model, for a "
                             "host that cannot hold two; serving/launch/instances.py)")
    args = parser.parse_args(argv)
    if args.instances is not None and args.instances < 1:
        parser.error(f"--instances: {args.instances} must be >= 1")
    return {"start": cmd_start, "stop": cmd_stop, "run": cmd_run}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
