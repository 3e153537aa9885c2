"""Triton's control plane is locked (docs/security.md): against a real tritonserver started the
way `make serve` starts it (TritonProcess), a caller without the per-server key cannot load code
or unload a model over HTTP or gRPC, while inference, health and metadata stay open; with the
key the same calls work (the positive control: the lock, not a broken request, refuses them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from bench.rehearse import control_plane_problems, marker_model, override_load_body
from serving.runtime import host_services
from serving.launch.server import TritonProcess, write_key_file
from serving.runtime.triton_http import (CONTROL_HEADER, CONTROL_KEY_ENV, GRPC_CONTROL_HEADER, TritonError, TritonHTTP, control_headers,
                                         hide_in_argv, restricted_args)
from tests.conftest import free_port, wait_for

TINY = "tiny_echo"
TINY_CONFIG = {"backend": "python", "max_batch_size": 0,
               "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
               "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]}
TINY_CODE = """import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tritonserver as `make serve` runs it (explicit control, its models loaded), serving a
    stdlib-only model so the test is about the lock, not about loading torch."""
    repo = tmp_path_factory.mktemp("repo")
    (repo / TINY / "1").mkdir(parents=True)
    (repo / TINY / "1" / "model.py").write_text(TINY_CODE)
    (repo / TINY / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\noutput [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]\n')
    proc = TritonProcess(repo=repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         log_path=tmp_path_factory.mktemp("log") / "tritonserver.log", models=(TINY,),
                         extra_env={"OMP_NUM_THREADS": "1"})
    proc.start(wait_s=120)
    yield proc
    assert proc.stop() == 0, proc.log_tail()


def test_unauthenticated_http_load_with_code_is_refused_and_the_code_never_runs(server, tmp_path):
    marker = tmp_path / "ran"
    anon = TritonHTTP(server.http_url, key="")
    status, _, body = anon.request("POST", "/v2/repository/models/intruder/load",
                                   override_load_body(marker_model(marker)))
    assert status == 403, body
    assert json.loads(body)["error"] == f"This API is restricted, expecting header '{CONTROL_HEADER}'"
    assert not marker.exists()
    assert TINY in json.dumps(server.control().index()) and "intruder" not in json.dumps(server.control().index())
    # The same helper `make rehearse` runs: load refused, unload refused, model still ready.
    assert control_plane_problems(server.http_url, TINY, tmp_path / "ran2") == []
    assert not (tmp_path / "ran2").exists()


def test_unauthenticated_unload_is_refused_and_the_model_stays_ready(server, clients):
    anon = TritonHTTP(server.http_url, key="")
    with pytest.raises(TritonError, match=f"HTTP 403: .*expecting header '{CONTROL_HEADER}'"):
        anon.unload(TINY)
    with pytest.raises(InferenceServerException, match=CONTROL_HEADER):
        clients[1].unload_model(TINY)
    with pytest.raises(TritonError, match="HTTP 403"):  # a wrong key is no key
        TritonHTTP(server.http_url, key="not-" + (server.control_key or "")).unload(TINY)
    assert anon.ready(TINY)
    assert server.control().state(TINY) == "READY"


def test_grpc_load_with_code_is_refused_without_the_key(server, clients, tmp_path):
    marker = tmp_path / "ran"
    client = clients[1]
    with pytest.raises(InferenceServerException, match=CONTROL_HEADER):
        client.load_model("intruder", config=json.dumps(TINY_CONFIG),
                          files={"file:1/model.py": marker_model(marker).encode()})
    assert not marker.exists()
    with pytest.raises(InferenceServerException, match=CONTROL_HEADER):
        client.get_model_repository_index()


@pytest.fixture
def clients(server):
    """tritonclient's HTTP and gRPC clients, closed after the test (an open keep-alive
    connection holds tritonserver's graceful stop until its exit timeout)."""
    http, grpc = httpclient.InferenceServerClient(server.http_url), grpcclient.InferenceServerClient(server.grpc_url)
    yield http, grpc
    http.close()
    grpc.close()


def test_config_and_shared_memory_need_the_key_inference_health_metadata_do_not(server, clients):
    http, grpc = clients
    for call in (lambda: http.get_model_config(TINY), http.get_system_shared_memory_status, http.get_log_settings,
                 http.get_trace_settings, lambda: grpc.get_model_config(TINY), grpc.get_system_shared_memory_status,
                 grpc.get_log_settings):
        with pytest.raises(InferenceServerException, match=CONTROL_HEADER):
            call()
    key = control_headers(server.control_key)
    assert http.get_model_config(TINY, headers=key)["backend"] == "python"
    with pytest.raises(InferenceServerException, match=GRPC_CONTROL_HEADER):  # gRPC wants the prefixed name
        grpc.get_model_config(TINY, headers=key)
    assert grpc.get_model_config(TINY, headers=control_headers(server.control_key, grpc=True)).config.backend == "python"
    assert http.get_system_shared_memory_status(headers=key) == []
    # Open to everyone, no key: health, metadata, statistics, inference.
    assert http.is_server_live() and http.is_model_ready(TINY) and grpc.is_model_ready(TINY)
    assert http.get_model_metadata(TINY)["name"] == TINY and http.get_inference_statistics(TINY)
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([2.5], dtype=np.float32))
    assert http.infer(TINY, [x]).as_numpy("Y").tolist() == [2.5]


