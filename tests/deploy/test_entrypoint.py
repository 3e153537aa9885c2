"""The docker entrypoint supervisor, run directly (no Docker) against the bundled tritonserver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from serving.runtime import host_services
from serving.launch.client import infer
from serving.launch.server import ROOT, TritonProcess, capture_env, server_env, sidecar_of
from tests.conftest import free_port, png, tensor
from tests.conftest import wait_for

poll = partial(wait_for, timeout=120.0)

ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.py"




def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Container:
    """The entrypoint as the container's PID 1 would run it: server command as arguments."""

    def __init__(self, model_repo: Path, tmp: Path) -> None:
        self.spool, self.store = tmp / "spool", tmp / "store"
        # control_key=None: the image's CMD has no restriction flags; the entrypoint adds them.
        self.triton = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(),
                                    metrics_port=free_port(), models=("resnet_classifier",), control_key=None)
        env = capture_env(self.spool, self.store, 0, sidecar_log=tmp / "unused.log")
        env.update({"CAPTURE_FLUSH_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1", "HOST_SERVICES_CHECK_S": "0.5"})
        self.log_path = tmp / "container.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, str(ENTRYPOINT), *self.triton.command()], stdout=out,
                                         stderr=subprocess.STDOUT, env=server_env(env), cwd=tmp, start_new_session=True)
        poll(lambda: http_ok(f"http://{self.triton.http_url}/v2/models/resnet_classifier/ready"), timeout=600, what="model ready")
        self.sidecar = sidecar_of(self.spool)
        poll(lambda: host_services.running(self.sidecar), what="sidecar")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, n: int, start: int = 0) -> list[str]:
        return [infer("resnet_classifier", {"image": tensor(png(32, seed=start + i))}, url=self.triton.http_url)
                ["request_id"][0, 0].decode() for i in range(n)]

    def server_pid(self) -> int:
        sidecar = host_services.holder_pid(self.sidecar)
        (pid,) = [p for p in children(self.proc.pid) if p != sidecar]
        return pid

    def wait(self, timeout: float = 180.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stored_ids(self) -> list[str]:
        from monitoring.ingest.store import read_records_df
        return sorted(read_records_df(str(self.store), "resnet_classifier")["request_id"])


@pytest.fixture
def container(model_repo, tmp_path):
    c = Container(model_repo, tmp_path)
    yield c
    c.kill()


def test_sigterm_drains_both_and_a_dead_sidecar_is_restarted(container):
    ids = container.send(8)
    first = host_services.holder_pid(container.sidecar)
    os.kill(first, signal.SIGKILL)
    poll(lambda: host_services.holder_pid(container.sidecar) not in (None, first)
         and host_services.running(container.sidecar), what="sidecar restarted by the supervisor")
    ids += container.send(8, start=100)
    container.proc.send_signal(signal.SIGTERM)
    assert container.wait() == 0, container.log()
    log = container.log()
    assert "sidecar exited with -9" in log and "sidecar restarted" in log and "s after it exited" in log
    assert "host service sidecar" not in log  # the models left the sidecar to the supervisor
    assert "sidecar drained and stopped" in log
    assert container.stored_ids() == sorted(ids)  # exactly one record per request
    assert not host_services.running(container.sidecar)


def spooled(spool: Path) -> int:
    from monitoring.capture.segments import read_segment
    return sum(len(read_segment(str(p)).records) for p in spool.glob("resnet_classifier/*.jsonl"))


def test_killed_tritonserver_takes_the_container_down_after_draining(container):
    # The sidecar is paused, so the records wait in the spool when the server dies: the
    # supervisor must drain them into the store before the container exits.
    sidecar = host_services.holder_pid(container.sidecar)
    os.kill(sidecar, signal.SIGSTOP)
    try:
        ids = container.send(8)
        poll(lambda: spooled(container.spool) == len(ids), what="records spooled")
        t0 = time.monotonic()
        os.kill(container.server_pid(), signal.SIGKILL)
        poll(lambda: "server exited unexpectedly with -9" in container.log(), what="supervisor noticed")
    finally:
        os.kill(sidecar, signal.SIGCONT)
    code = container.wait()
    print(f"tritonserver SIGKILLed: container exited with {code} after {time.monotonic() - t0:.2f} s")
    assert code == 128 + signal.SIGKILL, container.log()
    assert "sidecar drained and stopped" in container.log()
    assert not host_services.running(container.sidecar)
    assert container.stored_ids() == sorted(ids)
    assert spooled(container.spool) == 0


def test_entrypoint_locks_the_control_plane_and_hands_the_key_to_the_watchdog_only(container, tmp_path):
    from bench.rehearse import control_plane_problems
    from serving.runtime.triton_http import TritonHTTP

    assert "--http-restricted-api" not in " ".join(container.triton.command())  # the CMD as the image has it
    pid = container.server_pid()
    cmdline = Path(f"/proc/{pid}/cmdline")
    flag = "--http-restricted-api=model-repository,model-config,shared-memory,logging,trace:triton-control-key="
    # The supervisor overwrites the key in tritonserver's argv once Triton answers.
    args = poll(lambda: [a for a in cmdline.read_bytes().decode().split("\0") if a.startswith(flag)
                         and set(a[len(flag):]) == {"*"}], what="the key hidden in tritonserver's argv")
    assert len(args[0]) - len(flag) >= 40 and "--grpc-restricted-protocol=" in cmdline.read_bytes().decode()
    marker = tmp_path / "ran"
    assert control_plane_problems(container.triton.http_url, "resnet_classifier", marker) == []
    assert not marker.exists()
    environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in e)
    key = environ["TRITON_CONTROL_KEY"]
    assert TritonHTTP(container.triton.http_url, key).state("resnet_classifier") == "READY"  # the key works
    sidecar = host_services.holder_pid(container.sidecar)
    assert "TRITON_CONTROL_KEY" not in Path(f"/proc/{sidecar}/environ").read_text(errors="replace")
    assert key not in container.log()  # the supervisor's "server started" line names <control key>
    assert "<control key>" in container.log()


def test_entrypoint_lock_rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location("entrypoint_under_test", ENTRYPOINT)
    ep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ep)
    argv, key = ep.lock_control_plane(["/opt/tritonserver/bin/tritonserver", "--model-repository=/models"], {})
    assert key and argv[-2:] == [f"--http-restricted-api=model-repository,model-config,shared-memory,logging,trace:"
                                 f"triton-control-key={key}", f"--grpc-restricted-protocol=model-repository,"
                                 f"model-config,shared-memory,logging,trace:triton-control-key={key}"]
    assert ep.lock_control_plane(["tritonserver"], {"TRITON_CONTROL_KEY": "mine"})[1] == "mine"  # the operator's
    own = ["tritonserver", "--http-restricted-api=model-repository:k=v"]
    assert ep.lock_control_plane(own, {}) == (own, None)  # their own restriction: left as given
    assert ep.lock_control_plane(["serve"], {}) == (["serve"], None)  # SageMaker's serve: cannot be changed
    with pytest.raises(SystemExit, match="TRITON_CONTROL_KEY: control key must be"):
        ep.lock_control_plane(["tritonserver"], {"TRITON_CONTROL_KEY": "a:b"})
    assert ep.http_url(["tritonserver", "--http-port=9"]) == "127.0.0.1:9"
    assert ep.http_url(["tritonserver", "--allow-http=false"]) is None
