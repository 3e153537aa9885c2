"""Where a baseline's rows come from: captured records, a Parquet file, or a folder of images.

Records and Parquet files give ``(spaces, metadata DataFrame, info dict)``, one embedding
sample per space (`spaces_from_records`, `spaces_from_parquet`); images give
``(embeddings (n, d) float32, metadata DataFrame (n rows), info dict)``: ``from_images`` serves
the pictures through the model's own runtime in-process (:mod:`.served_model`, monitoring's one
adapter onto serving), and builds each row with the capture hook's own record function:
baseline rows and served records of the same images agree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .served_model import default_checkpoint, embed_images
from .spaces import SOURCE_COLUMNS, VECTOR_COLUMNS, spaces_of_frame
from .store import KEPT_FIELDS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def list_images(directory: str | os.PathLike[str]) -> list[tuple[Path, str | None]]:
    """Image files under ``directory`` (sorted); the label is the sub-folder name when images sit
    in one level of class folders (``<dir>/<label>/<file>``), else None."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"images directory {root} does not exist")
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            rel = p.relative_to(root).parts
            out.append((p, rel[0] if len(rel) == 2 else None))
    if not out:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {root}")
    return out


def from_images(directory: str | os.PathLike[str], model: str = "resnet_classifier", checkpoint_dir: str | None = None,
                batch_size: int = 32, progress: Callable[[int], None] | None = None, prompt: str | None = None,
                gen_args: dict[str, Any] | None = None):
    """Every image under ``directory`` (class sub-folders give a ``label`` column); prompt models
    get ``prompt`` and ``gen_args`` with every image, as a client would send them."""
    files = list_images(directory)
    X, meta, source = embed_images([p.read_bytes() for p, _ in files], model, checkpoint_dir, batch_size, progress,
                                   prompt=prompt, gen_args=gen_args)
    meta["request_id"] = [str(p.relative_to(directory)) for p, _ in files]
    labels = [lab for _, lab in files]
    if any(lab is not None for lab in labels):
        meta["label"] = labels
    info = {"kind": "images", "path": str(directory), "rows": len(files),
            "checkpoint_dir": checkpoint_dir or default_checkpoint(model), "embedding_source": source}
    return X, meta, info


# -- several embedding spaces per model (input image, prompt, output) --------------------------

def spaces_from_frame(df: pd.DataFrame, info: dict[str, Any]):
    """``(spaces, metadata, info)`` of a record frame: every ok row with at least one embedding,
    and per space the vectors and their row positions. A row lacking a space (text2img has no
    input image) still counts in the spaces it has."""
    if not any(c in df.columns for c in VECTOR_COLUMNS):
        raise ValueError(f"no embedding column ({', '.join(VECTOR_COLUMNS)}) in columns {list(df.columns)}")
    n_records = int(len(df))
    n_errors = 0
    if "outcome" in df.columns:
        ok = df["outcome"].fillna("ok") == "ok"
        n_errors = int((~ok).sum())
        df = df[ok]
    df = df.reset_index(drop=True)
    spaces = spaces_of_frame(df)
    if not spaces:
        raise ValueError("no rows with an embedding: was capture on (CAPTURE_SPOOL_DIR) when they were served?")
    has_any = np.zeros(len(df), bool)
    for sp in spaces.values():
        has_any[sp.rows] = True
    new_pos = np.cumsum(has_any) - 1
    for sp in spaces.values():
        sp.rows = new_pos[sp.rows]
    kept = df[has_any].reset_index(drop=True)
    meta = kept[[c for c in KEPT_FIELDS if c in kept.columns]].copy()
    info = dict(info, rows=int(len(kept)), skipped_without_embedding=int((~has_any).sum()), n_records=n_records,
                n_errors=n_errors, spaces={k: int(len(v.rows)) for k, v in spaces.items()})
    primary = spaces.get("image") or next(iter(spaces.values()))
    info["embedding_source"] = primary.source
    return spaces, meta, info


def spaces_from_records(store: Any, model: str, since: Any = None, until: Any = None, s3_endpoint_url: str | None = None):
    """Captured records of ``model`` in ``[since, until)``, every embedding space."""
    from monitoring.ingest.store.reader import read_records_df, to_epoch_ms

    cols = ["request_id", "ts_ms", "outcome", *VECTOR_COLUMNS, *SOURCE_COLUMNS, *KEPT_FIELDS]
    cols = [c for c in dict.fromkeys(cols) if c != "label"]
    df = read_records_df(store, model, since, until, columns=cols, s3_endpoint_url=s3_endpoint_url)
    return spaces_from_frame(df, {"kind": "records", "store": str(store), "since_ms": to_epoch_ms(since),
                                  "until_ms": to_epoch_ms(until)})


def spaces_from_parquet(path: str | os.PathLike[str]):
    """A Parquet file or directory with any of the embedding columns and metadata columns."""
    import pyarrow.parquet as pq

    return spaces_from_frame(pq.read_table(os.fspath(path)).to_pandas(), {"kind": "parquet", "path": str(path)})
