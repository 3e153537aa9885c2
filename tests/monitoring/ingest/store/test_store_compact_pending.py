"""Periodic compaction lists only the partitions written since the last pass, not the store."""

from __future__ import annotations

import numpy as np

from monitoring.analysis.fleet.synthetic import records_table
from monitoring.ingest.store import read_records
from capture_testlib import CountingBackend
from monitoring.ingest.store.writer import MS_PER_HOUR, StoreWriter

HOUR0 = 1_795_651_200_000  # 2026-11-26T00:00Z


def _write(writer, hour, n, tag):
    rng = np.random.default_rng(hour)
    ts = HOUR0 + hour * MS_PER_HOUR + np.arange(n)
    writer.write_parts(records_table("m", rng.standard_normal((n, 4)), ts, rng, f"{tag}-{hour}"), f"{tag}-{hour}")


def test_compact_pending_lists_only_dirty_partitions(tmp_path):
    backend = CountingBackend(tmp_path)
    writer = StoreWriter(backend)
    for hour in range(5):
        for f in range(2):
            _write(writer, hour, 10, f"a{f}")
    first = writer.compact_pending()  # a fresh writer does not know what is pending: one full pass
    assert backend.prefixes == [""] and first.partitions == 5
    backend.prefixes.clear()
    assert writer.compact_pending().partitions == 0 and backend.prefixes == []  # nothing written since
    _write(writer, 3, 10, "b")
    rep = writer.compact_pending()
    assert backend.prefixes == ["model=m/date=2026-11-26/hour=03/"]
    assert (rep.partitions, rep.files_before, rep.files_after) == (1, 2, 1)
    assert read_records(str(tmp_path), "m").num_rows == 5 * 20 + 10
