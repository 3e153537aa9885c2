"""Reading, storing and joining ground-truth labels."""

from __future__ import annotations

import csv
import os
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from monitoring.analysis.artifacts import ACTUALS_PREFIX, read_arrow, write_arrow
from monitoring.ingest.store.backend import open_backend

REQUIRED = ("request_id", "label")


def read_labels_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``request_id,label`` rows (header required; extra columns ignored; ``model`` kept if present).

    Raises ValueError naming the line for a missing column, an empty request id or label, or a
    request id given twice with different labels. Exact duplicate rows are dropped.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks column(s) {missing}; expected 'request_id,label'")
        reader.fieldnames = header
        rows = []
        for line, row in enumerate(reader, start=2):
            rid, label = (row.get("request_id") or "").strip(), (row.get("label") or "").strip()
            if not rid or not label:
                raise ValueError(f"{path}:{line}: empty {'request_id' if not rid else 'label'}")
            rows.append({"request_id": rid, "label": label, "model": (row.get("model") or "").strip() or None})
    if not rows:
        raise ValueError(f"{path}: no label rows")
    df = pd.DataFrame(rows).drop_duplicates()
    dup = df[df.duplicated("request_id", keep=False)]
    if len(dup):
        raise ValueError(f"{path}: request id {dup['request_id'].iloc[0]!r} has conflicting labels "
                         f"{sorted(dup[dup['request_id'] == dup['request_id'].iloc[0]]['label'])}")
    return df.reset_index(drop=True)


def save_actuals(store: Any, labels: pd.DataFrame, s3_endpoint_url: str | None = None) -> str:
    """Append a batch of labels to the store; returns its key."""
    df = labels.copy()
    if "model" not in df.columns:
        df["model"] = None
    df = df[["request_id", "label", "model"]].astype({"request_id": str, "label": str})
    df["posted_ms"] = int(time.time() * 1000)
    table = pa.Table.from_pandas(df, schema=pa.schema([("request_id", pa.string()), ("label", pa.string()),
                                                       ("model", pa.string()), ("posted_ms", pa.int64())]),
                                 preserve_index=False)
    key = f"{ACTUALS_PREFIX}batch-{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}.arrow"
    write_arrow(open_backend(store, s3_endpoint_url), key, table)
    return key


def load_actuals(store: Any, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """Every stored label (request_id, label, model, posted_ms); the latest post wins per id."""
    backend = open_backend(store, s3_endpoint_url)
    keys = sorted(e.key for e in backend.list(ACTUALS_PREFIX) if e.key.endswith(".arrow"))
    if not keys:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "label": pd.Series(dtype=str),
                             "model": pd.Series(dtype=object), "posted_ms": pd.Series(dtype="int64")})
    df = pd.concat([read_arrow(backend, k).to_pandas() for k in keys], ignore_index=True)
    return df.drop_duplicates("request_id", keep="last").reset_index(drop=True)


def join_actuals(records: pd.DataFrame, actuals: pd.DataFrame) -> pd.Series:
    """The true label of every record (aligned with ``records``), NaN where none was posted.

    A label posted with a ``model`` only applies to that model's records.
    """
    if len(actuals) == 0 or len(records) == 0:
        return pd.Series([np.nan] * len(records), index=records.index, dtype=object)
    a = actuals
    if "model" in a.columns and "model" in records.columns and a["model"].notna().any():
        models = set(records["model"].dropna().unique())
        a = a[a["model"].isna() | a["model"].isin(models)]
    lookup = dict(zip(a["request_id"], a["label"]))
    return records["request_id"].map(lookup)


def accuracy_of(pred_labels: pd.Series, true_labels: pd.Series) -> tuple[float | None, int]:
    """(accuracy over the rows with a true label, how many such rows); (None, 0) without labels."""
    mask = true_labels.notna() & pred_labels.notna()
    n = int(mask.sum())
    if n == 0:
        return None, 0
    return float((pred_labels[mask].astype(str) == true_labels[mask].astype(str)).mean()), n
