"""Per-host services started from the model processes (serving/runtime/host_services.py).

Unit part: a tiny flock-holding service stands in for the sidecar. Integration part: a real
tritonserver whose resnet model starts the real sidecar, which is SIGKILLed under load.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from serving.runtime import host_services
from serving.runtime.host_services import HostService, HostServices, host_settings
from tests.conftest import wait_for

poll = partial(wait_for, timeout=60.0)

# Holds an exclusive flock on argv[1] until its parent-to-watch (argv[2]) is gone: the contract
# every host service follows.
SERVICE_SCRIPT = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(2)
os.ftruncate(fd, 0); os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
while True:
    try:
        os.kill(int(sys.argv[2]), 0)
    except ProcessLookupError:
        sys.exit(0)
    time.sleep(0.05)
"""




@pytest.fixture
def dummy(tmp_path):
    lock = str(tmp_path / "dummy.lock")
    service = HostService("dummy", (sys.executable, "-c", SERVICE_SCRIPT, lock, str(os.getpid())), lock)
    settings = host_settings({}, {"HOST_SERVICES_DIR": str(tmp_path / "state")}, server_pid=os.getpid())
    keeper = HostServices(settings, [service], check_s=0)
    yield service, keeper
    pid = host_services.holder_pid(service)
    if pid and host_services.running(service):
        os.kill(pid, signal.SIGTERM)
    for child in keeper.children.values():
        child.wait(10)


def test_starts_once_and_restarts_a_dead_service(dummy, caplog):
    service, keeper = dummy
    assert not host_services.running(service)
    assert keeper.check() == ["dummy"]
    pid = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service up")
    assert keeper.check() == []  # running: nothing started
    # A second keeper (another model process) sees it running too.
    other = HostServices(keeper.settings, [service], check_s=0)
    assert other.check() == []
    os.kill(pid, signal.SIGKILL)
    poll(lambda: not host_services.running(service), what="service down")
    with caplog.at_level("WARNING", logger="serving.runtime.host_services"):
        assert keeper.check() == ["dummy"]
    new_pid = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service back")
    assert new_pid != pid and keeper.restarts["dummy"] == 1
    assert any("restarted as pid" in r.message and "after it was last seen running" in r.message for r in caplog.records)


def test_a_restart_is_a_warning_even_if_the_keeper_never_saw_the_service_run(dummy, caplog):
    """The service dies before its keeper's next check (a busy model process): the keeper never
    saw it hold the lock, but the process it started has exited, so the restart is a restart
    (a WARNING naming both pids), not a first start (INFO, which no handler in the stub prints)."""
    service, keeper = dummy
    assert keeper.check() == ["dummy"]
    pid = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service up")
    os.kill(pid, signal.SIGKILL)  # no keeper.check() in between: it never saw the service running
    poll(lambda: not host_services.running(service), what="service down")
    with caplog.at_level("INFO", logger="serving.runtime.host_services"):
        assert keeper.check() == ["dummy"]
    new_pid = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service back")
    assert new_pid != pid and keeper.restarts["dummy"] == 1
    died = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"host service dummy died: restarted as pid {new_pid}" in m and f"pid {pid}" in m
               and "signal 9" in m for m in died), caplog.text


# SERVICE_SCRIPT that first waits for a file (argv[3]) to exist: a service slow to start (its imports).
GATED_SCRIPT = "import os, sys, time\nwhile not os.path.exists(sys.argv[3]):\n    time.sleep(0.02)\n" + SERVICE_SCRIPT


def test_one_candidate_at_a_time_and_the_other_keeper_logs_a_restart_it_made(tmp_path, caplog):
    """Two model processes: while the candidate one spawned is still starting, the other does not
    spawn a second (the start lock); when the service later dies unseen by the other, the other's
    restart is still a WARNING naming the pid it started."""
    lock, go = str(tmp_path / "gated.lock"), tmp_path / "go"
    service = HostService("gated", (sys.executable, "-c", GATED_SCRIPT, lock, str(os.getpid()), str(go)), lock)
    settings = host_settings({}, {"HOST_SERVICES_DIR": str(tmp_path / "state")}, server_pid=os.getpid())
    a, b = HostServices(settings, [service], check_s=0), HostServices(settings, [service], check_s=0)
    try:
        assert a.check() == ["gated"]
        assert b.check() == []  # a's candidate waits for `go`: not running, but starting
        assert not host_services.running(service) and b.children == {}
        go.touch()
        first = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service up")
        assert first == a.children["gated"].pid
        os.kill(first, signal.SIGKILL)  # no check of b saw it running
        poll(lambda: not host_services.running(service), what="service down")
        with caplog.at_level("INFO", logger="serving.runtime.host_services"):
            assert b.check() == ["gated"]
            assert a.check() == []  # b's replacement holds the start lock (or runs already)
        second = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service back")
        assert second == b.children["gated"].pid and b.restarts["gated"] == 1
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings == [f"host service gated died: restarted as pid {second}; started by another model process, "
                            "it ended before a check of this one saw it running"], caplog.text
    finally:
        go.touch()
        pid = host_services.holder_pid(service)
        if pid and host_services.running(service):
            os.kill(pid, signal.SIGKILL)
        for keeper in (a, b):
            for child in keeper.children.values():
                child.wait(10)


