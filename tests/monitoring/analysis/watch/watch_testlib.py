"""A capture store written by "anything": plain pyarrow files in the store's hive layout, recent
hours (clean digits, then darkened ones), and a baseline of clean digits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
for _p in (HERE.parents[3], HERE.parent.parent / "workflow"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from workflow_testlib import corrupt, digits, embed, make_records, metadata  # noqa: E402

from monitoring.ingest.store import records_to_table  # noqa: E402
from monitoring.ingest.store.writer import partition_dir  # noqa: E402

MODEL = "digits_clf"
HOUR = 3_600_000


def hours_ago(n: int, now_ms: int | None = None) -> int:
    """Start of the UTC hour ``n`` hours before the current one."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return (now // HOUR - n) * HOUR


def write_hour(put, start_ms: int, kind: str, n: int = 120, seed: int = 0, prefix: str | None = None) -> list[str]:
    """``n`` digits (``kind``: clean / darkened / blurred) spread over the hour at ``start_ms``,
    written as one plain Parquet file through ``put(key, bytes)``; returns their request ids."""
    import io

    _, _, ho_img, _, _ = digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ho_img), n, replace=False)
    recs = make_records(corrupt([ho_img[i] for i in idx], kind), start_ms + 1000, prefix or f"{kind}-{start_ms}-{seed}",
                        step_ms=(HOUR - 2000) // n, model=MODEL)
    buf = io.BytesIO()
    pq.write_table(records_to_table(recs), buf)
    put(f"{partition_dir(MODEL, start_ms // HOUR)}/other-writer-{prefix or kind}-{seed}.parquet", buf.getvalue())
    return [r["request_id"] for r in recs]


def write_baseline(store) -> None:
    from monitoring.analysis.baseline import save_baseline

    tr_img, tr_lab, _, _, clf = digits()
    meta = metadata(tr_img)
    X = embed(tr_img)
    meta["pred_label"] = [str(int(p)) for p in clf.predict(X)]
    save_baseline(store, MODEL, X, meta, source={"kind": "test"}, embedding_source="pixels")
