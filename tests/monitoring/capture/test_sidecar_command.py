"""The sidecar's command line: what monitoring/capture/sidecar_command.py builds for the model processes
and the demo is what the sidecar's one parser (monitoring/ingest/sidecar/cli.py) reads."""

from __future__ import annotations

import argparse
import os

import pytest

from monitoring.capture import sidecar_command as command
from monitoring.ingest.sidecar.cli import add_arguments


def parse(argv: list[str]) -> argparse.Namespace:
    assert argv[1:3] == ["-m", "monitoring.ingest.sidecar"]
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv[3:])


def test_every_setting_reaches_the_parser(tmp_path):
    settings = {"CAPTURE_SPOOL_DIR": str(tmp_path / "spool"), "CAPTURE_STORE": "s3://b/cap",
                "CAPTURE_SIDECAR_METRICS_PORT": "9123", "CAPTURE_SIDECAR_METRICS_ADDR": "127.0.0.2",
                "CAPTURE_S3_ENDPOINT_URL": "http://127.0.0.1:5000", "CAPTURE_DATACAPTURE_DIR": str(tmp_path / "dc"),
                "CAPTURE_DRAIN_TIMEOUT_S": "7", "CAPTURE_COMPACT_EVERY_S": "0", "CAPTURE_SIDECAR_RETRY_MAX_S": "3",
                "CAPTURE_RETAIN_DAYS": "2.5", "CAPTURE_NICENESS": "7"}
    argv = command.argv(settings, python="/usr/bin/python3", exit_with_pid=4321)
    assert argv[0] == "/usr/bin/python3"
    a = parse(argv)
    assert (a.spool, a.store, a.metrics_port, a.metrics_addr) == (str(tmp_path / "spool"), "s3://b/cap", 9123, "127.0.0.2")
    assert (a.s3_endpoint_url, a.datacapture_dir, a.drain_timeout, a.compact_every, a.retry_max, a.retain_days) == \
        ("http://127.0.0.1:5000", str(tmp_path / "dc"), 7.0, 0.0, 3.0, 2.5)
    assert a.exit_with_pid == 4321 and a.niceness == 7
    assert len(command.SETTING_FLAGS) == 7  # a new setting needs a line here too


def test_defaults_and_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAPTURE_NICENESS", raising=False)  # the test session sets 0 (tests/conftest.py)
    argv = command.argv({"CAPTURE_SPOOL_DIR": "spool", "CAPTURE_STORE": "store"})
    a = parse(argv)
    assert a.spool == str(tmp_path / "spool")  # absolute: the detached sidecar runs elsewhere
    assert a.metrics_port == command.DEFAULT_METRICS_PORT and a.metrics_addr == "127.0.0.1" and a.exit_with_pid is None
    assert a.niceness == 19  # the sidecar yields the cores to inference wherever it is started from
    assert command.lock_path("spool") == os.path.join(str(tmp_path), "spool", ".sidecar.lock")


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match=r"CAPTURE_SIDECAR_METRICS_PORT: 'eighty' is not an integer port"):
        command.argv({"CAPTURE_SPOOL_DIR": "s", "CAPTURE_STORE": "t", "CAPTURE_SIDECAR_METRICS_PORT": "eighty"})
    with pytest.raises(ValueError, match=r"CAPTURE_NICENESS: 'low' is not an integer"):
        command.argv({"CAPTURE_SPOOL_DIR": "s", "CAPTURE_STORE": "t", "CAPTURE_NICENESS": "low"})
    with pytest.raises(ValueError, match=r"needs CAPTURE_SPOOL_DIR and CAPTURE_STORE"):
        command.argv({"CAPTURE_SPOOL_DIR": "s"})