def test_spawned_service_outlives_its_starter(dummy, tmp_path):
    """A model unloaded in an MME: the service it started keeps running, detached."""
    service, _ = dummy
    starter = subprocess.run(
        [sys.executable, "-c", "import sys; from serving.runtime.host_services import *; "
         f"k = HostServices(host_settings({{}}, {{}}, server_pid={os.getpid()}), [HostService('dummy', tuple(sys.argv[1:]), {service.lock!r})], check_s=0); "
         "print(k.check())", *service.argv], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[3])
    assert starter.returncode == 0, starter.stderr
    assert "['dummy']" in starter.stdout
    pid = poll(lambda: host_services.running(service) and host_services.holder_pid(service), what="service up")
    assert os.getsid(pid) == pid  # its own session: not killed with the model's process group


def test_skip_and_settings(tmp_path):
    params = {"CAPTURE_STORE": str(tmp_path / "store"), "CAPTURE_SIDECAR_METRICS_PORT": "-1", "checkpoint_dir": "x"}
    settings = host_settings(params, {"CAPTURE_SAMPLE_RATE": "0.5"}, server_pid=123)
    # A store alone turns capture on with the default spool; parameters override the environment.
    assert settings.values["CAPTURE_SPOOL_DIR"] == host_services.DEFAULT_SPOOL_DIR
    assert "checkpoint_dir" not in settings.values  # only CAPTURE_/MONITORING_/HOST_SERVICES_ keys
    assert host_services.merged_settings({"CAPTURE_SAMPLE_RATE": "0.1"}, {"CAPTURE_SAMPLE_RATE": "0.5"})["CAPTURE_SAMPLE_RATE"] == "0.1"
    (sidecar,) = [s for s in host_services.services(settings) if s.name == "sidecar"]
    assert sidecar.name == "sidecar" and "--exit-with-pid" in sidecar.argv and "123" in sidecar.argv
    assert sidecar.lock == os.path.join(host_services.DEFAULT_SPOOL_DIR, ".sidecar.lock")
    assert host_services.services(host_settings(params, {"HOST_SERVICES_SKIP": "sidecar,watchdog"})) == []
    no_store = host_services.services(host_settings({}, {"CAPTURE_SPOOL_DIR": str(tmp_path)}))
    assert [s.name for s in no_store] == ["watchdog"]  # no store: no sidecar (the watchdog always runs)


def test_bad_setting_is_reported_not_raised(tmp_path, caplog):
    params = {"CAPTURE_STORE": str(tmp_path / "store"), "CAPTURE_SIDECAR_METRICS_PORT": "eighty"}
    with caplog.at_level("ERROR", logger="serving.runtime.host_services"):
        assert [s.name for s in host_services.services(host_settings(params, {}))] == ["watchdog"]
    assert any("eighty" in r.getMessage() for r in caplog.records)


