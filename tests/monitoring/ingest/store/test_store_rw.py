"""The local Parquet store: layout, schema, pyarrow/DuckDB reads, time filters, compaction, recovery."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from capture_testlib import BASE_TS, make_record, parquet_files, produce, spool_segments

import monitoring.ingest.sidecar.service as svc
from monitoring.ingest.sidecar import Sidecar
from monitoring.ingest.store import FILE_SCHEMA, RECORD_SCHEMA, SCHEMA_VERSION, StoreWriter, open_backend, read_records, read_records_df
from monitoring.ingest.store.writer import META_COMPACTED_FROM

HOUR = 3_600_000


def _ingest(spool, store, **kw):
    sc = Sidecar(spool, store, compact_every=0, **kw)
    sc.start()
    try:
        while sc.run_once():
            pass
    finally:
        sc.close()
    return sc


def test_schema_has_version_and_every_contract_field():
    assert RECORD_SCHEMA.field("schema_version").type == pa.int32()
    assert RECORD_SCHEMA.field("embedding").type == pa.list_(pa.float32())
    assert RECORD_SCHEMA.metadata[b"monitoring.schema_version"] == str(SCHEMA_VERSION).encode()
    assert "model" not in FILE_SCHEMA.names and len(FILE_SCHEMA) == len(RECORD_SCHEMA) - 1
    assert set(make_record(0)) | {"schema_version"} == set(RECORD_SCHEMA.names)


def test_ingest_layout_and_exact_reads(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    # 300 records of m1 over two hours (2024-05-01 12:xx and 13:xx), 120 of m2
    produce(spool, 300, "m1", ts=lambda i: BASE_TS + i * 20_000)
    produce(spool, 120, "m2", batch_size=1000)
    _ingest(spool, store)
    assert spool_segments(spool) == []
    dirs = sorted({str(p.parent.relative_to(store)) for p in parquet_files(store)})
    assert dirs == ["model=m1/date=2024-05-01/hour=12", "model=m1/date=2024-05-01/hour=13", "model=m2/date=2024-05-01/hour=12"]
    assert all(p.name.startswith("part-") for p in parquet_files(store))

    t = read_records(store, "m1")
    assert t.num_rows == 300 and t.schema.names == RECORD_SCHEMA.names
    assert t["request_id"].to_pylist() == [f"m1-req-{i:06d}" for i in range(300)]
    assert t["schema_version"].to_pylist() == [SCHEMA_VERSION] * 300
    row = t.slice(10, 1).to_pylist()[0]
    src = make_record(10)
    assert row["error_code"] == "INVALID_ARG" and row["outcome"] == "error" and row["model"] == "m1"
    np.testing.assert_array_equal(np.array(row["embedding"], np.float32), src["embedding"])

    # time range: [since, until) on ts_ms, any bound format
    since, until = BASE_TS + 100 * 20_000, BASE_TS + 200 * 20_000
    assert read_records(store, "m1", since=since, until=until).num_rows == 100
    assert read_records(store, "m1", since=since / 1000, until=until / 1000).num_rows == 100  # epoch seconds
    assert read_records(store, "m1", since="2024-05-01T13:00:00Z").num_rows == 300 - 180
    df = read_records_df(store, "m2", columns=["request_id", "ts_ms", "pred_label"])
    assert list(df.columns) == ["request_id", "ts_ms", "pred_label", "ts"] and len(df) == 120
    assert str(df["ts"].dt.tz) == "UTC"
    assert read_records(store, "nothing-here").num_rows == 0
    with pytest.raises(ValueError, match="unknown columns"):
        read_records(store, "m1", columns=["nope"])

    # plain pyarrow over the whole store: hive partitions become columns
    whole = pq.read_table(store)
    assert whole.num_rows == 420
    assert sorted(set(whole["model"].to_pylist())) == ["m1", "m2"]

    # DuckDB
    q = f"select model, count(*) n, count(distinct request_id) d, max(len(embedding)) dim from read_parquet('{store}/**/*.parquet', hive_partitioning=true) group by model order by model"
    assert duckdb.sql(q).fetchall() == [("m1", 300, 300, 16), ("m2", 120, 120, 16)]


def test_bad_records_are_rejected_not_fatal(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    d = spool / "m1"
    d.mkdir(parents=True)
    good = {"schema_version": 1, "request_id": "ok-1", "model": "m1", "model_version": "1", "ts_ms": BASE_TS, "outcome": "ok"}
    bad_type = dict(good, request_id="bad-1", image_width="wide")
    bad_model = dict(good, request_id="bad-2", model="../x")
    missing = {k: v for k, v in good.items() if k != "request_id"}
    lines = [json.dumps({"_segment": {}})] + [json.dumps(r) for r in (good, bad_type, bad_model, missing)] + ["{broken"]
    (d / "0000000000001-1-a-00000000.jsonl").write_text("\n".join(lines) + "\n")
    sc = _ingest(spool, store)
    assert read_records(store, "m1")["request_id"].to_pylist() == ["ok-1"]
    assert sc.metrics.rejected.labels("m1")._value.get() == 4
    kept = (spool / "_rejected" / "m1" / "0000000000001-1-a-00000000.jsonl").read_text().splitlines()
    reasons = [json.loads(line)["_reject_reason"] for line in kept[1:]]  # line 0: the segment header
    assert reasons == [
        "invalid model name '../x'",
        "ArrowInvalid: Could not convert 'wide' with type str: tried to convert to int32",
        "ValueError: required field 'request_id' is missing",
    ]


def test_reingesting_a_segment_is_idempotent(tmp_path, monkeypatch):
    """Crash between 'Parquet durable' and 'segment deleted': the next run rewrites the same part."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    produce(spool, 200, batch_size=50)
    real_unlink = svc.os.unlink

    def crash_before_delete(path):
        if str(path).endswith(".jsonl"):
            raise OSError(13, "simulated crash before delete")
        return real_unlink(path)

    monkeypatch.setattr(svc.os, "unlink", crash_before_delete)
    sc = Sidecar(spool, store, compact_every=0, retry_initial_s=0)
    sc.start()
    sc.run_once()
    sc.close()
    assert len(spool_segments(spool)) == 4  # not deleted ...
    assert read_records(store, "m1", dedup=False).num_rows == 50  # ... but its part is written (pass stopped at the error)
    monkeypatch.setattr(svc.os, "unlink", real_unlink)
    _ingest(spool, store)
    assert spool_segments(spool) == []
    assert read_records(store, "m1", dedup=False).num_rows == 200
    assert len(parquet_files(store)) == 4


