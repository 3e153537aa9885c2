"""The capture thread runs at the request thread's priority unless told otherwise; the sidecar
is reniced (monitoring/capture/priority.py says why)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from monitoring.capture import Capturer
from monitoring.capture.priority import AUTOGROUP_PATH, autogroup_nice, renice_autogroup, thread_niceness
from monitoring.cli import build_parser
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[3]


def worker_niceness(cap: Capturer) -> int:
    assert cap.flush(timeout=30)  # a round trip through the worker: it has set its priority by now
    (thread,) = [t for t in threading.enumerate() if t.name == f"capture-{cap.model_name}"]
    return os.getpriority(os.PRIO_PROCESS, thread.native_id) - os.getpriority(os.PRIO_PROCESS, 0)


@pytest.mark.parametrize("setting, expected", [(None, 0), ("5", 5)])
def test_capture_thread_niceness(tmp_path, monkeypatch, setting, expected):
    if setting is None:
        monkeypatch.delenv("CAPTURE_THREAD_NICENESS", raising=False)
    else:
        monkeypatch.setenv("CAPTURE_THREAD_NICENESS", setting)
    if os.getpriority(os.PRIO_PROCESS, 0) + expected > 19:
        pytest.skip("this process already runs at a niceness the thread cannot go above")
    cap = Capturer(tmp_path / "spool", "m")
    try:
        assert worker_niceness(cap) == expected
    finally:
        cap.close()


def test_a_bad_thread_setting_is_logged_and_the_default_used(monkeypatch, caplog):
    # Read on the capture worker, which must not stop over it.
    monkeypatch.setenv("CAPTURE_THREAD_NICENESS", "not a number")
    with caplog.at_level(logging.WARNING, logger="monitoring.capture.priority"):
        assert thread_niceness() == 0
    assert "CAPTURE_THREAD_NICENESS='not a number' is not an integer" in caplog.text


@pytest.mark.parametrize("env, argv, expected", [(None, [], 19), ("0", [], 0), ("7", [], 7), ("7", ["--niceness", "3"], 3)])
def test_sidecar_niceness_default_and_setting(monkeypatch, env, argv, expected):
    if env is None:
        monkeypatch.delenv("CAPTURE_NICENESS", raising=False)
    else:
        monkeypatch.setenv("CAPTURE_NICENESS", env)
    assert build_parser().parse_args(["sidecar", *argv]).niceness == expected


@pytest.mark.parametrize("env, argv", [("nineteen", []), (None, ["--niceness", "1.5"])])
def test_sidecar_refuses_a_niceness_that_is_not_an_integer(monkeypatch, capsys, env, argv):
    if env is None:
        monkeypatch.delenv("CAPTURE_NICENESS", raising=False)
    else:
        monkeypatch.setenv("CAPTURE_NICENESS", env)
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["sidecar", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "niceness (--niceness / CAPTURE_NICENESS) must be an integer" in err
    assert f"got {env or argv[-1]!r}" in err  # the value, as given


# -- the sidecar's autogroup ---------------------------------------------------------------------
# On a Linux host with autogroups the scheduler shares the cores between sessions first and by
# niceness only within one; the model processes start the sidecar in a session of its own, where a
# nice-19 sidecar still took half of a two-thread workload (bench/results/nice-autogroup-2026-12-05.md).

needs_autogroup = pytest.mark.skipif(not os.path.exists(AUTOGROUP_PATH),
                                     reason="this kernel has no autogroups (CONFIG_SCHED_AUTOGROUP off)")

_RENICE = """
import json, os, sys
from monitoring.capture.priority import autogroup_nice, renice_autogroup, renice_process
group = autogroup_nice
out = {"before": group(), "first": renice_process(5), "after_first": group(), "second": renice_autogroup(5),
       "capped": renice_autogroup(19), "after": group(), "thread": os.getpriority(os.PRIO_PROCESS, 0)}