# -- real tritonserver: the model starts the sidecar; the sidecar is killed under load -----------
def test_sidecar_started_by_model_survives_kill_under_load(model_repo, tmp_path):
    from monitoring.ingest.store import read_records_df
    from serving.launch.client import infer
    from serving.launch.server import TritonProcess, capture_env, sidecar_of
    from tests.conftest import free_port, png, tensor

    spool, store = tmp_path / "spool", tmp_path / "store"
    env = capture_env(spool, store, 0, sidecar_log=tmp_path / "sidecar.log")
    env.update({"HOST_SERVICES_CHECK_S": "0.5", "CAPTURE_FLUSH_INTERVAL_S": "0.2", "OMP_NUM_THREADS": "1"})
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp_path / "tritonserver.log", models=("resnet_classifier",), extra_env=env)
    server.start(wait_s=600)
    sidecar = sidecar_of(spool)
    ids: list[str] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            out = infer("resnet_classifier", {"image": tensor(png(32, seed=i))}, url=server.http_url)
            ids.append(out["request_id"][0, 0].decode())
            i += 1

    try:
        first = poll(lambda: host_services.running(sidecar) and host_services.holder_pid(sidecar),
                     what="sidecar started by the model")
        sender = threading.Thread(target=load)
        sender.start()
        try:
            poll(lambda: len(ids) >= 10, what="traffic")
            t_kill = time.monotonic()
            os.kill(first, signal.SIGKILL)
            second = poll(lambda: host_services.running(sidecar) and host_services.holder_pid(sidecar) != first
                          and host_services.holder_pid(sidecar), what="sidecar restarted")
            recovery_s = time.monotonic() - t_kill
            n_at_restart = len(ids)
            poll(lambda: len(ids) >= n_at_restart + 10, what="traffic after the restart")
        finally:
            stop.set()
            sender.join(120)
    finally:
        assert server.stop() == 0, server.log_tail()
    # tritonserver gone: the sidecar drains the spool and exits on its own.
    assert host_services.wait_stopped(sidecar, timeout=120)
    print(f"sidecar killed under load: restarted as pid {second} in {recovery_s:.2f} s")
    # One read is enough: the stub wrote the line to its stderr (tritonserver's log file) with a
    # flush per record, and it has exited (server.stop() returned). The restart is a WARNING
    # whether or not the model's keeper saw the killed sidecar run before it died. With two
    # instances, one model process spawns at startup and the other waits on the start lock (no
    # second candidate importing that could take the freed lock unannounced); after the kill, one
    # of them starts the replacement and names it.
    log = server.log_path.read_text()
    assert f"host service sidecar died: restarted as pid {second}" in log, log
    assert len(re.findall(r"host service sidecar died", log)) == 1, log  # one start per death
    starts = (tmp_path / "sidecar.log").read_text()  # both sidecars have exited (wait_stopped above)
    assert starts.count("sidecar started:") == 2 and "another sidecar" not in starts, starts  # no losing candidate
    df = read_records_df(str(store), "resnet_classifier")
    assert sorted(df["request_id"]) == sorted(ids)  # exactly one record per request: none lost, none doubled
    assert df["embedding"].map(len).min() > 0
    assert not list(spool.glob("resnet_classifier/*.jsonl"))


def test_code_snapshot_outlives_the_model_directory(tmp_path):
    """In an MME the model directory (with its monitoring/ code package) is deleted on unload."""
    model_dir = tmp_path / "repository" / "resnet_classifier"
    pkg = model_dir / "monitoring"
    (pkg / "sub").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text('name: "resnet_classifier"')
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    root = host_services.snapshot_package(pkg, tmp_path / "state" / "code")
    again = host_services.snapshot_package(pkg, tmp_path / "state" / "code")
    assert root == again  # same content, same directory
    (pkg / "__init__.py").write_text("VALUE = 2\n")
    changed = host_services.snapshot_package(pkg, tmp_path / "state" / "code")
    assert changed != root
    shutil.rmtree(model_dir)
    out = subprocess.run([sys.executable, "-c", "import monitoring, monitoring.sub; print(monitoring.VALUE)"],
                         env={**os.environ, "PYTHONPATH": changed}, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "2", out.stderr
    assert not list(Path(changed).rglob("*.pyc"))


def test_services_shipped_in_a_model_dir_import_both_packages(tmp_path, monkeypatch):
    """In a stock container our packages live only inside a model directory (no .pth): each
    service's PYTHONPATH must carry snapshots of both `serving` and `monitoring`, since the
    sidecar imports serving's contract modules (procfs) and the watchdog monitoring's."""
    import sysconfig

    root = Path(__file__).resolve().parents[3]
    model_dir = tmp_path / "repository" / "resnet_classifier"
    for name in ("serving", "monitoring"):
        shutil.copytree(root / name, model_dir / name, ignore=shutil.ignore_patterns("__pycache__"))
    (model_dir / "config.pbtxt").write_text('name: "resnet_classifier"')
    monkeypatch.setattr(host_services, "_package_root", lambda name: str(model_dir))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    params = {"CAPTURE_STORE": str(tmp_path / "store"), "CAPTURE_SPOOL_DIR": str(tmp_path / "spool")}
    settings = host_settings(params, {"HOST_SERVICES_DIR": str(tmp_path / "state")}, server_pid=123)
    by_name = {s.name: s for s in host_services.services(settings)}
    assert set(by_name) == {"sidecar", "watchdog"}
    shutil.rmtree(model_dir)  # an MME deletes it on unload: the snapshots must be enough
    site = sysconfig.get_paths()["purelib"]
    for name, service in by_name.items():
        paths = service.env["PYTHONPATH"].split(os.pathsep)
        assert all(str(tmp_path / "state") in p for p in paths), paths
        # -S: no site-packages and no .pth (the checkout); site-packages added back by hand
        code = (f"import sys; sys.path[:0] = {paths!r}; sys.path.append({site!r}); "
                "import monitoring.ingest.sidecar.service, serving.runtime.watchdog; print(monitoring.__file__, serving.__file__)")
        out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, f"{name}: {out.stderr[-2000:]}"
        assert out.stdout.count(str(tmp_path / "state")) == 2, out.stdout
