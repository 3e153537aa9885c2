"""The capture thread runs at the request thread's priority unless told otherwise; the sidecar
is reniced (monitoring/capture/priority.py says why)."""

from __future__ import annotations

import os
import threading

import pytest

from monitoring.capture import Capturer
from monitoring.capture.priority import niceness, thread_niceness


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


def test_defaults_and_bad_values(monkeypatch):
    monkeypatch.delenv("CAPTURE_NICENESS", raising=False)
    monkeypatch.setenv("CAPTURE_THREAD_NICENESS", "not a number")
    assert niceness() == 19 and thread_niceness() == 0