print(json.dumps(out))
"""


def run_renice(new_session: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _RENICE], capture_output=True, text=True, check=True, timeout=60,
                         start_new_session=new_session, cwd=ROOT)
    return json.loads(out.stdout)


def group_nice(pid: int | str = "self") -> int | None:
    return autogroup_nice(f"/proc/{pid}/autogroup")


@pytest.mark.parametrize("text, expected", [("/autogroup-1815 nice 0\n", 0), ("/autogroup-7 nice 19\n", 19),
                                            ("/autogroup-7 nice -3\n", -3), ("", None)])
def test_autogroup_nice_reads_the_kernels_line(tmp_path, text, expected):
    # Empty: the process is in the boot-time default group (no session of its own since boot) or in
    # a CPU cgroup; CI ran pytest so, and a test that assumed a line failed there (2026-12-06).
    path = tmp_path / "autogroup"
    path.write_text(text)
    assert autogroup_nice(str(path)) == expected


_LEADER_ON_EMPTY = """
import json, sys
from monitoring.capture.priority import renice_autogroup
print(json.dumps(renice_autogroup(5, sys.argv[1])))
"""


def test_a_session_leader_in_no_autogroup_writes_nothing(tmp_path):
    # A session leader whose file is empty is left alone, and nothing is written to the file.
    path = tmp_path / "autogroup"
    path.write_text("")
    out = subprocess.run([sys.executable, "-c", _LEADER_ON_EMPTY, str(path)], capture_output=True, text=True,
                         check=True, timeout=60, start_new_session=True, cwd=ROOT)
    assert json.loads(out.stdout) is None
    assert path.read_text() == ""
    # and the same leader with a group's line raises it, in the same file
    path.write_text("/autogroup-3 nice 4\n")
    out = subprocess.run([sys.executable, "-c", _LEADER_ON_EMPTY, str(path)], capture_output=True, text=True,
                         check=True, timeout=60, start_new_session=True, cwd=ROOT)
    assert json.loads(out.stdout) == 9 and path.read_text() == "9"


def test_a_process_that_leads_no_session_never_touches_the_file(tmp_path):
    path = tmp_path / "autogroup"
    path.write_text("/autogroup-3 nice 4\n")
    if os.getsid(0) == os.getpid():
        pytest.skip("pytest itself leads its session here")
    assert renice_autogroup(5, str(path)) is None
    assert path.read_text() == "/autogroup-3 nice 4\n"


@needs_autogroup
def test_a_session_leader_renices_its_own_autogroup():
    r = run_renice(new_session=True)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert r["before"] == 0  # a new session starts a new group at 0
    assert (r["first"], r["after_first"]) == (5, 5)
    assert r["second"] == 10  # added to what the group had
    assert (r["capped"], r["after"]) == (19, 19)
    assert r["thread"] == min(19, base + 5)  # and the threads as before


@needs_autogroup
def test_a_process_in_a_shared_session_leaves_the_autogroup_alone():
    # Its group is its parent's (here: pytest's): renicing it would slow every process in it. Where
    # pytest is in no autogroup of its own (the file is empty: CI's runner), both sides read None.
    before = group_nice()
    r = run_renice(new_session=False)
    assert (r["first"], r["second"], r["capped"]) == (None, None, None)
    assert r["before"] == r["after"] == before == group_nice()


@needs_autogroup
def test_the_sidecar_in_its_own_session_yields_as_a_group(tmp_path):
    # Started as the model processes start it (a session of its own), at its default niceness.
    spool, log = tmp_path / "spool", tmp_path / "sidecar.log"
    spool.mkdir()
    env = dict(os.environ)
    env.pop("CAPTURE_NICENESS", None)  # tests/conftest.py sets 0 for the suite
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "monitoring.ingest.sidecar", "--spool", str(spool), "--store",
                                 str(tmp_path / "store"), "--metrics-port", "-1", "--no-watch"],
                                cwd=ROOT, env=env, stderr=err, start_new_session=True)
    # Reniced as a group, it gets ~1.5 % of a core while the suite's workers fill both: its imports
    # after the renice and a graceful stop can take minutes then (a stop timed out at 60 s on a
    # busy host, 2026-12-06). What is tested is its priority, so it is killed, not stopped.
    try:
        wait_for(lambda: "sidecar started" in log.read_text(), timeout=600, what="the sidecar's start")
        assert group_nice(proc.pid) == 19
        assert int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[16]) == 19  # its niceness
        assert "niceness +19; its session's autogroup at nice 19" in log.read_text()
    finally:
        proc.kill()
        proc.wait()
