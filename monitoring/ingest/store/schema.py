"""Arrow/Parquet schema of the capture store, built from :mod:`monitoring.capture.fields`.

``RECORD_SCHEMA`` is the full record; ``FILE_SCHEMA`` is what each Parquet file holds: the
same minus ``model``, which lives in the Hive path (``model=<name>/date=YYYY-MM-DD/hour=HH``)
so that ``pyarrow.parquet.read_table(store)`` and DuckDB's ``hive_partitioning`` see exactly
one ``model`` column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from monitoring.capture.fields import FIELDS, SCHEMA_VERSION

_KIND_TYPES = {
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "json": pa.string(),
    "vector": pa.list_(pa.float32()),
}

PARTITION_COLUMNS = ("model", "date", "hour")

RECORD_SCHEMA = pa.schema(
    [pa.field(name, _KIND_TYPES[kind], nullable=not required, metadata={"description": desc}) for name, kind, required, desc in FIELDS],
    metadata={"monitoring.schema_version": str(SCHEMA_VERSION)},
)
FILE_SCHEMA = RECORD_SCHEMA.remove(RECORD_SCHEMA.get_field_index("model"))


def _vector_array(values: list[Any]) -> pa.Array:
    offsets = [0]
    chunks: list[np.ndarray] = []
    valid = []
    total = 0
    for v in values:
        if v is None:
            valid.append(False)
        else:
            a = np.asarray(v, dtype=np.float32).reshape(-1)
            chunks.append(a)
            total += a.size
            valid.append(True)
        offsets.append(total)
    flat = np.concatenate(chunks) if chunks else np.empty(0, np.float32)
    mask = None if all(valid) else pa.array([not x for x in valid])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.float32()), mask=mask)


def records_to_table(records: list[dict[str, Any]], schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    """Build a table with exactly ``schema``; missing keys are null, extra keys ignored.

    Raises (``pa.ArrowInvalid``/``TypeError``/``ValueError``) if a value does not fit its
    column or a required column is null; callers fall back to row-by-row to isolate it.
    """
    arrays = []
    for f in schema:
        col = [r.get(f.name) for r in records]
        if not f.nullable and any(v is None for v in col):
            raise ValueError(f"required field {f.name!r} is missing")
        if pa.types.is_list(f.type):
            arrays.append(_vector_array(col))
        else:
            arrays.append(pa.array(col, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def split_valid(records: list[dict[str, Any]], schema: pa.Schema = RECORD_SCHEMA) -> tuple[pa.Table, list[tuple[dict[str, Any], str]]]:
    """Like :func:`records_to_table` but isolates bad records: returns (table, [(record, why)])."""
    try:
        return records_to_table(records, schema), []
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    good, bad = [], []
    for r in records:
        try:
            records_to_table([r], schema)
            good.append(r)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            bad.append((r, f"{type(e).__name__}: {e}"))
    return records_to_table(good, schema), bad
