"""A tritonserver that died must not leave its model processes behind.

A Python-backend stub notices its server's death and exits, but one caught mid-request can
deadlock in the backend's exit path and live on, holding a copy of its model (seen after the
soak SIGKILLs tritonserver). Such a stub cannot be made to deadlock on purpose here, so a
stand-in process carries a stub's command line (its name, and its server's pid where Triton
puts it) and ignores SIGTERM, as the deadlocked stub does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serving.launch.server import TritonProcess, end_orphaned_stubs
from serving.runtime.watchdog import STUB_NAME, orphaned_stubs

HANG = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def stand_in_stub(tmp_path: Path, server_pid: int, code: str = HANG) -> subprocess.Popen:
    # argv as Triton starts a stub: name, model.py, shm region, shm sizes, its server's pid, ...
    # (python's "-c code" takes the model.py and region slots; the pid lands in argv[5])
    argv = [str(tmp_path / STUB_NAME), "-c", code, "1048576", "1048576", str(server_pid), "backends", "0",
            "m_0_0", "CPU"]
    return subprocess.Popen(argv, executable=sys.executable)


def dead_server() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc


def test_stop_kills_the_stubs_a_dead_server_left_and_no_others(tmp_path):
    server = TritonProcess(log_path=tmp_path / "tritonserver.log")
    server.proc = dead_server()  # it died (SIGKILL, crash) before anyone stopped it
    other = dead_server()
    mine, theirs = stand_in_stub(tmp_path, server.proc.pid), stand_in_stub(tmp_path, other.pid)
    try:
        assert sorted(orphaned_stubs(server.proc.pid)) == [mine.pid]
        assert server.stop(orphan_grace_s=0.5) == 0
        assert mine.wait(timeout=60) == -9  # SIGKILLed: SIGTERM would not have ended it
        assert theirs.poll() is None  # another server's stub is not ours to end
        assert orphaned_stubs(server.proc.pid) == []
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()


def test_a_stub_that_exits_within_the_grace_period_is_left_to_finish(tmp_path):
    """A healthy stub flushes its capture records when its server dies: it is given the time."""
    server = dead_server()
    stub = stand_in_stub(tmp_path, server.pid, code="import time; time.sleep(1.0)")
    try:
        assert end_orphaned_stubs(server.pid, grace_s=120) == []
        assert stub.wait(timeout=60) == 0  # it ended by itself
    finally:
        stub.kill()
        stub.wait()
