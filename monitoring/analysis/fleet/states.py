"""Per-partition mergeable states stored beside the data, made at ingest, reused by scoring.

A day of a fleet is then a merge of 24 small files, not a re-read of 8 GB (whylogs' idea:
profile when the data is logged, merge later). Layout, one file per (space, baseline, hour)::

    _monitoring/states/model=<m>/space=<s>/baseline=<tag>/date=<d>/hour=<h>.npz

A state is used only when it was made

* for the same baseline: ``tag`` is the baseline version plus a CRC of what the detectors were
  fitted on (version, creation time, detector settings, width, and the representation: full width
  or the seeded projection's dim and seed), so a newer baseline, a rebuilt one with the same
  number, or the same baseline scored on another representation never reads another's states
  (the tag and the representation are checked again inside the file); and
* from the same files: the partition's file names and sizes are fingerprinted; a partition that
  got late rows, or was compacted, is read again and its state rewritten.

Otherwise scoring reads the raw partition once and writes the state it computed, so the next run
(or the next window over the same hour) merges instead of reading.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterable

from monitoring.analysis.drift.mergeable import states_from_bytes, states_to_bytes
from monitoring.ingest.store.backend import Backend
from monitoring.ingest.store.projection import projection_spec

log = logging.getLogger(__name__)

STATES_PREFIX = "_monitoring/states/"
MS_PER_HOUR = 3_600_000


def baseline_tag(baseline: Any, space: str, projection: Any = None) -> str:
    """``v<version>-<crc>``: what a state of ``space`` was made for (see module doc).

    ``projection``: the :class:`~monitoring.ingest.store.projection.Projection` the suite was fitted on
    (None: full width; its tag is the one states had before projections, so they stay valid)."""
    sp = baseline.spaces[space]
    what_d = {"version": baseline.version, "created_at": baseline.manifest.get("created_at"),
              "detectors": baseline.detector_config, "dim": int(sp.embeddings.shape[1]), "n": int(len(sp.embeddings)),
              "source": sp.source}
    if projection is not None:
        what_d["projection"] = projection_spec(projection)
    what = json.dumps(what_d, sort_keys=True, default=str)
    return f"v{baseline.version}-{zlib.crc32(what.encode()):08x}"


def fingerprint(files: Iterable[tuple[str, int]]) -> str:
    """CRC of a partition's (file name, size) pairs: changes when rows are added or compacted."""
    text = "\n".join(f"{k.rsplit('/', 1)[-1]}:{int(s)}" for k, s in sorted(files))
    return f"{zlib.crc32(text.encode()):08x}"


@dataclass
class StateCache:
    """Where the states of one (model, embedding space, baseline) live, and counters of use."""

    backend: Backend
    model: str
    space: str
    tag: str
    #: the representation the states are made on (``projection_spec``; None: full width)
    representation: str | None = None
    hits: int = 0
    misses: int = 0
    writes: int = 0

    @classmethod
    def for_suite(cls, backend: Backend, model: str, space: str, baseline: Any, suite: Any) -> "StateCache":
        """The cache of ``space``'s states for ``suite`` as fitted on ``baseline`` (and its projection)."""
        projection = getattr(suite, "projection_", None)
        return cls(backend, model, space, baseline_tag(baseline, space, projection), projection_spec(projection))

    def key(self, partition: str) -> str:
        # partition = "model=<m>/date=<d>/hour=<h>"
        tail = partition.split("/", 1)[1] if partition.startswith("model=") else partition
        return f"{STATES_PREFIX}model={self.model}/space={self.space}/baseline={self.tag}/{tail}.npz"

    def load(self, partition: str, fp: str) -> tuple[int, dict[str, Any]] | None:
        """``(rows, state)`` if a state for this baseline and these exact files exists, else None."""
        key = self.key(partition)
        try:
            if not self.backend.exists(key):
                self.misses += 1
                return None
            state, attrs = states_from_bytes(self.backend.read(key))
        except (OSError, ValueError, KeyError) as e:  # unreadable: recompute rather than fail the run
            log.warning("state %s unreadable (%s): reading the partition instead", key, e)
            self.misses += 1
            return None
        if (attrs.get("baseline") != self.tag or attrs.get("fingerprint") != fp
                or attrs.get("representation") != self.representation):
            self.misses += 1
            return None
        self.hits += 1
        return int(attrs["rows"]), state

    def save(self, partition: str, fp: str, rows: int, state: dict[str, Any]) -> None:
        attrs = {"baseline": self.tag, "fingerprint": fp, "rows": int(rows), "partition": partition,
                 "representation": self.representation, "made_ms": int(time.time() * 1000)}
        self.backend.write(self.key(partition), states_to_bytes(state, attrs))
        self.writes += 1


