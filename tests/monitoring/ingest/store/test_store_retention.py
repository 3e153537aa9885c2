"""Local retention: compaction-time deletion of capture partitions older than the setting."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from monitoring.analysis.actuals.labels import load_actuals, save_actuals
from monitoring.analysis.fleet.synthetic import records_table
from monitoring.ingest.sidecar.service import Sidecar
from monitoring.ingest.store import read_records
from monitoring.ingest.store.backend import open_backend
from monitoring.ingest.store.writer import MS_PER_HOUR, StoreWriter, drop_expired

HOUR0 = 1_795_651_200_000  # 2026-11-26T00:00Z
DAY = 24 * MS_PER_HOUR
# Not capture partitions, though they look partition-like: must survive any retention pass.
OTHER_KEYS = ("_monitoring/baselines/model=m/date=2020-01-01/hour=00/b.json",
              "_monitoring/scores/model=m/date=2020-01-01/hour=00/run.json")


def _write(writer: StoreWriter, ts0: int, n: int, tag: str) -> None:
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    writer.write_parts(records_table("m", rng.standard_normal((n, 4)), ts0 + np.arange(n), rng, tag), tag)


def _keys(store) -> list[str]:
    return sorted(e.key for e in open_backend(str(store)).list(""))


def test_drop_expired_keeps_recent_partitions_and_everything_else(tmp_path):
    backend = open_backend(str(tmp_path))
    writer = StoreWriter(backend)
    for day in (0, 2, 5, 9):
        _write(writer, HOUR0 + day * DAY, 10, f"d{day}")
    for key in OTHER_KEYS:
        backend.write(key, b"{}")
    save_actuals(str(tmp_path), pd.DataFrame({"request_id": ["r1"], "label": ["cat"]}))
    before = _keys(tmp_path)

    rep = drop_expired(backend, retain_days=7, now_ms=HOUR0 + 10 * DAY)  # cutoff: day 3, 00:00
    assert (rep.partitions, rep.files) == (2, 2) and rep.bytes > 0
    gone = sorted(set(before) - set(_keys(tmp_path)))
    assert [k.split("/")[1] for k in gone] == ["date=2026-11-26", "date=2026-11-28"]
    ts = read_records(str(tmp_path), "m")["ts_ms"].to_numpy()
    assert len(ts) == 20 and ts.min() == HOUR0 + 5 * DAY
    assert all(k in _keys(tmp_path) for k in OTHER_KEYS)
    assert load_actuals(str(tmp_path))["request_id"].tolist() == ["r1"]
    with pytest.raises(ValueError, match="retain_days must be > 0, got 0"):
        drop_expired(backend, retain_days=0)


def test_sidecar_compaction_pass_applies_retention(tmp_path):
    store = tmp_path / "store"
    writer = StoreWriter(open_backend(str(store)))
    now = int(time.time() * 1000)
    _write(writer, now - 40 * DAY, 5, "old")
    _write(writer, now - 2 * MS_PER_HOUR, 5, "new")
    sidecar = Sidecar(tmp_path / "spool", str(store), compact_every=0, retain_days=30)
    sidecar.start()
    try:
        sidecar.compact()
    finally:
        sidecar.close()
    ts = read_records(str(store), "m")["ts_ms"].to_numpy()
    assert len(ts) == 5 and ts.min() >= now - 2 * MS_PER_HOUR
