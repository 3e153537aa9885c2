"""Score many windows of a big store: map each hour partition to a mergeable state, merge, score.

The map step (:func:`map_partition`) reads one partition's files with column projection
(embedding + the fitted metadata fields + outcome) and reduces them to the window states of
:mod:`monitoring.analysis.drift.mergeable`; nothing else leaves it, so a worker sends a few KB (plus at most
``max_samples`` rows for the domain classifier) back however many rows it read. The map runs

* in this process, one partition at a time (default; no cluster needed), or
* on a Dask cluster when ``cluster`` is given (``"tcp://scheduler:8786"``, a
  ``distributed.Client``, or a ``LocalCluster``): workers open the store themselves (local path
  they can see, or ``s3://``), so only the task description and the fitted suite travel.

Why Dask (not Ray): it is pure-Python wheels already close to our stack (pandas/pyarrow,
fsspec, cloudpickle), ``distributed.LocalCluster`` gives a real multi-process cluster in a test
with no daemon to install, and SageMaker Processing / EMR / Kubernetes users can start a
scheduler with ``dask scheduler`` / ``dask worker`` or dask-kubernetes. Ray would add a ~100 MB
runtime and its own object store for a job that only needs map + small reduce.
"""

from __future__ import annotations

import datetime as dt
import os
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from monitoring.capture.fields import check_model_name
from monitoring.analysis.drift.mergeable import merge_states, metadata_state, score_metadata_state, score_state, window_state
from monitoring.analysis.drift.result import DriftResult
from monitoring.analysis.drift.suite import DriftSuite
from monitoring.ingest.store.backend import Backend, open_backend
from monitoring.ingest.store.projected_reader import read_projected
from monitoring.ingest.store.reader import TimeBound, list_files, partition_of, read_partition, to_epoch_ms
from monitoring.ingest.store.writer import partition_start_ms

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class PartitionTask:
    """One map unit: the files of one hour partition, clipped to one window."""

    part_id: int
    window: int
    partition: str
    keys: tuple[str, ...]
    since_ms: int
    until_ms: int


@dataclass
class FleetWindowResult:
    """One scored window: ``results`` is ``{method: DriftResult}`` (empty if too few rows)."""

    since_ms: int
    until_ms: int
    n: int
    partitions: int
    results: dict[str, DriftResult]

    @property
    def any_drift(self) -> bool:
        return any(r.is_drift for r in self.results.values())


def hourly_windows(day: TimeBound, hours: int = 24) -> list[tuple[int, int]]:
    """``[since, until)`` epoch-ms pairs of ``hours`` consecutive UTC hours from ``day``'s start."""
    start = to_epoch_ms(day)
    if start is None:
        raise ValueError("day is required")
    start -= start % MS_PER_HOUR
    return [(start + h * MS_PER_HOUR, start + (h + 1) * MS_PER_HOUR) for h in range(int(hours))]


def partition_tasks(
    store: str | os.PathLike[str] | Backend,
    model: str,
    windows: Sequence[tuple[int, int]],
    *,
    s3_endpoint_url: str | None = None,
) -> list[PartitionTask]:
    """Map units for ``windows``: the store is listed once, over the days the windows span."""
    check_model_name(model)
    if not windows:
        return []
    backend = open_backend(store, s3_endpoint_url)
    lo, hi = min(w[0] for w in windows), max(w[1] for w in windows)
    by_part: dict[str, list[str]] = {}
    for key in list_files(backend, model, lo, hi):
        by_part.setdefault(partition_of(key), []).append(key)
    tasks = []
    for part, keys in sorted(by_part.items()):
        probe = partition_start_ms(keys[0])
        for wi, (since, until) in enumerate(windows):
            if probe is not None and (probe + MS_PER_HOUR <= since or probe >= until):
                continue
            tasks.append(PartitionTask(partition_id(part), wi, part, tuple(keys), int(since), int(until)))
    return tasks


def partition_id(partition: str) -> int:
    """A stable number for a partition (seeds its sample keys): the same wherever and whenever it
    is mapped, so a state made at ingest equals one made by a later scoring run."""
    return zlib.crc32(partition.encode()) & 0x7FFFFFFF


