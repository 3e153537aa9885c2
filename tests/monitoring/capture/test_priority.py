"""The capture thread runs at the request thread's priority unless told otherwise; the sidecar
is reniced (monitoring/capture/priority.py says why)."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from monitoring.capture import Capturer
from monitoring.capture.priority import thread_niceness
from monitoring.cli import build_parser


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
