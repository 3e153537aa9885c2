"""Reading the stored projected embedding column (see :mod:`monitoring.ingest.store.projection`).

Separate from the projection itself because the writer needs that one and this one needs the
reader (which imports the writer).
"""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .projection import STORED_TYPE, Projection, add_projections, file_projection
from .reader import dedupe, within
from .schema import RECORD_SCHEMA


def read_projected(backend: Any, keys: Sequence[str], column: str, projection: Projection, other_columns: Sequence[str],
                   since_ms: int | None, until_ms: int | None) -> tuple[pa.Table, int]:
    """Rows of ``keys`` (file order) with ``other_columns`` plus ``"__x"``: the projected
    ``column`` (read from the file when it holds this projection, else its full column projected
    here). Returns ``(table, files that fell back to the full column)``. Deduped and clipped to
    ``[since_ms, until_ms)`` like :func:`monitoring.ingest.store.reader.read_partition`."""
    base = list(dict.fromkeys([*other_columns, "ts_ms", "request_id"]))
    tables, fallbacks = [], 0
    want = projection.column(column)
    typ = STORED_TYPE
    for key in keys:
        try:
            with pq.ParquetFile(backend.open_input(key)) as pf:
                names = set(pf.schema_arrow.names)
                spec = file_projection(pf.schema_arrow.metadata)
                cols = [c for c in base if c in names]
                if spec is not None and spec[0] == projection and column in spec[1] and want in names:
                    t = pf.read(columns=[*cols, want]).rename_columns([*cols, "__x"])
                else:
                    fallbacks += 1
                    t = pf.read(columns=[*cols, column] if column in names else cols)
                    x = t[column] if column in names else pa.nulls(t.num_rows, pa.list_(pa.float32()))
                    t = t.drop_columns([column]) if column in names else t
                    proj, _ = add_projections(pa.table({column: x}), projection, (column,))
                    px = proj[want] if want in proj.column_names else pa.nulls(t.num_rows, typ)
                    t = t.append_column("__x", px.cast(typ))
        except FileNotFoundError:
            continue  # compacted away between listing and reading
        for c in base:
            if c not in t.column_names:  # older schema version: the column as nulls, as the reader does
                t = t.append_column(RECORD_SCHEMA.field(c), pa.nulls(t.num_rows, RECORD_SCHEMA.field(c).type))
        tables.append(t.select([*base, "__x"]))
    if not tables:
        empty = RECORD_SCHEMA.empty_table().select(base)
        return empty.append_column("__x", pa.array([], typ)), fallbacks
    table = pa.concat_tables(tables, promote_options="permissive")
    return dedupe(within(table, since_ms, until_ms)), fallbacks
