"""One flat table per export: a window of captured records (or the baseline sample) with the
columns every monitoring tool asks for, under neutral names the tool adapters map."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from monitoring.analysis.actuals.labels import join_actuals, load_actuals
from monitoring.ingest.store.backend import open_backend
from monitoring.analysis.baseline.spaces import SPACE_BY_NAME, embeddings_from_column
from monitoring.analysis.baseline.store import METADATA_FIELDS, load_baseline
from monitoring.ingest.store.reader import read_records_df

#: Request metadata exported as model features (what the world sends: drift on them is explainable).
FEATURES = METADATA_FIELDS
#: Context exported as tags (not features: they describe serving, not the input).
TAGS = ("model_version", "embedding_source", "pred_top_prob", "pred_entropy", "queue_ms", "compute_ms", "batch_size")
#: Record vector column -> export column: every embedding space travels (issue 23), not only the image's.
VECTORS = {"embedding": "embedding", "text_embedding": "prompt_embedding", "output_embedding": "output_embedding"}
COLUMNS = ["request_id", "ts_ms", "outcome", *VECTORS, "pred_label", "output_blank", "thumbnail", "prompt_text",
           "pred_top_prob", "pred_top_k_labels", "pred_top_k_probs", *FEATURES, *TAGS]
COLUMNS = list(dict.fromkeys(COLUMNS))


def _vectors(values: Any) -> list:
    return [None if v is None or (not isinstance(v, (list, np.ndarray))) or len(v) == 0 else np.asarray(v, np.float32)
            for v in values]


def image_link(thumbnail: Any) -> str | None:
    """The record's thumbnail as a ``data:`` URL (what a tool's "link to data" column holds)."""
    return f"data:image/jpeg;base64,{thumbnail}" if isinstance(thumbnail, str) and thumbnail else None


def _prediction(df: pd.DataFrame) -> pd.Series:
    """The classifier's label; a generative model has none, so its prediction is its output check
    (``ok`` / ``blank``): tools that require a prediction column (Arize) get a meaningful one."""
    pred = df["pred_label"] if "pred_label" in df.columns else pd.Series([None] * len(df), index=df.index)
    if pred.notna().any() or "output_blank" not in df.columns or df["output_blank"].isna().all():
        return pred
    return df["output_blank"].map(lambda b: None if b is None or pd.isna(b) else ("blank" if b else "ok"))


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    pred = _prediction(df)
    out = pd.DataFrame({
        "prediction_id": df["request_id"].astype(str).to_numpy(),
        "timestamp": pd.to_datetime(df["ts_ms"].to_numpy(), unit="ms", utc=True),
        "prediction_label": pred.astype(object).where(pred.notna(), None).to_numpy(),
        "actual_label": df["label"].astype(object).where(df["label"].notna(), None).to_numpy(),
        "embedding": _vectors(df["embedding"]) if "embedding" in df.columns else [None] * len(df),
        "image_link": [image_link(t) for t in df.get("thumbnail", pd.Series([None] * len(df)))],
    })
    for rec_col, col in VECTORS.items():  # the prompt and output spaces, when the model has them
        if col != "embedding" and rec_col in df.columns and df[rec_col].notna().any():
            out[col] = _vectors(df[rec_col])
    if "prompt_text" in df.columns and df["prompt_text"].notna().any():
        out["prompt_text"] = df["prompt_text"].to_numpy()
    if "pred_top_k_labels" in df.columns and df["pred_top_k_labels"].notna().any():
        out["top_k_labels"] = df["pred_top_k_labels"].to_numpy()
        out["top_k_probs"] = [None if v is None else [float(x) for x in v] for v in df["pred_top_k_probs"]]

    for c in (*FEATURES, *TAGS):
        if c in df.columns and df[c].notna().any():
            out[c] = df[c].to_numpy()
    return out


def window_frame(store: Any, model: str, since: Any = None, until: Any = None, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """Successful records of ``model`` in [since, until) with their posted actuals."""
    backend = open_backend(store, s3_endpoint_url)
    df = read_records_df(backend, model, since, until, columns=["model", *COLUMNS], s3_endpoint_url=s3_endpoint_url)
    df = df[df["outcome"].fillna("ok") == "ok"]
    # every record with at least one embedding: text2img requests have a prompt and an output, no input image
    mask = np.zeros(len(df), bool)
    for c in VECTORS:
        if c in df.columns and len(df):
            mask |= embeddings_from_column(df[c], c)[1]
    if not mask.any():
        raise ValueError(f"no captured record with an embedding for {model} in the window (since={since}, until={until})")
    df = df[mask].reset_index(drop=True)
    act = load_actuals(backend, s3_endpoint_url)
    df["label"] = join_actuals(df, act) if len(act) else None
    return _finish(df)


def baseline_frame(store: Any, model: str, version: int | None = None, s3_endpoint_url: str | None = None) -> pd.DataFrame:
    """The stored baseline sample as the reference set (timestamp: when the baseline was built)."""
    b = load_baseline(open_backend(store, s3_endpoint_url), model, version)
    meta = b.metadata.reset_index(drop=True).copy()
    if "request_id" not in meta or meta["request_id"].isna().all():
        meta["request_id"] = [f"baseline-v{b.version}-{i}" for i in range(len(meta))]
    meta["ts_ms"] = int(pd.Timestamp(b.manifest["created_at"]).timestamp() * 1000)
    meta["model_version"] = f"baseline-v{b.version}"
    meta["embedding_source"] = b.manifest.get("embedding_source")
    for c in ("pred_label", "label"):
        if c not in meta:
            meta[c] = None
    for name, sp in b.spaces.items():  # each space's sample back on its metadata rows
        col = SPACE_BY_NAME[name].column
        vectors: list = [None] * len(meta)
        for row, v in zip(sp.rows, sp.embeddings):
            vectors[int(row)] = v
        meta[col] = vectors
    return _finish(meta)


def align(reference: pd.DataFrame, primary: pd.DataFrame) -> pd.DataFrame:
    """``reference`` with the columns of ``primary`` (a column the baseline lacks is all-null),
    so one schema describes both files."""
    ref = reference.copy()
    for c in primary.columns:
        if c not in ref.columns:
            ref[c] = None
    return ref[list(primary.columns)]