def covers(task: PartitionTask) -> bool:
    """Whether the task's window holds the partition's whole hour (then a stored state can stand in)."""
    start = partition_start_ms(task.keys[0] if task.keys else "")
    return start is not None and task.since_ms <= start and start + MS_PER_HOUR <= task.until_ms


def embedding_matrix(column: pa.ChunkedArray | pa.Array, dtype: type = np.float32) -> np.ndarray:
    """(n, d) array from a list<float> column without per-row Python objects (rows must be non-null)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if n == 0:
        return np.empty((0, 0), dtype)
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    if flat.size % n:
        raise ValueError("embedding widths differ across rows (mixed embedding sources?)")
    return flat.reshape(n, flat.size // n).astype(dtype, copy=False)


def map_partition(
    task: PartitionTask,
    suite: DriftSuite,
    store: str | os.PathLike[str],
    model: str,
    *,
    embedding_column: str = "embedding",
    s3_endpoint_url: str | None = None,
    slice_rows: int = 8192,
    metadata: Any = None,
) -> tuple[int, int, dict[str, Any]]:
    """``(window, rows, {method: state})`` of one partition task (runs on a worker).

    ``metadata``: a fitted MetadataDrift to use instead of the suite's own (the scoring runner
    fits metadata once per model, not per embedding space).
    """
    if metadata is None and getattr(suite, "metadata_fitted_", False):
        metadata = suite.metadata
    meta_fields = list(metadata.fields_) if metadata is not None else []
    projection = getattr(suite, "projection_", None)
    if projection is not None:
        # a suite fitted on projected embeddings reads only the stored projected column (1/16 of
        # the bytes at 128-d); files without it are projected here from their full column
        backend = store if hasattr(store, "open_input") else open_backend(store, s3_endpoint_url)
        table, _ = read_projected(backend, task.keys, embedding_column, projection, ["outcome", *meta_fields],
                                  task.since_ms, task.until_ms)
        embedding_column = "__x"
    else:
        columns = ["ts_ms", embedding_column, "outcome", *meta_fields]
        table = read_partition(store, model, task.keys, task.since_ms, task.until_ms, columns, sort=False,
                               s3_endpoint_url=s3_endpoint_url)
    return map_table(task, suite, table, embedding_column=embedding_column, slice_rows=slice_rows, metadata=metadata)


def map_table(task: PartitionTask, suite: DriftSuite, table: pa.Table, *, embedding_column: str = "embedding",
              slice_rows: int = 8192, metadata: Any = None) -> tuple[int, int, dict[str, Any]]:
    """``(window, rows, {method: state})`` of rows already in memory (file order, as read by
    :func:`map_partition`, or as just compacted by the sidecar: then no re-read is needed)."""
    if metadata is None and getattr(suite, "metadata_fitted_", False):
        metadata = suite.metadata
    meta_fields = list(metadata.fields_) if metadata is not None else []
    projection = getattr(suite, "projection_", None)
    if projection is not None and embedding_column != "__x":
        stored = projection.column(embedding_column)
        if stored not in table.column_names:
            # rows written without the projection (a writer with projection=None): project them
            # here with the same seeded matrix, as read_projected does for such files
            from monitoring.ingest.store.projection import add_projections

            table, _ = add_projections(table, projection, (embedding_column,))
            if stored not in table.column_names:
                raise ValueError(f"{embedding_column!r} has no single embedding width to project with {projection}")
        embedding_column = stored
    # same rows as the in-memory runner: successful requests (outcome null = ok) with an embedding.
    # Rows stay in file order: every state but the sample is order-free, and the sample's keys are
    # seeded by (partition, position), so no embedding column is reordered (arrow's take copied
    # whole columns); a filter copies only when some row is dropped.
    ok = pc.fill_null(pc.equal(table["outcome"], "ok"), True)
    has = pc.fill_null(pc.greater(pc.list_value_length(table[embedding_column]), 0), False)
    mask = pc.and_(ok, has)
    if not pc.all(mask).as_py():
        table = table.filter(mask)
    n = table.num_rows
    if n == 0:
        return task.window, 0, {}
    # map in row slices (zero-copy views of the Arrow buffers): the detectors' temporaries stay
    # slice-sized, so peak memory is ~ one partition's Arrow data
    state: dict[str, Any] = {}
    for start in range(0, n, slice_rows):
        part = table.slice(start, slice_rows)
        X = embedding_matrix(part[embedding_column])
        st = window_state(suite, X, None, part_id=task.part_id, row_offset=start)
        if meta_fields:
            st["metadata"] = metadata_state(metadata, part.select(meta_fields).to_pandas())
        state = merge_states([state, st])
    return task.window, int(n), state


def score_windows(
    suite: DriftSuite,
    store: str | os.PathLike[str],
    model: str,
    windows: Sequence[tuple[int, int]],
    *,
    cluster: Any = None,
    embedding_column: str = "embedding",
    min_window: int = 2,
    slice_rows: int = 8192,
    s3_endpoint_url: str | None = None,
    metadata: Any = None,
    states: Any = None,
    blas_threads: int | None = 1,
) -> list[FleetWindowResult]:
    """Score every ``[since, until)`` window of ``model`` against a fitted suite.

    ``states``: a :class:`monitoring.analysis.fleet.states.StateCache`: whole hours are read from their
    stored state when it is valid, and their state is stored when it had to be computed.
    ``blas_threads``: BLAS threads while mapping and scoring in this process (None: leave as is).

    ``cluster``: None runs the map in this process; otherwise a Dask scheduler address, a
    ``distributed.Client`` or a cluster object (``LocalCluster``). ``store`` must then be a path
    or ``s3://`` URL the workers can open (credentials from the workers' environment).
    """
    if not getattr(suite, "fitted_", False):
        raise RuntimeError("the suite is not fitted: fit it on the baseline first")
    if min_window < 2:
        raise ValueError(f"min_window must be >= 2, got {min_window}")
    tasks = partition_tasks(store, model, windows, s3_endpoint_url=s3_endpoint_url)
    if slice_rows < 1:
        raise ValueError(f"slice_rows must be >= 1, got {slice_rows}")
    if metadata is None and getattr(suite, "metadata_fitted_", False):
        metadata = suite.metadata
    kw = dict(embedding_column=embedding_column, s3_endpoint_url=s3_endpoint_url, slice_rows=slice_rows)
    if cluster is None and blas_threads is not None:
        # One BLAS thread in this process: the products here are small or slice-sized, and
        # OpenBLAS's extra threads spin (sched_yield) against the Parquet reader and each other;
        # on a loaded 2-core machine a day from states took 39 s wall with them and 2.2 s without.
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - scikit-learn's own dependency

        with threadpool_limits(limits=int(blas_threads)):
            return score_windows(suite, store, model, windows, cluster=None, embedding_column=embedding_column,
                                 min_window=min_window, slice_rows=slice_rows, s3_endpoint_url=s3_endpoint_url,
                                 metadata=metadata, states=states, blas_threads=None)
    if states is not None:
        if cluster is not None:
            raise ValueError("states (stored partition states) are read in this process: use cluster=None")
        outputs: Iterable[tuple[int, int, dict[str, Any]]] = _map_with_states(tasks, suite, store, model, metadata, states, kw)
        return _reduce(suite, windows, tasks, outputs, min_window, metadata)
    if cluster is None:
        outputs = (map_partition(t, suite, store, model, metadata=metadata, **kw) for t in tasks)
        return _reduce(suite, windows, tasks, outputs, min_window, metadata)
    client, own = _client(cluster)
    try:
        # one copy of the fitted suite per worker, not one per task
        suite_f = client.scatter(suite, broadcast=True)
        meta_f = None if metadata is None else client.scatter(metadata, broadcast=True)
        futures = client.map(_map_partition_threads, tasks, suite=suite_f, store=os.fspath(store), model=model,
                             metadata=meta_f, blas_threads=blas_threads, pure=False, **kw)
        from distributed import as_completed  # noqa: PLC0415 - optional engine, imported only when used

        outputs = (f.result() for f in as_completed(futures))
        return _reduce(suite, windows, tasks, outputs, min_window, metadata)
    finally:
        if own:
            client.close()


def _map_partition_threads(task: PartitionTask, *, blas_threads: int | None, **kw: Any) -> tuple[int, int, dict[str, Any]]:
    """map_partition on a Dask worker with the same BLAS threads as in process: the domain
    classifier's features are float32 products whose last bits depend on the thread count, and
    the same bits give the same draw on every path."""
    if blas_threads is None:
        return map_partition(task, **kw)
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - scikit-learn's own dependency

    with threadpool_limits(limits=int(blas_threads)):
        return map_partition(task, **kw)


def _map_with_states(tasks: Sequence[PartitionTask], suite: DriftSuite, store: Any, model: str, metadata: Any, states: Any,
                     kw: dict[str, Any]) -> Iterable[tuple[int, int, dict[str, Any]]]:
    """The map, reading a stored state for each whole hour that has a valid one, and writing the
    state of each whole hour it had to read (see :mod:`monitoring.analysis.fleet.states`)."""
    from .states import fingerprint, partition_files

    sizes = partition_files(states.backend, {t.partition for t in tasks if covers(t)})
    for t in tasks:
        if not covers(t):
            yield map_partition(t, suite, store, model, metadata=metadata, **kw)
            continue
        fp = fingerprint(sizes.get(t.partition, []))
        got = states.load(t.partition, fp)
        if got is not None:
            yield t.window, got[0], got[1]
            continue
        wi, rows, st = map_partition(t, suite, store, model, metadata=metadata, **kw)
        states.save(t.partition, fp, rows, st)
        yield wi, rows, st


def _client(cluster: Any) -> tuple[Any, bool]:
    from distributed import Client  # noqa: PLC0415 - optional engine, imported only when used

    if isinstance(cluster, Client):
        return cluster, False
    return Client(cluster), True


def _reduce(
    suite: DriftSuite,
    windows: Sequence[tuple[int, int]],
    tasks: Sequence[PartitionTask],
    outputs: Iterable[tuple[int, int, dict[str, Any]]],
    min_window: int,
    metadata: Any = None,
) -> list[FleetWindowResult]:
    # score a window as soon as its last partition is in, so at most the unfinished windows'
    # states are held (matters for the domain classifier's sample)
    pending = np.bincount([t.window for t in tasks], minlength=len(windows))
    parts = [0] * len(windows)
    states: dict[int, list[dict[str, Any]]] = {}
    rows = [0] * len(windows)
    done: dict[int, FleetWindowResult] = {}
    for wi, n, st in outputs:
        parts[wi] += 1
        rows[wi] += n
        if st:
            states.setdefault(wi, []).append(st)
        pending[wi] -= 1
        if pending[wi] == 0:
            done[wi] = _score_one(suite, windows[wi], rows[wi], parts[wi], states.pop(wi, []), min_window, metadata)
    return [done.get(i) or _score_one(suite, w, 0, 0, [], min_window, metadata) for i, w in enumerate(windows)]


def _score_one(suite: DriftSuite, window: tuple[int, int], n: int, parts: int, states: list[dict[str, Any]], min_window: int,
               metadata: Any = None) -> FleetWindowResult:
    results: dict[str, DriftResult] = {}
    if n >= min_window:
        merged = merge_states(states)
        results = score_state(suite, {k: v for k, v in merged.items() if k != "metadata"})
        if metadata is not None and "metadata" in merged:
            try:
                results["metadata"] = score_metadata_state(metadata, merged["metadata"])
            except ValueError:
                pass  # every metadata value missing in this window: the in-memory runner skips it too
    return FleetWindowResult(int(window[0]), int(window[1]), int(n), parts, results)


def window_label(since_ms: int) -> str:
    return dt.datetime.fromtimestamp(since_ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:00Z")