def test_with_the_key_the_same_load_runs_its_code(server, tmp_path):
    """Positive control: what the lock refuses is exactly what an unlocked server would run."""
    marker = tmp_path / "ran"
    control = server.control(timeout_s=120)
    status, _, body = control.request("POST", "/v2/repository/models/keyed_probe/load",
                                      override_load_body(marker_model(marker)))
    assert status == 200, body
    assert marker.read_text() == "ran"
    control.unload("keyed_probe")
    assert control.wait_unloaded("keyed_probe", timeout=60)


def test_the_key_is_in_no_log_and_not_on_the_command_line(server):
    key = server.control_key
    assert key and len(key) >= 40
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().decode().split("\0")
    flags = [a for a in cmdline if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]
    assert flags == [f"--http-restricted-api=model-repository,model-config,shared-memory,logging,trace:{CONTROL_HEADER}="
                     + "*" * len(key), f"--grpc-restricted-protocol=model-repository,model-config,shared-memory,logging,trace:"
                     f"{CONTROL_HEADER}=" + "*" * len(key)]
    assert key not in server.log_path.read_text(errors="replace")
    # tritonserver's environment holds it (its models hand it to the watchdog); mode 0400 file.
    assert f"{CONTROL_KEY_ENV}={key}".encode() in Path(f"/proc/{server.proc.pid}/environ").read_bytes()
    assert key not in repr(server)


# -- units -------------------------------------------------------------------------------------------
def test_restricted_args_syntax_and_bad_keys():
    assert restricted_args("abc") == [
        f"--http-restricted-api=model-repository,model-config,shared-memory,logging,trace:{CONTROL_HEADER}=abc",
        f"--grpc-restricted-protocol=model-repository,model-config,shared-memory,logging,trace:{CONTROL_HEADER}=abc"]
    for bad in ("", "a:b", "a=b", "a,b", "a b"):
        with pytest.raises(ValueError, match="control key must be"):
            restricted_args(bad)


def test_the_key_travels_only_on_control_plane_paths():
    client = TritonHTTP(f"127.0.0.1:{free_port()}", key="k-SECRET-1")
    for path in ("/v2/repository/index", "/v2/repository/models/m/load", "/v2/models/m/config",
                 "/v2/models/m/versions/1/config", "/v2/systemsharedmemory/status", "/v2/cudasharedmemory/status", "/v2/logging", "/v2/trace/setting"):
        assert client.headers_for(path) == {CONTROL_HEADER: "k-SECRET-1"}, path
    for path in ("/v2/models/m/infer", "/v2/models/m/ready", "/v2/health/live", "/v2/models/stats", "/v2/models/m"):
        assert client.headers_for(path) == {}, path
    with pytest.raises(TritonError) as err:  # unreachable: the message never carries the key
        client.index()
    assert err.value.status == 0 and "unreachable" in str(err.value) and "k-SECRET-1" not in str(err.value)


def test_hide_in_argv_overwrites_the_key_in_a_running_process():
    key = "s3cret-" + os.urandom(8).hex()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", f"--flag=x:{key}"],
                            stdin=subprocess.PIPE)
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        wait_for(lambda: key.encode() in cmdline.read_bytes(), 10, "the child's argv")
        assert hide_in_argv(proc.pid, key)
        assert key.encode() not in cmdline.read_bytes()
        assert f"--flag=x:{'*' * len(key)}".encode() in cmdline.read_bytes()
        assert proc.poll() is None  # still running
    finally:
        proc.communicate(b"", timeout=10)
    assert not hide_in_argv(proc.pid, key)  # gone: says so


def test_key_file_is_0600_from_the_start(tmp_path):
    path = write_key_file("abc", tmp_path / "run" / "tritonserver.key")
    assert path.read_text() == "abc\n" and (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("wants_key", [False, True])
def test_only_services_that_need_it_inherit_the_key(tmp_path, monkeypatch, wants_key):
    monkeypatch.setenv(CONTROL_KEY_ENV, "the-key")
    out = tmp_path / "out.log"
    service = host_services.HostService("probe", (sys.executable, "-c", f"import os; print(os.environ.get({CONTROL_KEY_ENV!r}))"),
                                        str(tmp_path / "probe.lock"), log_path=str(out), control_key=wants_key)
    assert host_services.spawn(service, str(tmp_path)).wait(30) == 0
    assert out.read_text().strip() == ("the-key" if wants_key else "None")
    watchdog = host_services.watchdog_service(host_services.host_settings({}, {}, server_pid=4242))
    sidecar = host_services.sidecar_service(host_services.host_settings({}, {"CAPTURE_STORE": str(tmp_path)}, 4242))
    assert watchdog is not None and watchdog.control_key and sidecar is not None and not sidecar.control_key


# -- the other doors (issue 27 item 4) -----------------------------------------------------------------
def test_private_dirs_are_created_0700_and_someone_elses_are_refused(tmp_path):
    from monitoring.capture.private import private_dir

    fresh = tmp_path / "spool" / "resnet_classifier"
    assert private_dir(fresh) == str(fresh) and (fresh.stat().st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match=f"{shared} is writable by every user \\(mode 777\\)"):
        private_dir(shared)
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace what we put there
    assert private_dir(shared) == str(shared)
    if os.geteuid() == 0:  # only root can hand a directory to another user
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 12345, 12345)
        with pytest.raises(PermissionError, match=f"{theirs} belongs to uid 12345"):
            private_dir(theirs)


