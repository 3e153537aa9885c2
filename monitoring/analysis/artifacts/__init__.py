"""Where the monitoring artefacts (baselines, scores, actuals) live inside the capture store.

Everything sits under ``<store>/_monitoring/`` so that it never mixes with the records:

* the leading underscore makes pyarrow's dataset discovery (``pq.read_table(store)``) skip it;
* no artefact is a ``.parquet`` file, so the sidecar's compaction (which merges small
  ``.parquet`` files of any directory) and ``*.parquet`` globs (DuckDB) never see them.
  Tables are Arrow IPC files (``.arrow``), arrays ``.npy`` (loaded with ``allow_pickle=False``),
  manifests and scores JSON.

Layout::

    _monitoring/baselines/model=<m>/v=<0001>/baseline.json | embeddings.npy | metadata.arrow
    _monitoring/scores/model=<m>/run-<created_ms>.json       every `score` run
    _monitoring/scores/model=<m>/latest.json                 the last run (exporter, report)
    _monitoring/actuals/batch-<ms>-<id>.arrow                request_id, label (+ model)

Writes go through :mod:`monitoring.ingest.store.backend`, so a local directory and ``s3://`` both work,
and every write is atomic.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa

from monitoring.capture.fields import check_model_name
from monitoring.jsonable import to_jsonable
from monitoring.ingest.store.backend import Backend

ROOT = "_monitoring"


def baselines_prefix(model: str) -> str:
    return f"{ROOT}/baselines/model={check_model_name(model)}/"


def baseline_dir(model: str, version: int) -> str:
    return f"{baselines_prefix(model)}v={int(version):04d}"


def scores_prefix(model: str) -> str:
    return f"{ROOT}/scores/model={check_model_name(model)}/"


ACTUALS_PREFIX = f"{ROOT}/actuals/"


def write_json(backend: Backend, key: str, obj: Any) -> None:
    backend.write(key, json.dumps(to_jsonable(obj), indent=1, sort_keys=False).encode())


def read_json(backend: Backend, key: str) -> Any:
    return json.loads(backend.read(key))


def write_npy(backend: Backend, key: str, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    backend.write(key, buf.getvalue())


def read_npy(backend: Backend, key: str) -> np.ndarray:
    return np.load(io.BytesIO(backend.read(key)), allow_pickle=False)


def write_arrow(backend: Backend, key: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    backend.write(key, sink.getvalue().to_pybytes())


def read_arrow(backend: Backend, key: str) -> pa.Table:
    with pa.ipc.open_file(pa.BufferReader(backend.read(key))) as r:
        return r.read_all()


def list_models(backend: Backend) -> list[str]:
    """Models with captured records in the store (``model=<m>/`` directories)."""
    if getattr(backend, "kind", "") == "local":
        root = backend.url()
        names = os.listdir(root) if os.path.isdir(root) else []
        return sorted(n[len("model="):] for n in names if n.startswith("model=") and os.path.isdir(os.path.join(root, n)))
    seen = set()
    for e in backend.list(""):
        head = e.key.split("/", 1)[0]
        if head.startswith("model="):
            seen.add(head[len("model="):])
    return sorted(seen)
