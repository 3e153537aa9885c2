"""A fixed, seeded random projection of each embedding, stored beside it (issue #28 item 3).

Rescoring a fleet's day from 2048-d float32 embeddings is bound by the bytes (7.8 GB a day of
1M records: reading them alone is ~40-60 s on 2 cores). The drift detectors compare
distributions, and a Gaussian random projection to 128 dimensions keeps pairwise distances and
means within a few percent (Johnson-Lindenstrauss), so scoring can read 1/16 of the bytes.

* The writer adds ``<column>__p<dim>`` (fixed-size list of float32) for every vector column it
  projects, at each part write and at compaction, and records the projection
  (``{"seed", "dim", "columns"}``) in the Parquet file metadata under ``monitoring.projection``.
  The full embedding stays in the file for the explorer and for full-width scoring.
* A baseline projects its stored sample with the same matrix (``Baseline.fit_space(...,
  projection=...)``); the matrix is a pure function of (seed, input width, dim), so any later
  baseline, on any machine, projects the same way.
* A file written before projections existed, or with another seed/dim, has no usable projected
  column: the scoring path reads its full column and projects it in memory (same matrix).

The projected columns are not part of ``RECORD_SCHEMA``: the ordinary readers never see them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: the stored projected column's type (rows of ``dim`` float32; null for rows without an embedding)
STORED_TYPE = pa.list_(pa.float32())

META_PROJECTION = b"monitoring.projection"
#: Projected by default: the embedding spaces drift is scored on (not the top-k probabilities).
PROJECTED_COLUMNS = ("embedding", "text_embedding", "output_embedding")


@dataclass(frozen=True)
class Projection:
    """``x -> x @ R`` with ``R`` (d, dim) ~ N(0, 1/dim), drawn from ``seed`` for each input width d."""

    seed: int = 20261203
    dim: int = 128

    def __post_init__(self) -> None:
        if not 1 <= int(self.dim) <= 4096:
            raise ValueError(f"projection dim must be in 1..4096, got {self.dim}")
        if int(self.seed) < 0:
            raise ValueError(f"projection seed must be >= 0, got {self.seed}")

    def column(self, name: str) -> str:
        return f"{name}__p{self.dim}"

    def matrix(self, d: int) -> np.ndarray:
        return _matrix(int(self.seed), int(d), int(self.dim))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, dim) float32."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"embeddings must be 2-d (n, d), got shape {X.shape}")
        if X.shape[0] == 0:
            return np.empty((0, self.dim), np.float32)
        return X @ self.matrix(X.shape[1])

    def to_json(self, columns: Iterable[str] = ()) -> str:
        return json.dumps({"seed": int(self.seed), "dim": int(self.dim), "columns": sorted(columns)}, sort_keys=True)


DEFAULT_PROJECTION = Projection()


def scoring_projection(dim: int, *, full_width: bool = False,
                       projection: Projection | None = DEFAULT_PROJECTION) -> Projection | None:
    """The representation drift is scored on by default for a ``dim``-wide embedding space: the
    stored projection when the space is wider than it (1/16 of the bytes at 2048-d, and the
    sidecar's states cost ~1/10 of the CPU), else None (full width: a narrow space gains nothing).

    ``full_width``: always None (``--full-width``). Files without the projected column are
    projected in memory with the same matrix, so the choice never depends on how a file was written.
    """
    if full_width or projection is None or int(dim) <= projection.dim:
        return None
    return projection


def projection_spec(projection: Projection | None) -> str | None:
    """``"p<dim>-s<seed>"`` naming a representation (None: full width), for state tags and runs."""
    return None if projection is None else f"p{int(projection.dim)}-s{int(projection.seed)}"


@functools.lru_cache(maxsize=8)
def _matrix(seed: int, d: int, dim: int) -> np.ndarray:
    # float64 draw then float32: the same matrix on every platform; read-only so a cached copy
    # cannot be changed by a caller
    R = (np.random.default_rng([seed, d, dim]).standard_normal((d, dim)) / np.sqrt(dim)).astype(np.float32)
    R.setflags(write=False)
    return R


def file_projection(metadata: dict[bytes, bytes] | None) -> tuple[Projection, list[str]] | None:
    """``(projection, projected source columns)`` recorded in a Parquet file's metadata, or None."""
    raw = (metadata or {}).get(META_PROJECTION)
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        return Projection(int(spec["seed"]), int(spec["dim"])), [str(c) for c in spec.get("columns", [])]
    except (ValueError, KeyError, TypeError):
        return None  # unreadable spec: treat the file as unprojected (the full column is there)


def add_projections(table: pa.Table, projection: Projection | None = DEFAULT_PROJECTION,
                    columns: Sequence[str] = PROJECTED_COLUMNS) -> tuple[pa.Table, dict[bytes, bytes]]:
    """``table`` with a projected column beside each vector column that has values, and the
    Parquet metadata recording it (empty if nothing was projected). Rows without an embedding
    (failed requests) get a null projection. Existing projected columns are recomputed."""
    meta = dict(table.schema.metadata or {})
    if meta.pop(META_PROJECTION, None) is not None:  # a stale spec from the inputs of a compaction
        table = table.replace_schema_metadata(meta)
    if projection is None:
        return table, {}
    done = []
    for name in columns:
        if name not in table.column_names:
            continue
        out = projection.column(name)
        if out in table.column_names:
            table = table.drop_columns([out])
        col = table[name]
        lengths = pc.fill_null(pc.list_value_length(col), 0)
        widths = set(pc.unique(lengths).to_pylist()) - {0}
        if not widths or len(widths) > 1:
            continue  # no values, or mixed widths (mixed embedding sources): leave unprojected
        has = pc.greater(lengths, 0)
        valid = table.filter(has)[name] if not pc.all(has).as_py() else col
        arr = valid.combine_chunks()
        X = arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), -1)
        P = projection.apply(X).reshape(-1)
        # A variable-size list, not fixed_size_list: Parquet (pyarrow 23) cannot write a null
        # fixed-size entry ("non-zero length null components"), and failed requests are nulls.
        typ = STORED_TYPE
        n_valid = len(arr)
        if n_valid == table.num_rows:
            offsets = pa.array(np.arange(n_valid + 1, dtype=np.int32) * projection.dim)
            proj = pa.ListArray.from_arrays(offsets, pa.array(P, pa.float32()))
        else:
            # nulls where there was no embedding: zero-length entries, marked null
            has_np = has.to_numpy(zero_copy_only=False) if not isinstance(has, pa.ChunkedArray) \
                else has.combine_chunks().to_numpy(zero_copy_only=False)
            ends = np.concatenate([[0], np.cumsum(has_np.astype(np.int32) * projection.dim)]).astype(np.int32)
            proj = pa.ListArray.from_arrays(pa.array(ends), pa.array(P, pa.float32()),
                                            mask=pa.array(np.concatenate([~has_np, [False]])[:-1]))
        table = table.append_column(pa.field(out, typ), proj)
        done.append(name)
    return table, ({META_PROJECTION: projection.to_json(done).encode()} if done else {})