def test_host_services_refuse_a_state_dir_planted_by_someone_else(tmp_path):
    """The state dir holds the code snapshots the watchdog and sidecar run: a world-writable one
    (e.g. created first by another user under /tmp) is refused, not used."""
    state = tmp_path / "host"
    state.mkdir()
    state.chmod(0o777)
    service = host_services.HostService("probe", (sys.executable, "-c", "pass"), str(state / "probe.lock"))
    with pytest.raises(PermissionError, match="writable by every user"):
        host_services.spawn(service, str(state))


def test_capture_spool_and_sidecar_metrics_are_private_by_default(tmp_path):
    from monitoring.capture import Capturer
    from serving.launch.server import capture_env

    env = capture_env(tmp_path / "spool", tmp_path / "store", 0, sidecar_log=tmp_path / "log" / "s.log")
    assert ((tmp_path / "spool").stat().st_mode & 0o777) == 0o700
    capturer = Capturer(str(tmp_path / "spool2"), "resnet_classifier", "1")
    try:
        assert ((tmp_path / "spool2").stat().st_mode & 0o777) == 0o700
        assert ((tmp_path / "spool2" / "resnet_classifier").stat().st_mode & 0o777) == 0o700
    finally:
        capturer.close(timeout=5)
    sidecar = host_services.sidecar_service(host_services.host_settings({}, env, server_pid=4242))
    assert sidecar is not None
    argv = list(sidecar.argv)
    assert argv[argv.index("--metrics-addr") + 1] == "127.0.0.1"


def test_make_serve_writes_a_0600_key_and_refuses_keyless_code_loads(tmp_path):
    """`python -m serving.launch.server start` itself (what `make serve` runs), on a tiny repository."""
    repo = tmp_path / "repo"
    (repo / TINY / "1").mkdir(parents=True)
    (repo / TINY / "1" / "model.py").write_text(TINY_CODE)
    (repo / TINY / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\noutput [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]\n')
    run = tmp_path / "run"
    env = dict(os.environ, SERVING_RUN_DIR=str(run), OMP_NUM_THREADS="1")
    http_port = free_port()
    cli = [sys.executable, "-m", "serving.launch.server"]
    ports = ["--http-port", str(http_port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    started = subprocess.run(cli + ["start", "--no-capture", "--repo", str(repo), "--models", TINY, "--wait", "120"]
                             + ports, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        key_file = run / "tritonserver.key"
        key = key_file.read_text().strip()
        assert len(key) >= 40 and (key_file.stat().st_mode & 0o777) == 0o600
        assert key not in started.stdout + started.stderr and str(key_file) in started.stdout
        marker = tmp_path / "ran"
        assert control_plane_problems(f"127.0.0.1:{http_port}", TINY, marker) == []
        assert not marker.exists()
        assert TritonHTTP(f"127.0.0.1:{http_port}", key).state(TINY) == "READY"  # the operator's key works
    finally:
        stopped = subprocess.run(cli + ["stop", "--spool", str(tmp_path / "spool")], env=env, capture_output=True,
                                 text=True, timeout=300)
    assert "stopped tritonserver" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not key_file.exists()


def test_watchdog_without_the_key_says_so_at_start(tmp_path):
    """A watchdog started by hand against a locked server, with no $TRITON_CONTROL_KEY, names
    the problem at once instead of failing at the first dead stub."""
    fake = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "--http-port=1",
                             "--http-restricted-api=model-repository:triton-control-key=****"], stdin=subprocess.PIPE)
    env = {k: v for k, v in os.environ.items() if k != CONTROL_KEY_ENV}
    log = tmp_path / "watchdog.log"
    with open(log, "wb") as out:
        watchdog = subprocess.Popen([sys.executable, "-m", "serving.runtime.watchdog", "--server-pid", str(fake.pid),
                                     "--interval", "5"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: "restricts its repository API" in log.read_text(), 60, "the watchdog's error")
        assert f"this watchdog was given no ${CONTROL_KEY_ENV}: it cannot reload models" in log.read_text()
    finally:
        watchdog.terminate()
        watchdog.wait(30)
        fake.communicate(b"", timeout=10)
