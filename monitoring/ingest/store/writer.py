"""Writing the Parquet store: partitioned parts, compaction, crash recovery.

Layout (local directory or S3 prefix)::

    model=<model>/date=YYYY-MM-DD/hour=HH/part-<segment>.parquet     one per spool segment
    model=<model>/date=YYYY-MM-DD/hour=HH/compact-<ts>-<uuid>.parquet  merged small parts

Idempotence: a part is named after the spool segment it came from, so re-ingesting a segment
after a crash (Parquet written, segment not yet deleted) overwrites the same file instead of
adding a copy. A compacted file lists its inputs in its Parquet metadata
(``monitoring.compacted_from``); if a crash leaves inputs beside it, :meth:`StoreWriter.recover`
deletes them. Readers dedupe on ``(request_id, ts_ms)`` as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from monitoring.capture.fields import SCHEMA_VERSION

from .backend import Backend
from .projection import DEFAULT_PROJECTION, Projection, add_projections
from .schema import FILE_SCHEMA

log = logging.getLogger(__name__)

PART_PREFIX = "part-"
COMPACT_PREFIX = "compact-"
PARQUET_SUFFIX = ".parquet"
META_COMPACTED_FROM = b"monitoring.compacted_from"
META_SOURCE = b"monitoring.source"
MS_PER_HOUR = 3_600_000
#: compaction merges the files of a partition below this size; larger ones are left as they are
SMALL_FILE_BYTES = 32 * 1024 * 1024


def partition_dir(model: str, hour_bucket: int) -> str:
    """``model=<m>/date=YYYY-MM-DD/hour=HH`` for an hour bucket (``ts_ms // 3_600_000``)."""
    t = time.gmtime(hour_bucket * 3600)
    return f"model={model}/date={t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}/hour={t.tm_hour:02d}"


def parse_partition(key: str) -> dict[str, str]:
    """``{'model': ..., 'date': ..., 'hour': ...}`` from a store key (missing parts omitted)."""
    out = {}
    for part in key.split("/")[:-1]:
        k, eq, v = part.partition("=")
        if eq:
            out[k] = v
    return out


def is_partition_key(key: str) -> bool:
    """True for ``model=<m>/date=<d>/hour=<h>/<file>``: the only keys the capture store owns."""
    parts = key.split("/")
    return len(parts) == 4 and parts[0].startswith("model=") and parts[1].startswith("date=") and parts[2].startswith("hour=")


def partition_start_ms(key: str) -> int | None:
    p = parse_partition(key)
    if "date" not in p or "hour" not in p:
        return None
    try:
        y, m, d = (int(x) for x in p["date"].split("-"))
        import calendar

        return (calendar.timegm((y, m, d, int(p["hour"]), 0, 0, 0, 0, 0))) * 1000
    except ValueError:
        return None


def dedupe(table: pa.Table) -> pa.Table:
    """Drop rows repeating an earlier ``(request_id, ts_ms)``; keeps the first, keeps order."""
    if table.num_rows < 2 or "request_id" not in table.column_names or "ts_ms" not in table.column_names:
        return table
    idx = pa.array(np.arange(table.num_rows, dtype=np.int64))
    keys = pa.table({"request_id": table["request_id"], "ts_ms": table["ts_ms"], "__i": idx})
    first = keys.group_by(["request_id", "ts_ms"], use_threads=False).aggregate([("__i", "min")])["__i_min"]
    if len(first) == table.num_rows:
        return table
    return table.take(np.sort(first.to_numpy()))


def to_parquet_bytes(table: pa.Table, extra_meta: dict[bytes, bytes] | None = None) -> bytes:
    meta = dict(table.schema.metadata or {})
    meta[b"monitoring.schema_version"] = str(SCHEMA_VERSION).encode()
    if extra_meta:
        meta.update(extra_meta)
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


@dataclass
class WrittenPart:
    key: str
    rows: int
    bytes: int


@dataclass
class CompactionReport:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    duplicates_removed: int = 0
    #: every partition directory the pass looked at (compacted or not): where new rows may be
    dirs: list[str] = field(default_factory=list)


@dataclass
class RecoveryReport:
    tmp_files: list[str] = field(default_factory=list)
    tmp_bytes: int = 0
    compaction_leftovers: list[str] = field(default_factory=list)


class StoreWriter:
    """Writes record tables into a :class:`Backend` as Hive-partitioned Parquet."""

    def __init__(self, backend: Backend, projection: Projection | None = DEFAULT_PROJECTION) -> None:
        self.backend = backend
        # a seeded random projection stored beside each embedding (monitoring/ingest/store/projection.py):
        # raw rescoring reads it instead of the full width; None writes embeddings only
        self.projection = projection
        #: called as ``on_compacted(dir, key, table, data_bytes, whole)`` after each compacted
        #: file is written: ``table`` = its rows (already in memory), ``whole`` = it is now the
        #: partition's only file. The sidecar makes drift states from them without a re-read.
        self.on_compacted: Any = None
        # partitions written since the last successful compact_pending(); None = not known yet
        # (a fresh process: the first pass looks at everything once)
        self._dirty: set[str] | None = None

    def write_parts(self, table: pa.Table, part_name: str) -> list[WrittenPart]:
        """Write a RECORD_SCHEMA table as one ``part-<part_name>.parquet`` per partition it touches."""
        if table.num_rows == 0:
            return []
        models = table["model"].to_numpy(zero_copy_only=False)
        hours = table["ts_ms"].to_numpy() // MS_PER_HOUR
        file_cols = FILE_SCHEMA.names
        out = []
        for model in sorted(set(models)):
            for hour in sorted(set(hours[models == model].tolist())):
                mask = (models == model) & (hours == hour)
                sub = table.filter(pa.array(mask)).select(file_cols)
                sub, pmeta = add_projections(sub, self.projection)
                key = f"{partition_dir(model, int(hour))}/{PART_PREFIX}{part_name}{PARQUET_SUFFIX}"
                data = to_parquet_bytes(sub, {META_SOURCE: part_name.encode(), **pmeta})
                self.backend.write(key, data)
                if self._dirty is not None:
                    self._dirty.add(key.rsplit("/", 1)[0])
                out.append(WrittenPart(key, sub.num_rows, len(data)))
        return out

    # -- recovery ---------------------------------------------------------------------------
    def recover(self) -> RecoveryReport:
        """Remove temp files left by a crash and finish interrupted compactions."""
        rep = RecoveryReport()
        for e in self.backend.list_tmp():
            if not is_partition_key(e.key):
                continue  # other tools keep files under the store root (e.g. _monitoring/): not ours
            rep.tmp_files.append(e.key)
            rep.tmp_bytes += e.size
            self.backend.delete(e.key)
        by_dir = _group_by_dir(self.backend.list())
        for files in by_dir.values():
            names = {k.rsplit("/", 1)[-1]: k for k, _ in files}
            compacts = [k for n, k in names.items() if n.startswith(COMPACT_PREFIX)]
            if not compacts or len(names) < 2:
                continue
            for ck in compacts:
                for src in _compacted_from(self.backend, ck):
                    if src in names and names[src] != ck:
                        rep.compaction_leftovers.append(names[src])
                        self.backend.delete(names[src])
        return rep

    # -- compaction -------------------------------------------------------------------------
    def compact_pending(self, min_files: int = 2) -> CompactionReport:
        """Compact only the partitions this writer wrote since the last pass (all, the first time).

        A periodic pass then lists a handful of hour directories instead of the whole store.
        Partitions stay pending until a pass over them succeeds.
        """
        if self._dirty is None:
            self._dirty = set()
            try:
                return self.compact(min_files=min_files)
            except BaseException:
                self._dirty = None
                raise
        dirs, self._dirty = self._dirty, set()
        try:
            return self.compact(min_files=min_files, dirs=dirs)
        except BaseException:
            self._dirty |= dirs
            raise

    def compact(
        self,
        model: str | None = None,
        min_files: int = 2,
        skip_dirs: set[str] | None = None,
        dirs: set[str] | None = None,
    ) -> CompactionReport:
        """Merge the small Parquet files of each partition into one (dedupes on the way).

        ``dirs``: only these partition directories (each listed on its own), not the whole store.
        """
        rep = CompactionReport()
        if dirs is not None:
            entries = [e for d in sorted(dirs) for e in self.backend.list(d + "/")]
        else:
            entries = self.backend.list(f"model={model}/" if model else "")
        groups = _group_by_dir(entries)
        rep.dirs = sorted(d for d in groups if not (skip_dirs and d in skip_dirs))
        for d, files in sorted(groups.items()):
            if skip_dirs and d in skip_dirs:
                continue
            small = [(k, s) for k, s in files if s < SMALL_FILE_BYTES]
            if len(small) < min_files:
                continue
            tables = [_read_file(self.backend, k) for k, _ in small]
            merged = pa.concat_tables(tables, promote_options="default")
            n_in = merged.num_rows
            merged = dedupe(merged)
            merged = merged.take(pc.sort_indices(merged["ts_ms"]))
            # (re)project: inputs written before projections existed get theirs here
            merged, pmeta = add_projections(merged, self.projection)
            sources = [k.rsplit("/", 1)[-1] for k, _ in small]
            first_ts = int(merged["ts_ms"][0].as_py()) if merged.num_rows else 0
            name = f"{COMPACT_PREFIX}{first_ts:013d}-{uuid.uuid4().hex[:12]}{PARQUET_SUFFIX}"
            data = to_parquet_bytes(merged, {META_COMPACTED_FROM: json.dumps(sources).encode(), **pmeta})
            self.backend.write(f"{d}/{name}", data)
            for k, _ in small:  # a crash here leaves sources; recover() removes them
                self.backend.delete(k)
            if self.on_compacted is not None:
                try:
                    self.on_compacted(d, f"{d}/{name}", merged, len(data), len(small) == len(files))
                except Exception as e:  # a hook failure must not fail compaction (states are remade on read)
                    log.warning("compaction hook failed for %s: %s", d, e)
            rep.partitions += 1
            rep.files_before += len(small)
            rep.files_after += 1
            rep.rows += merged.num_rows
            rep.duplicates_removed += n_in - merged.num_rows
        return rep


@dataclass
class RetentionReport:
    partitions: int = 0
    files: int = 0
    bytes: int = 0


def drop_expired(backend: Backend, retain_days: float, now_ms: int | None = None) -> RetentionReport:
    """Delete capture partitions whose hour ended more than ``retain_days`` ago.

    Only ``model=/date=/hour=/`` keys are touched: baselines, actuals and score runs live
    outside those and are never listed here as deletable.
    """
    if retain_days <= 0:
        raise ValueError(f"retain_days must be > 0, got {retain_days}")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = now_ms - int(retain_days * 24 * MS_PER_HOUR)
    rep = RetentionReport()
    expired_dirs = set()
    for e in backend.list(""):
        start = partition_start_ms(e.key) if is_partition_key(e.key) else None
        if start is None or start + MS_PER_HOUR > cutoff:
            continue
        backend.delete(e.key)
        expired_dirs.add(e.key.rsplit("/", 1)[0])
        rep.files += 1
        rep.bytes += e.size
    rep.partitions = len(expired_dirs)
    return rep


def _group_by_dir(entries: list[Any]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for e in entries:
        if not e.key.endswith(PARQUET_SUFFIX) or not is_partition_key(e.key):
            continue
        d = e.key.rsplit("/", 1)[0]
        out.setdefault(d, []).append((e.key, e.size))
    return out


def _read_file(backend: Backend, key: str) -> pa.Table:
    # ParquetFile, not pq.read_table: the latter would add the Hive path fields as columns
    with pq.ParquetFile(backend.open_input(key)) as pf:
        return pf.read()


def _compacted_from(backend: Backend, key: str) -> list[str]:
    try:
        meta = pq.read_metadata(backend.open_input(key)).metadata or {}
        return list(json.loads(meta.get(META_COMPACTED_FROM, b"[]")))
    except Exception as e:  # unreadable footer: leave everything as is, readers dedupe
        log.warning("cannot read compaction metadata of %s: %s", key, e)
        return []
