"""A synthetic fleet day written straight into the capture store (benchmarks, tests).

Rows are written hour by hour, a few files per hour (as the sidecar's segments would be),
with the real record schema, so the reader, the pruning and the map step see what production
sees; nothing holds more than one file's rows.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import pyarrow as pa

from monitoring.ingest.store.backend import open_backend
from monitoring.ingest.store.schema import RECORD_SCHEMA
from monitoring.ingest.store.writer import MS_PER_HOUR, StoreWriter

#: (rng, n, hour) -> (n, d) float32 embeddings for that hour.
Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


def records_table(model: str, X: np.ndarray, ts_ms: np.ndarray, rng: np.random.Generator, id_prefix: str) -> pa.Table:
    """A RECORD_SCHEMA table holding ``X`` as embeddings plus plausible image metadata."""
    n, d = X.shape
    X = np.ascontiguousarray(X, dtype=np.float32)
    emb = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32)), pa.array(X.reshape(-1)))
    cols = {
        "schema_version": pa.array(np.full(n, 1, np.int32)),
        "request_id": pa.array([f"{id_prefix}-{i}" for i in range(n)]),
        "model": pa.array([model] * n),
        "model_version": pa.array(["1"] * n),
        "ts_ms": pa.array(ts_ms.astype(np.int64)),
        "outcome": pa.array(["ok"] * n),
        "brightness": pa.array(rng.normal(120.0, 20.0, n)),
        "contrast": pa.array(rng.normal(50.0, 8.0, n)),
        "embedding": emb,
    }
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in RECORD_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)


def write_day(
    store: str | os.PathLike[str],
    model: str,
    day_start_ms: int,
    n: int,
    sampler: Sampler,
    *,
    hours: int = 24,
    files_per_hour: int = 2,
    seed: int = 0,
) -> int:
    """Write ``n`` records spread evenly over ``hours`` hours from ``day_start_ms``; returns bytes written."""
    writer = StoreWriter(open_backend(store))
    rng = np.random.default_rng(seed)
    total = 0
    per_hour = np.full(hours, n // hours)
    per_hour[: n % hours] += 1
    for h in range(hours):
        sizes = np.full(files_per_hour, per_hour[h] // files_per_hour)
        sizes[: per_hour[h] % files_per_hour] += 1
        for f, m in enumerate(sizes):
            if m == 0:
                continue
            X = sampler(rng, int(m), h)
            ts = day_start_ms + h * MS_PER_HOUR + np.sort(rng.integers(0, MS_PER_HOUR, int(m)))
            table = records_table(model, X, ts, rng, f"h{h}f{f}")
            total += sum(p.bytes for p in writer.write_parts(table, f"{h:02d}-{f}"))
    return total
