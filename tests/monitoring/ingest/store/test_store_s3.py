"""The store on S3 (moto server on 127.0.0.1): key layout, reads, compaction."""

from __future__ import annotations

import re

import duckdb
import pyarrow.parquet as pq
import pyarrow as pa
from capture_testlib import BASE_TS, produce, spool_segments

from monitoring.ingest.sidecar import Sidecar
from monitoring.ingest.store import StoreWriter, open_backend, read_records


def test_s3_store_keys_reads_and_compaction(tmp_path, moto_s3):
    url, bucket, s3 = moto_s3
    spool = tmp_path / "spool"
    produce(spool, 200, "m1", batch_size=50, ts=lambda i: BASE_TS + i * 30_000)  # 12:00 .. 13:39
    produce(spool, 10, "m2")
    store = f"s3://{bucket}/capture/v1"
    dc = f"s3://{bucket}/datacapture"
    sc = Sidecar(spool, store, compact_every=0, s3_endpoint_url=url, datacapture=dc)
    sc.start()
    while sc.run_once():
        pass
    sc.close()
    assert spool_segments(spool) == []
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="capture/")["Contents"])
    pat = r"capture/v1/model=(m1|m2)/date=2024-05-01/hour=(12|13)/part-[0-9a-f-]+\.parquet"
    assert all(re.fullmatch(pat, k) for k in keys), keys
    assert {k.split("/")[2] for k in keys} == {"model=m1", "model=m2"}
    assert len([k for k in keys if "model=m1" in k]) == 5  # 4 segments, one straddles 13:00

    t = read_records(store, "m1", s3_endpoint_url=url)
    assert t.num_rows == 200 and t["request_id"].to_pylist() == [f"m1-req-{i:06d}" for i in range(200)]
    assert read_records(store, "m1", since="2024-05-01T13:00:00Z", s3_endpoint_url=url).num_rows == 80
    assert read_records(store, "m2", s3_endpoint_url=url).num_rows == 10

    # every object is a plain Parquet file: readable by pyarrow and DuckDB once downloaded
    body = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert pq.read_table(pa.BufferReader(body)).num_rows > 0
    local = tmp_path / "dl"
    for k in keys:
        p = local / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
    assert duckdb.sql(f"select count(*) from read_parquet('{local}/**/*.parquet', hive_partitioning=true) where model='m1'").fetchall() == [(200,)]

    rep = StoreWriter(open_backend(store, url)).compact()
    assert (rep.partitions, rep.files_before, rep.files_after, rep.rows) == (2, 5, 2, 200)  # m2 has a single file
    assert read_records(store, "m1", s3_endpoint_url=url, dedup=False).num_rows == 200
    dc_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="datacapture/")["Contents"]]
    assert dc_keys and all(re.fullmatch(r"datacapture/local-endpoint/AllTraffic/2024/05/01/1[23]/[0-9a-f-]+\.jsonl", k) for k in dc_keys)