def test_compaction_reduces_files_keeps_rows_and_dedupes(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    produce(spool, 500, batch_size=25)
    _ingest(spool, store)
    files = parquet_files(store)
    assert len(files) == 20
    shutil.copy(files[0], files[0].with_name("part-duplicate.parquet"))  # a duplicated part
    assert read_records(store, "m1", dedup=False).num_rows == 525
    assert read_records(store, "m1").num_rows == 500
    rep = StoreWriter(open_backend(store)).compact()
    assert (rep.partitions, rep.files_before, rep.files_after, rep.rows, rep.duplicates_removed) == (1, 21, 1, 500, 25)
    (only,) = parquet_files(store)
    assert only.name.startswith("compact-")
    assert read_records(store, "m1", dedup=False)["request_id"].to_pylist() == [f"m1-req-{i:06d}" for i in range(500)]
    assert pq.ParquetFile(only).metadata.num_rows == 500


def test_interrupted_compaction_is_finished_by_recover(tmp_path, monkeypatch):
    spool, store = tmp_path / "spool", tmp_path / "store"
    produce(spool, 100, batch_size=25)
    _ingest(spool, store)
    backend = open_backend(store)
    monkeypatch.setattr(type(backend), "delete", lambda self, key: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        StoreWriter(backend).compact()
    monkeypatch.undo()
    assert len(parquet_files(store)) == 5  # compacted file + its 4 inputs
    assert read_records(store, "m1", dedup=False).num_rows == 200
    assert read_records(store, "m1").num_rows == 100  # readers dedupe meanwhile
    compacted = [p for p in parquet_files(store) if p.name.startswith("compact-")][0]
    assert len(json.loads(pq.read_metadata(compacted).metadata[META_COMPACTED_FROM])) == 4
    rep = StoreWriter(backend).recover()
    assert len(rep.compaction_leftovers) == 4
    assert parquet_files(store) == [compacted]
    assert read_records(store, "m1", dedup=False).num_rows == 100


def test_recover_removes_temp_files(tmp_path):
    store = tmp_path / "store"
    part = store / "model=m1/date=2024-05-01/hour=12"
    part.mkdir(parents=True)
    (part / ".part-x.parquet.tmp").write_bytes(b"PAR1 partial")
    assert pq.read_table(store).num_rows == 0  # hidden temp files never break readers
    other = store / "_monitoring" / "baselines"  # files of other tools under the store root
    other.mkdir(parents=True)
    for name in (".baseline.parquet.tmp", "a.parquet", "b.parquet"):
        (other / name).write_bytes(b"not ours")
    rep = StoreWriter(open_backend(store)).recover()
    assert rep.tmp_files == ["model=m1/date=2024-05-01/hour=12/.part-x.parquet.tmp"] and rep.tmp_bytes == 12
    assert list(part.iterdir()) == []
    assert StoreWriter(open_backend(store)).compact().partitions == 0
    assert sorted(p.name for p in other.iterdir()) == [".baseline.parquet.tmp", "a.parquet", "b.parquet"]


def test_open_backend_is_the_one_opener(tmp_path):
    """A path opens a backend; a backend (subclasses included) passes through as it is."""
    from capture_testlib import CountingBackend

    from monitoring.ingest.store import LocalBackend

    local = open_backend(tmp_path)
    assert isinstance(local, LocalBackend) and local.root == str(tmp_path)
    assert open_backend(local) is local
    counting = CountingBackend(str(tmp_path))
    assert open_backend(counting, "http://127.0.0.1:1") is counting
