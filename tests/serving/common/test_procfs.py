"""serving/common/procfs.py, the one /proc reader, on real processes: a child of this test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from serving.common import procfs


def _no_such_pid() -> int:
    pid = 4_000_000  # above pid_max's ceiling (2^22): never a live process
    assert not os.path.exists(f"/proc/{pid}")
    return pid


def test_a_live_child_is_seen_from_every_angle(tmp_path):
    env = dict(os.environ, PROCFS_TEST_MARK="yes")
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "marker-arg"],
                             stdin=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        me = os.getpid()
        assert child.pid in procfs.pids()
        assert procfs.parent_of(child.pid) == me
        assert child.pid in procfs.children()[me]
        assert procfs.descendants(me)[0] == me and child.pid in procfs.descendants(me)
        assert procfs.state(child.pid) in {"R", "S", "D"}
        assert procfs.cmdline(child.pid)[:4] == [sys.executable.encode(), b"-c", b"import sys; sys.stdin.read()", b"marker-arg"]
        assert procfs.environ(child.pid)["PROCFS_TEST_MARK"] == "yes"
        assert procfs.cwd(child.pid) == str(tmp_path)
        assert procfs.rss_bytes(child.pid) > 1 << 20  # a Python interpreter: megabytes
        assert procfs.cpu_seconds(child.pid) >= 0.0
        assert any(p.endswith(".so") or "libpython" in p or "python" in p for p in procfs.mapped_paths(child.pid))
    finally:
        child.kill()
        child.wait()


def test_a_zombie_and_a_missing_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60
    while procfs.state(child.pid) != "Z":  # exited, not reaped yet
        assert time.monotonic() < deadline, procfs.state(child.pid)
        os.sched_yield()
    child.wait()
    gone = _no_such_pid()
    assert procfs.state(gone) is None and procfs.parent_of(gone) is None and procfs.cmdline(gone) is None
    assert procfs.rss_bytes(gone) is None and procfs.cpu_seconds(gone) is None and procfs.mapped_paths(gone) is None
    assert procfs.environ(gone) == {} and procfs.cwd(gone) is None
    assert procfs.descendants(gone) == [gone]


def test_stat_skips_a_command_name_with_spaces_and_parens(tmp_path):
    # The command name (comm) comes from the executable's file name: give it ") S 1 (".
    odd = tmp_path / "a) S 1 (b"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert procfs.parent_of(child.pid) == os.getpid() and procfs.state(child.pid) in {"R", "S", "D"}
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_machine_facts():
    assert procfs.mem_total_bytes() > 1 << 28  # any machine that runs these tests has > 256 MiB
    model = procfs.cpu_model()
    assert model is None or (isinstance(model, str) and model)
