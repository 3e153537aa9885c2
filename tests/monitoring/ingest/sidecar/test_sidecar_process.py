"""``python -m monitoring sidecar`` as a real process: SIGTERM, kill -9, restart, leftovers."""

from __future__ import annotations

import os
import signal
import threading

import pyarrow.parquet as pq
from capture_testlib import BASE_TS, SidecarProc, make_record, parquet_files, produce, spool_segments, wait_for

from monitoring.capture import Capturer
from monitoring.ingest.store import read_records


def test_graceful_stop_loses_nothing(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    sc = SidecarProc(spool, store, tmp_path / "sidecar.log")
    n = 3000
    caps = [Capturer(spool, m, "1", batch_size=64, flush_interval_s=0.02) for m in ("m1", "m2")]

    def serve(cap):  # two "models" serving requests while the sidecar ingests
        for i in range(n):
            assert cap.submit(make_record(i, model=cap.model_name))

    threads = [threading.Thread(target=serve, args=(c,)) for c in caps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c.close(timeout=60) for c in caps)  # graceful server stop: everything to the spool
    sc.proc.send_signal(signal.SIGTERM)  # graceful sidecar stop: drains the spool
    assert sc.wait() == 0, sc.output()
    assert "received SIGTERM" in sc.output()
    assert spool_segments(spool) == []
    for m in ("m1", "m2"):
        t = read_records(store, m, dedup=False)
        assert t.num_rows == n
        assert t["request_id"].to_pylist() == [f"{m}-req-{i:06d}" for i in range(n)]
    assert sum(c.dropped for c in caps) == 0


def test_kill9_leaves_no_corrupt_file_and_restart_resumes(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    n = 10_000
    produce(spool, n, batch_size=20)  # 500 segments waiting
    log = tmp_path / "sidecar.log"
    sc = SidecarProc(spool, store, log)
    wait_for(lambda: len(parquet_files(store)) >= 20, what="sidecar made progress")
    os.kill(sc.proc.pid, signal.SIGKILL)
    assert sc.wait() == -signal.SIGKILL
    left = len(spool_segments(spool))
    assert 0 < left < 500, "the kill should land mid-stream"
    # no corrupt file: every visible Parquet file reads completely; the store reads as a whole
    for p in parquet_files(store):
        assert pq.ParquetFile(p).read().num_rows > 0
    written = pq.read_table(store).num_rows
    assert written >= (500 - left) * 20
    # restart resumes from the spool
    sc2 = SidecarProc(spool, store, log)
    assert f"resuming: {left} segments" in sc2.output() or left == 0
    wait_for(lambda: not spool_segments(spool), what="spool drained after restart")
    sc2.proc.send_signal(signal.SIGTERM)
    assert sc2.wait() == 0, sc2.output()
    t = read_records(store, "m1")
    assert t.num_rows == n
    assert t["request_id"].to_pylist() == [f"m1-req-{i:06d}" for i in range(n)]
    assert read_records(store, "m1", dedup=False).num_rows == n  # parts are idempotent: not even raw duplicates


def test_leftover_temp_files_are_reported_on_restart(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    produce(spool, 30, batch_size=10)
    # what a kill -9 in the middle of writing leaves behind:
    part_dir = store / "model=m1/date=2024-05-01/hour=12"
    part_dir.mkdir(parents=True)
    (part_dir / ".part-1714564800000-1-dead-00000000.parquet.tmp").write_bytes(b"PAR1" + b"\0" * 96)  # sidecar
    (spool / "m1" / f"{BASE_TS}-999999999-dead-00000000.jsonl.tmp").write_bytes(b'{"_segment":{}}\n{"req')  # a dead model process
    live = spool / "m1" / f"{BASE_TS}-{os.getpid()}-live-00000000.jsonl.tmp"  # a live writer: not touched
    live.write_bytes(b"...")
    sc = SidecarProc(spool, store, tmp_path / "sidecar.log", "--once")
    assert sc.wait() == 0, sc.output()
    out = sc.output()
    assert "unclean stop detected: removed 1 unfinished temp files (100 bytes) from the store" in out
    assert "and 1 (21 bytes) from the spool" in out
    assert "resuming: 3 segments" in out
    assert not any(p.name.endswith(".tmp") for p in store.rglob("*"))
    assert live.exists() and not (spool / "m1" / f"{BASE_TS}-999999999-dead-00000000.jsonl.tmp").exists()
    assert read_records(store, "m1").num_rows == 30


def test_second_sidecar_on_same_spool_refuses(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    a = SidecarProc(spool, store, tmp_path / "a.log")
    try:
        import subprocess

        from capture_testlib import PY, ROOT

        r = subprocess.run([PY, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store), "--metrics-port", "-1"],
                           cwd=str(ROOT), capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 2
        assert f"error: another sidecar (pid {a.proc.pid}) already serves spool" in r.stderr
    finally:
        a.proc.send_signal(signal.SIGTERM)
        assert a.wait() == 0


def thread_niceness(pid: int) -> set[int]:
    """The niceness of every thread of process ``pid`` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            out.add(int(f.read().rsplit(")", 1)[1].split()[16]))
    return out


def test_the_sidecar_renices_itself_and_its_threads(tmp_path):
    """Every way of starting it (host services, the docker entrypoint, by hand) gets the
    niceness: the sidecar applies --niceness itself, to the threads it already has too."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    inc = min(4, 19 - base)
    if inc <= 0:
        import pytest

        pytest.skip(f"this process runs at niceness {base}: the sidecar cannot go lower")
    sc = SidecarProc(tmp_path / "spool", tmp_path / "store", tmp_path / "sidecar.log", "--niceness", str(inc))
    try:
        niceness = thread_niceness(sc.proc.pid)  # it is serving: every thread it has started by now
        assert niceness == {base + inc}, (niceness, sc.output())
    finally:
        sc.proc.send_signal(signal.SIGTERM)
        assert sc.wait() == 0, sc.output()
