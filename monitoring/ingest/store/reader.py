"""Reading captured records back: ``read_records`` (pyarrow) and ``read_records_df`` (pandas)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from monitoring.capture.fields import check_model_name

from .backend import Backend, open_backend
from .schema import RECORD_SCHEMA
from .writer import MS_PER_HOUR, PARQUET_SUFFIX, dedupe, partition_start_ms

MS_PER_DAY = 86_400_000

TimeBound = int | float | str | dt.datetime | dt.date | None


def to_epoch_ms(value: TimeBound) -> int | None:
    """Epoch ms from an int/float (ms; values below 1e11 are taken as seconds), an ISO-8601
    string (naive = UTC), a digit string, a datetime (naive = UTC) or a date; None passes."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a time bound cannot be a bool")
    if isinstance(value, (int, float)):
        v = float(value)
        return int(v * 1000) if abs(v) < 1e11 else int(v)
    if isinstance(value, str):
        s = value.strip()
        try:
            return to_epoch_ms(float(s))
        except ValueError:
            pass
        if s.endswith("Z") or s.endswith("z"):
            s = s[:-1] + "+00:00"
        try:
            value = dt.datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time or epoch number: {value!r}") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(round(value.timestamp() * 1000))
    if isinstance(value, dt.date):
        return to_epoch_ms(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc))
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        return to_epoch_ms(value.to_pydatetime())
    raise TypeError(f"unsupported time bound {value!r}")


def list_files(backend: Backend, model: str, since_ms: int | None = None, until_ms: int | None = None) -> list[str]:
    """Parquet keys of ``model`` whose hour partition can hold rows in [since, until).

    With both bounds (and at most ``MAX_PRUNED_DAYS`` days between them) only the
    ``model=<m>/date=<d>/`` prefixes of those days are listed, so scoring an hour of a store
    holding months does not list months of keys (on S3, one paginated LIST per day).
    """
    keys = []
    for prefix in _listing_prefixes(model, since_ms, until_ms):
        for e in backend.list(prefix):
            if not e.key.endswith(PARQUET_SUFFIX):
                continue
            start = partition_start_ms(e.key)
            if start is not None:
                if since_ms is not None and start + MS_PER_HOUR <= since_ms:
                    continue
                if until_ms is not None and start >= until_ms:
                    continue
            keys.append(e.key)
    return sorted(keys)


MAX_PRUNED_DAYS = 400


def _listing_prefixes(model: str, since_ms: int | None, until_ms: int | None) -> list[str]:
    """Per-day prefixes covering [since, until), or the whole model prefix when unbounded."""
    if since_ms is None or until_ms is None or until_ms <= since_ms:
        return [f"model={model}/"]
    first, last = since_ms // MS_PER_DAY, (until_ms - 1) // MS_PER_DAY
    if last - first + 1 > MAX_PRUNED_DAYS:
        return [f"model={model}/"]
    return [f"model={model}/date={dt.datetime.fromtimestamp(d * 86400, dt.timezone.utc):%Y-%m-%d}/" for d in range(first, last + 1)]


def partition_of(key: str) -> str:
    """``model=<m>/date=<d>/hour=<h>`` of a store key (its directory)."""
    return key.rsplit("/", 1)[0]


def read_partition(
    store: str | os.PathLike[str] | Backend,
    model: str,
    keys: Sequence[str],
    since: TimeBound = None,
    until: TimeBound = None,
    columns: Sequence[str] | None = None,
    *,
    dedup: bool = True,
    sort: bool = True,
    s3_endpoint_url: str | None = None,
) -> pa.Table:
    """The rows of the given files of one partition (what a fleet worker reads).

    ``sort=False`` leaves rows in file order (sorting copies every column; a caller that walks
    the rows in slices can sort its index instead).
    """
    backend = open_backend(store, s3_endpoint_url)
    return _read_keys(backend, model, list(keys), to_epoch_ms(since), to_epoch_ms(until), columns, dedup, sort)


