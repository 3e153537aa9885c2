"""One flat table per export: a window of captured records (or the baseline sample) with the
columns every monitoring tool asks for, under neutral names the tool adapters map."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from monitoring.actuals.labels import join_actuals, load_actuals
from monitoring.artifacts import backend_of
from monitoring.baseline.spaces import embeddings_from_column
from monitoring.baseline.store import METADATA_FIELDS, load_baseline
from monitoring.store.reader import read_records_df

#: Request metadata exported as model features (what the world sends: drift on them is explainable).
FEATURES = METADATA_FIELDS
#: Context exported as tags (not features: they describe serving, not the input).
TAGS = ("model_version", "embedding_source", "pred_top_prob", "pred_entropy", "queue_ms", "compute_ms", "batch_size")
COLUMNS = ["request_id", "ts_ms", "outcome", "embedding", "pred_label", "thumbnail", *FEATURES, *TAGS]


def image_link(thumbnail: Any) -> str | None:
    """The record's thumbnail as a ``data:`` URL (what a tool's "link to data" column holds)."""
    return f"data:image/jpeg;base64,{thumbnail}" if isinstance(thumbnail, str) and thumbnail else None


def _finish(df: pd.DataFrame, X: np.ndarray) -> pd.DataFrame:
    out = pd.DataFrame({
        "prediction_id": df["request_id"].astype(str).to_numpy(),
        "timestamp": pd.to_datetime(df["ts_ms"].to_numpy(), unit="ms", utc=True),
        "prediction_label": df["pred_label"].astype(object).where(df["pred_label"].notna(), None).to_numpy(),
        "actual_label": df["label"].astype(object).where(df["label"].notna(), None).to_numpy(),
        "embedding": list(X.astype(np.float32)),
        "image_link": [image_link(t) for t in df.get("thumbnail", pd.Series([None] * len(df)))],
    })
    for c in (*FEATURES, *TAGS):
        if c in df.columns and df[c].notna().any():
            out[c] = df[c].to_numpy()
    return out


def window_frame(store: Any, model: str, since: Any = None, until: Any = None, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """Successful records of ``model`` in [since, until) with their posted actuals."""
    backend = backend_of(store, s3_endpoint_url)
    df = read_records_df(backend, model, since, until, columns=["model", *COLUMNS], s3_endpoint_url=s3_endpoint_url)
    df = df[df["outcome"].fillna("ok") == "ok"]
    X, mask = embeddings_from_column(df["embedding"]) if len(df) else (np.empty((0, 0), np.float32), np.zeros(0, bool))
    if X.shape[0] == 0:
        raise ValueError(f"no captured record with an embedding for {model} in the window (since={since}, until={until})")
    df = df[mask].reset_index(drop=True)
    act = load_actuals(backend, s3_endpoint_url)
    df["label"] = join_actuals(df, act) if len(act) else None
    return _finish(df, X)


def baseline_frame(store: Any, model: str, version: int | None = None, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """The stored baseline sample as the reference set (timestamp: when the baseline was built)."""
    b = load_baseline(backend_of(store, s3_endpoint_url), model, version)
    meta = b.metadata.reset_index(drop=True).copy()
    if "request_id" not in meta or meta["request_id"].isna().all():
        meta["request_id"] = [f"baseline-v{b.version}-{i}" for i in range(len(meta))]
    meta["ts_ms"] = int(pd.Timestamp(b.manifest["created_at"]).timestamp() * 1000)
    meta["model_version"] = f"baseline-v{b.version}"
    meta["embedding_source"] = b.manifest.get("embedding_source")
    for c in ("pred_label", "label"):
        if c not in meta:
            meta[c] = None
    return _finish(meta, b.embeddings)


def align(reference: pd.DataFrame, primary: pd.DataFrame) -> pd.DataFrame:
    """``reference`` with the columns of ``primary`` (a column the baseline lacks is all-null),
    so one schema describes both files."""
    ref = reference.copy()
    for c in primary.columns:
        if c not in ref.columns:
            ref[c] = None
    return ref[list(primary.columns)]
