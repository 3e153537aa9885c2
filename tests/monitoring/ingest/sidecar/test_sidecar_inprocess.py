"""The sidecar in-process: metrics endpoint, disk full, unreachable S3 (retried, nothing lost)."""

from __future__ import annotations

import socket
import threading
import uuid
import urllib.request

import pytest
from capture_testlib import DiskFull, free_port, make_record, parquet_files, produce, spool_segments, wait_for
from prometheus_client.parser import text_string_to_metric_families

import monitoring.capture.capturer as capmod
import monitoring.ingest.store.backend as backend_mod
from monitoring.capture import Capturer
from monitoring.ingest.sidecar import Sidecar, SidecarBusy
from monitoring.ingest.store import read_records
from bench.loadtest.loss import match_ids


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Running:
    """sidecar.serve() in a background thread."""

    def __init__(self, sc: Sidecar) -> None:
        self.sc = sc
        sc.start()
        self.left: list[int] = []
        self.t = threading.Thread(target=lambda: self.left.append(sc.serve()), daemon=True)
        self.t.start()

    def stop(self) -> int:
        self.sc.stop()
        self.t.join(60)
        assert not self.t.is_alive()
        self.sc.close()
        return self.left[0]


def test_metrics_endpoint_reports_exact_counters(tmp_path, monkeypatch):
    spool, store = tmp_path / "spool", tmp_path / "store"
    # a model process whose queue overflows while its writer is stuck: 5 drops
    entered, release = threading.Event(), threading.Event()
    real_write = capmod.write_file_atomic

    def blocking_write(path, data, **kw):
        entered.set()
        assert release.wait(60)
        return real_write(path, data, **kw)

    monkeypatch.setattr(capmod, "write_file_atomic", blocking_write)
    cap = Capturer(spool, "m1", queue_size=10, batch_size=100, flush_interval_s=0.01)
    cap.submit(make_record(0))
    assert entered.wait(30)
    for i in range(1, 16):
        cap.submit(make_record(i))
    release.set()
    assert cap.close()
    assert (cap.written, cap.dropped) == (11, 5)
    produce(spool, 40, "m2", batch_size=20)

    sc = Sidecar(spool, store, metrics_port=0, metrics_addr="127.0.0.1", compact_every=0)
    sc.start()
    try:
        before = scrape(sc.metrics_port)
        assert before[("capture_spool_segments", ())] == 4  # 2 segments of m1 (1 + 10), 2 of m2
        assert sc.run_once() == 4
        m = scrape(sc.metrics_port)
    finally:
        sc.close()
    m1, m2 = (("model", "m1"),), (("model", "m2"),)
    assert m[("capture_records_received_total", m1)] == 11
    assert m[("capture_records_written_total", m1)] == 11
    assert m[("capture_records_written_total", m2)] == 40
    assert m[("capture_records_dropped_total", m1)] == 5
    assert m.get(("capture_records_dropped_total", m2), 0) == 0
    assert m[("capture_spool_segments", ())] == 0 and m[("capture_spool_bytes", ())] == 0
    assert m[("capture_write_seconds_count", ())] == 4
    on_disk = sum(p.stat().st_size for p in parquet_files(store))
    assert m[("capture_bytes_written_total", m1)] + m[("capture_bytes_written_total", m2)] == on_disk
    assert m[("capture_store_up", ())] == 1
    assert read_records(store, "m1").num_rows == 11


def test_disk_full_is_reported_and_retried_without_loss(tmp_path, monkeypatch):
    spool, store = tmp_path / "spool", tmp_path / "store"
    produce(spool, 100, batch_size=25)
    disk = DiskFull(backend_mod.write_file_atomic)
    monkeypatch.setattr(backend_mod, "write_file_atomic", disk)
    sc = Sidecar(spool, store, compact_every=0, poll_interval=0.01, retry_initial_s=0.01, retry_max_s=0.05)
    run = Running(sc)
    wait_for(lambda: sc.metrics.write_errors.labels("store")._value.get() >= 3, what="retried store errors")
    assert sc.metrics.store_up._value.get() == 0
    assert "No space left on device" in sc.last_error
    assert len(spool_segments(spool)) == 4 and parquet_files(store) == []
    disk.full.clear()
    wait_for(lambda: not spool_segments(spool), what="spool drained after the disk has room again")
    assert run.stop() == 0
    assert sc.metrics.store_up._value.get() == 1
    stored = read_records(store, "m1", dedup=False)["request_id"].to_pylist()
    match = match_ids([make_record(i)["request_id"] for i in range(100)], stored)  # by id, not by total
    assert match.exact, match.summary()


def test_unreachable_s3_is_retried_until_it_comes_up(tmp_path, aws_env, caplog):
    import boto3
    from moto.server import ThreadedMotoServer

    spool = tmp_path / "spool"
    produce(spool, 60, batch_size=20)
    # Hold the port, bound but not listening (connections are refused), until moto takes it:
    # a port merely found free could be taken by another process in a busy batch run, and the
    # sidecar would then see that server's answers instead of "Could not connect".
    reserved = socket.socket()
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # moto keeps one S3 per process, shared with earlier tests' servers: a bucket of our own
    bucket = f"capture-{uuid.uuid4().hex[:12]}"
    sc = Sidecar(spool, f"s3://{bucket}/cap", s3_endpoint_url=url, compact_every=0, poll_interval=0.01, retry_initial_s=0.05, retry_max_s=0.2)
    run = Running(sc)
    server = None
    try:
        wait_for(lambda: sc.metrics.write_errors.labels("store")._value.get() >= 2, what="S3 errors")
        assert "Could not connect" in sc.last_error or "Connect" in sc.last_error, sc.last_error
        assert len(spool_segments(spool)) == 3  # kept for retry
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        reserved.close()
        server.start()
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        wait_for(lambda: not spool_segments(spool), what="spool drained once S3 is reachable")
        assert run.stop() == 0
        # The outage is reported: its length, and how long the backlog took once S3 was back.
        assert sc.metrics.outages._value.get() == 1 and sc.metrics.last_outage_seconds._value.get() > 0
        assert "spool backlog caught up" in caplog.text and "store writes recovered after" in caplog.text
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert len(keys) == 3 and all(k.startswith("cap/model=m1/date=2024-05-01/hour=12/part-") for k in keys)
        stored = read_records(f"s3://{bucket}/cap", "m1", dedup=False, s3_endpoint_url=url)["request_id"].to_pylist()
        match = match_ids([make_record(i)["request_id"] for i in range(60)], stored)  # by id, not by total
        assert match.exact, match.summary()
    finally:
        reserved.close()
        if run.t.is_alive():
            run.stop()
        if server is not None:
            server.stop()


def test_one_sidecar_per_spool(tmp_path):
    a = Sidecar(tmp_path / "spool", tmp_path / "store")
    a.start()
    try:
        with pytest.raises(SidecarBusy, match="already serves spool"):
            Sidecar(tmp_path / "spool", tmp_path / "store").start()
    finally:
        a.close()
    b = Sidecar(tmp_path / "spool", tmp_path / "store")
    b.start()  # free again
    b.close()