def read_records(
    store: str | os.PathLike[str] | Backend,
    model: str,
    since: TimeBound = None,
    until: TimeBound = None,
    columns: Sequence[str] | None = None,
    *,
    dedup: bool = True,
    s3_endpoint_url: str | None = None,
) -> pa.Table:
    """Captured records of ``model`` with ``since <= ts_ms < until``, sorted by ``ts_ms``.

    ``store`` is a local directory, ``s3://bucket/prefix`` (``s3_endpoint_url`` or env
    ``MONITORING_S3_ENDPOINT_URL`` for S3-compatible servers) or a backend object. Bounds
    accept epoch ms, epoch seconds, ISO-8601 strings and datetimes. ``columns`` selects
    columns (``model`` always available). Rows repeated by a crash window are dropped unless
    ``dedup=False``. A model with nothing captured gives an empty table with the full schema.
    """
    check_model_name(model)
    backend = open_backend(store, s3_endpoint_url)
    since_ms, until_ms = to_epoch_ms(since), to_epoch_ms(until)
    return _read_keys(backend, model, list_files(backend, model, since_ms, until_ms), since_ms, until_ms, columns, dedup)


def within(table: pa.Table, since_ms: int | None, until_ms: int | None) -> pa.Table:
    """The rows of ``table`` with ``since_ms <= ts_ms < until_ms`` (either bound may be None)."""
    mask = None
    if since_ms is not None:
        mask = pc.greater_equal(table["ts_ms"], since_ms)
    if until_ms is not None:
        m2 = pc.less(table["ts_ms"], until_ms)
        mask = m2 if mask is None else pc.and_(mask, m2)
    if mask is not None and not pc.all(mask).as_py():  # filtering copies every column: only when needed
        table = table.filter(mask)
    return table


def _read_keys(
    backend: Backend,
    model: str,
    keys: list[str],
    since_ms: int | None,
    until_ms: int | None,
    columns: Sequence[str] | None,
    dedup: bool,
    sort: bool = True,
) -> pa.Table:
    want = list(columns) if columns is not None else list(RECORD_SCHEMA.names)
    unknown = [c for c in want if c not in RECORD_SCHEMA.names]
    if unknown:
        raise ValueError(f"unknown columns {unknown}; known: {RECORD_SCHEMA.names}")
    file_cols = [c for c in set(want) | {"ts_ms", "request_id"} if c != "model"]
    tables = []
    for key in keys:
        try:
            with pq.ParquetFile(backend.open_input(key)) as pf:
                present = set(pf.schema_arrow.names)
                tables.append(pf.read(columns=[c for c in file_cols if c in present]))
        except FileNotFoundError:
            continue  # compacted away between listing and reading; its rows are in the compact file
    if tables:
        table = pa.concat_tables(tables, promote_options="default")
    else:
        table = RECORD_SCHEMA.empty_table().select(file_cols)
    # add missing columns (older schema versions) as nulls
    for c in file_cols:
        if c not in table.column_names:
            table = table.append_column(RECORD_SCHEMA.field(c), pa.nulls(table.num_rows, RECORD_SCHEMA.field(c).type))
    table = within(table, since_ms, until_ms)
    if dedup:
        table = dedupe(table)
    if sort:
        table = table.take(pc.sort_indices(table["ts_ms"]))
    table = table.append_column(RECORD_SCHEMA.field("model"), pa.array([model] * table.num_rows, pa.string()))
    return table.select(want)


def read_records_df(store: Any, model: str, since: TimeBound = None, until: TimeBound = None, columns: Sequence[str] | None = None, **kw: Any):
    """:func:`read_records` as a pandas DataFrame, plus a UTC ``ts`` datetime column."""
    table = read_records(store, model, since, until, columns, **kw)
    df = table.to_pandas()
    if "ts_ms" in df.columns:
        import pandas as pd

        df["ts"] = pd.to_datetime(df["ts_ms"], unit="ms", utc=True)
    return df