def partition_files(backend: Backend, partitions: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """``{partition: [(key, size), ...]}`` of the Parquet files in each partition (one listing each)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for p in sorted(set(partitions)):
        out[p] = [(e.key, e.size) for e in backend.list(p + "/") if e.key.endswith(".parquet")]
    return out


#: The ingest hook makes states for hours that ended at most this long ago (a sidecar started on
#: an old store does not rescore months at startup; scoring makes the rest on first use).
INGEST_MAX_AGE_MS = 48 * MS_PER_HOUR


def write_partition_states(backend: Backend, partitions: Iterable[str], *, now_ms: int | None = None,
                           fits_cache: dict[tuple[str, int], Any] | None = None,
                           max_age_ms: int = INGEST_MAX_AGE_MS) -> int:
    """Ingest side: the states of every closed hour partition given, for its model's latest baseline.

    Called by the sidecar after each compaction pass over the partitions it wrote. An hour still
    open is left for later (its fingerprint would change anyway); a model without a baseline has
    nothing to make states for. Returns the number of state files written.
    """
    from monitoring.analysis.baseline.store import list_baselines, load_baseline
    from monitoring.ingest.store.writer import partition_start_ms

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    fits_cache = {} if fits_cache is None else fits_cache
    written = 0
    by_model: dict[str, list[str]] = {}
    for p in partitions:
        start = partition_start_ms(p + "/x.parquet")
        if start is None or start + MS_PER_HOUR > now_ms or start + MS_PER_HOUR < now_ms - max_age_ms:
            continue
        if not p.startswith("model="):
            continue
        by_model.setdefault(p.split("/", 1)[0][len("model="):], []).append(p)
    for model, parts in by_model.items():
        versions = list_baselines(backend, model)
        if not versions:
            continue
        version = int(versions[-1]["version"])
        fits = fits_cache.get((model, version))
        if fits is None:
            from monitoring.analysis.scoring.runner import ModelFits

            fits = fits_cache[(model, version)] = ModelFits.fit(load_baseline(backend, model, version))
        written += ensure_states(backend, model, fits, parts)
    return written


def _closed_recent(partition: str, now_ms: int, max_age_ms: int) -> bool:
    from monitoring.ingest.store.writer import partition_start_ms

    start = partition_start_ms(partition + "/x.parquet")
    return start is not None and now_ms - max_age_ms <= start + MS_PER_HOUR <= now_ms


def _latest_fits(backend: Backend, model: str, fits_cache: dict[tuple[str, int], Any]) -> Any:
    from monitoring.analysis.baseline.store import list_baselines, load_baseline

    versions = list_baselines(backend, model)
    if not versions:
        return None
    version = int(versions[-1]["version"])
    fits = fits_cache.get((model, version))
    if fits is None:
        from monitoring.analysis.scoring.runner import ModelFits

        fits = fits_cache[(model, version)] = ModelFits.fit(load_baseline(backend, model, version))
    return fits


def states_from_rows(backend: Backend, partition: str, key: str, nbytes: int, table: Any, *, now_ms: int | None = None,
                     fits_cache: dict[tuple[str, int], Any] | None = None, max_age_ms: int = INGEST_MAX_AGE_MS) -> int:
    """Ingest side, without a re-read: the states of a partition whose only file (``key``,
    ``nbytes`` long) was just written from ``table`` (the compaction's rows, in file order).

    The state equals the one a later read of that file would make (same rows, same order, same
    partition seed), and is stored under the same fingerprint, so :func:`write_partition_states`
    and scoring find it valid. Same policy as there: closed, recent hours; a model's latest
    baseline. Returns the number of state files written.
    """
    from monitoring.analysis.baseline.spaces import SPACE_BY_NAME

    from .score import PartitionTask, map_table, partition_id

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not partition.startswith("model=") or not _closed_recent(partition, now_ms, max_age_ms):
        return 0
    model = partition.split("/", 1)[0][len("model="):]
    fits = _latest_fits(backend, model, {} if fits_cache is None else fits_cache)
    if fits is None:
        return 0
    fp = fingerprint([(key, nbytes)])
    primary = fits.baseline.primary_space
    task = PartitionTask(partition_id(partition), 0, partition, (key,), 0, 2**62)
    written = 0
    for space, suite in fits.spaces.items():
        column = SPACE_BY_NAME[space].column
        if column not in table.column_names:
            continue
        cache = StateCache.for_suite(backend, model, space, fits.baseline, suite)
        _, rows, state = map_table(task, suite, table, embedding_column=column,
                                   metadata=fits.metadata if space == primary else None)
        cache.save(partition, fp, rows, state)
        written += 1
    return written


def ensure_states(backend: Backend, model: str, fits: Any, partitions: Iterable[str]) -> int:
    """Make (or refresh) every space's state of each partition for ``fits``' baseline; returns writes."""
    from .score import PartitionTask, map_partition, partition_id

    files = partition_files(backend, partitions)
    primary = fits.baseline.primary_space
    written = 0
    from monitoring.analysis.baseline.spaces import SPACE_BY_NAME

    for space, suite in fits.spaces.items():
        cache = StateCache.for_suite(backend, model, space, fits.baseline, suite)
        for part, fl in files.items():
            if not fl:
                continue
            fp = fingerprint(fl)
            if cache.load(part, fp) is not None:
                continue
            task = PartitionTask(partition_id(part), 0, part, tuple(k for k, _ in sorted(fl)), 0, 2**62)
            _, rows, state = map_partition(task, suite, backend, model, embedding_column=SPACE_BY_NAME[space].column,
                                           metadata=fits.metadata if space == primary else None)
            cache.save(part, fp, rows, state)
            written += 1
    return written
