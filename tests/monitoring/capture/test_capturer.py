"""Capturer: never blocks, counts drops, samples, survives write failures, flushes on close."""

from __future__ import annotations

import random
import threading

import pytest
from capture_testlib import DiskFull, make_record, spool_segments, wait_for

import monitoring.capture.capturer as capmod
from monitoring.capture import Capturer, NullCapturer, sampled_by_id
from monitoring.capture.segments import read_segment
from bench.loadtest.loss import match_ids


def _records_in_spool(spool):
    return [r for p in spool_segments(spool) for r in read_segment(str(p)).records]


def test_submit_never_blocks_and_counts_drops_when_queue_full(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_write = capmod.write_file_atomic

    def blocking_write(path, data, **kw):
        entered.set()
        assert release.wait(60), "test never released the writer"
        return real_write(path, data, **kw)

    monkeypatch.setattr(capmod, "write_file_atomic", blocking_write)
    cap = Capturer(tmp_path, "m1", queue_size=10, batch_size=1, flush_interval_s=0.01)
    assert cap.submit(make_record(0)) is True
    assert entered.wait(30)  # the writer thread holds record 0 and is stuck in "I/O"
    accepted = [cap.submit(make_record(i)) for i in range(1, 11)]
    refused = [cap.submit(make_record(i)) for i in range(11, 16)]
    assert accepted == [True] * 10
    assert refused == [False] * 5
    assert cap.dropped == 5
    assert cap.queue_depth() == 10
    release.set()
    assert cap.close(timeout=30) is True
    assert (cap.submitted, cap.written, cap.dropped, cap.lost_on_close) == (16, 11, 5, 0)
    ids = sorted(r["request_id"] for r in _records_in_spool(tmp_path))
    assert ids == [make_record(i)["request_id"] for i in range(11)]
    # the header of the last segment carries the drop count for the sidecar
    last = read_segment(str(spool_segments(tmp_path)[-1]))
    assert last.header["counters"]["dropped"] == 5


def test_graceful_close_writes_everything_and_fills_defaults(tmp_path):
    cap = Capturer(tmp_path, "m1", "7", batch_size=64, flush_interval_s=5.0)
    n = 1000
    for i in range(n):
        rec = make_record(i)
        del rec["model"], rec["model_version"]
        rec["not_in_contract"] = 1
        assert cap.submit(rec)
    assert cap.close(timeout=30) is True
    recs = _records_in_spool(tmp_path)
    assert match_ids([make_record(i)["request_id"] for i in range(n)], [r["request_id"] for r in recs]).exact
    assert cap.written == n
    assert {r["model"] for r in recs} == {"m1"}
    assert {r["model_version"] for r in recs} == {"7"}
    assert {r["schema_version"] for r in recs} == {1}
    assert all("not_in_contract" not in r for r in recs)
    assert cap.unknown_fields == n
    assert recs[5]["embedding"].dtype.name == "float32" and recs[5]["embedding"].shape == (16,)
    assert cap.submit(make_record(n)) is False  # closed: refused and counted, no exception
    assert cap.dropped == 1


def test_flush_interval_writes_partial_batches(tmp_path):
    cap = Capturer(tmp_path, "m1", batch_size=1000, flush_interval_s=0.05)
    for i in range(3):
        cap.submit(make_record(i))
    wait_for(lambda: cap.written == 3, what="time-based flush")
    assert len(_records_in_spool(tmp_path)) == 3
    cap.close()


def test_deterministic_sampling_rate(tmp_path):
    cap = Capturer(tmp_path, "m1", sample_rate=0.25, queue_size=5000)
    kept = sum(cap.submit({"request_id": f"id-{i}", "ts_ms": 1, "outcome": "ok"}) for i in range(4000))
    assert 900 <= kept <= 1100  # binomial sd ~27
    assert cap.sampled_out == 4000 - kept
    # deterministic: the same ids give the same decisions, in this or another process
    again = sum(sampled_by_id(f"id-{i}", 0.25) for i in range(4000))
    assert again == kept
    assert cap.close()
    assert cap.written == kept


def test_random_sampling_rate(tmp_path):
    random.seed(1234)
    cap = Capturer(tmp_path, "m1", sample_rate=0.25, deterministic=False, queue_size=5000)
    kept = sum(cap.submit({"request_id": "same-id", "ts_ms": 1, "outcome": "ok"}) for i in range(4000))
    assert 900 <= kept <= 1100
    cap.close()


def test_disk_full_is_counted_and_retried_never_raised(tmp_path, monkeypatch):
    disk = DiskFull(capmod.write_file_atomic)
    monkeypatch.setattr(capmod, "write_file_atomic", disk)
    cap = Capturer(tmp_path, "m1", queue_size=50, batch_size=10, flush_interval_s=0.01, retry_max_s=0.05)
    results = [cap.submit(make_record(i)) for i in range(40)]
    assert all(results)
    wait_for(lambda: cap.write_errors >= 3, what="retried write errors")
    assert "No space left" in cap.last_error
    assert cap.written == 0 and spool_segments(tmp_path) == []
    disk.full.clear()
    assert cap.close(timeout=30) is True
    assert cap.written == 40
    assert len(_records_in_spool(tmp_path)) == 40


def test_close_gives_up_after_timeout_and_reports_loss(tmp_path, monkeypatch):
    monkeypatch.setattr(capmod, "write_file_atomic", DiskFull(capmod.write_file_atomic))
    cap = Capturer(tmp_path, "m1", batch_size=5, flush_interval_s=0.01, retry_max_s=0.05)
    for i in range(12):
        assert cap.submit(make_record(i))
    assert cap.close(timeout=0.5) is False
    assert cap.lost_on_close == 12
    assert cap.written == 0


def test_bad_record_values_never_raise_on_submit(tmp_path):
    cap = Capturer(tmp_path, "m1")
    assert cap.submit({"request_id": "x", "outcome": "ok", "embedding": object()}) is True  # fails later, in the writer
    assert cap.submit(None) is False  # not even a dict: counted as dropped
    assert cap.dropped == 1
    assert cap.submit(make_record(1))
    # The worker drops (and counts) the record it cannot encode and goes on with the next one.
    assert cap.close(timeout=5)
    assert (cap.written, cap.dropped) == (1, 2)


def test_from_env(tmp_path):
    assert isinstance(Capturer.from_env("m1", "1", environ={}), NullCapturer)
    null = Capturer.from_env("m1", "1", environ={"CAPTURE_SPOOL_DIR": str(tmp_path), "CAPTURE_SAMPLE_RATE": "0"})
    assert isinstance(null, NullCapturer) and null.submit({"request_id": "a"}) is False and null.close()
    env = {"CAPTURE_SPOOL_DIR": str(tmp_path), "CAPTURE_SAMPLE_RATE": "0.5", "CAPTURE_SAMPLE_RATE_SD_BASE": "0.1", "CAPTURE_QUEUE_SIZE": "77"}
    sd = Capturer.from_env("sd-base", "2", environ=env)
    other = Capturer.from_env("resnet50", "1", environ=env)
    try:
        assert (sd.sample_rate, other.sample_rate) == (0.1, 0.5)
        assert sd._q.maxsize == 77
        assert sd.dir == str(tmp_path / "sd-base")
    finally:
        sd.close()
        other.close()
    with pytest.raises(ValueError, match="CAPTURE_SAMPLE_RATE: sample rate must be in"):
        Capturer.from_env("m1", environ={"CAPTURE_SPOOL_DIR": str(tmp_path), "CAPTURE_SAMPLE_RATE": "1.5"})
    with pytest.raises(ValueError, match="CAPTURE_QUEUE_SIZE: not a number"):
        Capturer.from_env("m1", environ={"CAPTURE_SPOOL_DIR": str(tmp_path), "CAPTURE_QUEUE_SIZE": "lots"})
    with pytest.raises(ValueError, match="invalid model name"):
        Capturer(tmp_path, "../etc")


def test_capture_package_stays_light():
    """The model process imports only stdlib + numpy for capture (no pyarrow, no pandas)."""
    import subprocess
    import sys

    from capture_testlib import ROOT

    code = "import sys, monitoring.capture; print(sorted(m for m in ('pyarrow', 'pandas', 'duckdb', 'boto3', 'prometheus_client', 'monitoring.ingest.store') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_unwritable_spool_does_not_fail_model_load(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool should be")
    cap = Capturer(blocker, "m1", flush_interval_s=0.01, retry_max_s=0.05)
    assert cap.submit(make_record(0)) is True
    wait_for(lambda: cap.write_errors >= 2, what="write errors on an unusable spool")
    assert "NotADirectoryError" in cap.last_error or "FileExistsError" in cap.last_error, cap.last_error
    assert cap.close(timeout=0.2) is False and cap.lost_on_close == 1
