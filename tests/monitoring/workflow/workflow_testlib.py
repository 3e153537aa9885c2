"""Synthetic capture stores of real digits for the workflow tests (baseline, score, actuals, report).

Images are the demo's (real sklearn digits as 32x32 RGB, blurred / darkened like the demo's
weeks); embeddings are their 8x8 downsampled pixels (64-d), metadata comes from the capture code's
own ``image_stats``, predictions from a logistic regression trained on the clean baseline digits,
so accuracy falls for real when the images are corrupted.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.capture.image_stats import image_stats  # noqa: E402
from monitoring.capture.record import thumbnail  # noqa: E402
from monitoring.ingest.store import LocalBackend, StoreWriter, records_to_table  # noqa: E402

MODEL = "digits_clf"
T0 = 1_714_953_600_000  # 2024-05-06T00:00:00Z, a Monday
DAY = 86_400_000


@lru_cache(maxsize=1)
def digits():
    """(baseline images, labels, held-out images, labels, classifier): the demo's 32x32 RGB digits
    (dark ink on white) and a logistic regression fitted on the clean baseline embeddings."""
    from sklearn.linear_model import LogisticRegression

    from bench.demo.data import load_split

    s = load_split(size=32, n_train=1000)
    clf = LogisticRegression(max_iter=3000).fit(embed(s.train_images), s.train_labels)
    return s.train_images, s.train_labels, s.holdout_images, s.holdout_labels, clf


def embed(images) -> np.ndarray:
    """A cheap stand-in embedding: the 8x8 box-downsampled gray image, 0..1 (64-d)."""
    from PIL import Image

    return np.stack([np.asarray(im.convert("L").resize((8, 8), Image.BOX), np.float32).reshape(-1) / 255.0 for im in images])


def corrupt(images, kind: str):
    from bench.demo.data import CORRUPTIONS

    return [CORRUPTIONS[kind](im) for im in images]


def metadata(images) -> pd.DataFrame:
    return pd.DataFrame([image_stats(np.asarray(im)) for im in images])


def make_records(images: np.ndarray, start_ms: int, prefix: str, step_ms: int = 60_000, model: str = MODEL) -> list[dict]:
    clf = digits()[4]
    X = embed(images)
    pred = clf.predict(X)
    meta = metadata(images)
    out = []
    for i in range(len(images)):
        r = {"schema_version": 1, "request_id": f"{prefix}-{i:04d}", "model": model, "model_version": "1",
             "ts_ms": start_ms + i * step_ms, "outcome": "ok", "embedding": X[i], "embedding_source": "pixels",
             "pred_label": str(int(pred[i])), "thumbnail": thumbnail(images[i])}
        r.update({k: (float(v) if k in ("brightness", "contrast", "sharpness") else int(v)) for k, v in meta.iloc[i].items()})
        out.append(r)
    return out


def write_records(store: Path, records: list[dict], part: str = "test") -> None:
    StoreWriter(LocalBackend(store)).write_parts(records_to_table(records), part)


def build_store(store: Path, n_per_day: int = 200, kinds=("clean", "blurred", "darkened"), seed: int = 0) -> dict[str, list[str]]:
    """One UTC day per kind (starting Monday 2024-05-06), ``n_per_day`` held-out digits each.

    Returns {kind: request ids}; also writes the baseline (clean training digits)."""
    from monitoring.analysis.baseline import save_baseline

    tr_img, tr_lab, ho_img, ho_lab, clf = digits()
    rng = np.random.default_rng(seed)
    ids = {}
    for day, kind in enumerate(kinds):
        idx = rng.choice(len(ho_img), n_per_day, replace=False)
        recs = make_records(corrupt([ho_img[i] for i in idx], kind), T0 + day * DAY + 3_600_000, f"{kind}", step_ms=(20 * 3_600_000) // n_per_day)
        for r, lab in zip(recs, ho_lab[idx]):
            r["_true"] = str(int(lab))
        write_records(store, [{k: v for k, v in r.items() if k != "_true"} for r in recs], part=f"day{day}")
        ids[kind] = [(r["request_id"], r["_true"]) for r in recs]
    meta = metadata(tr_img)
    X = embed(tr_img)
    meta["pred_label"] = [str(int(p)) for p in clf.predict(X)]
    meta["label"] = [str(int(x)) for x in tr_lab]
    save_baseline(store, MODEL, X, meta, source={"kind": "test"}, embedding_source="pixels")
    return ids


def write_labels(path: Path, ids: dict) -> Path:
    """The true labels of ``build_store``'s requests as the CSV `monitoring actuals --file` reads."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "label"])
        for pairs in ids.values():
            w.writerows(pairs)
    return path


def store_with_actuals(store_template: tuple, root: Path) -> tuple[Path, dict]:
    """A copy of the template store under ``root`` with every true label posted as actuals."""
    import shutil

    from monitoring.cli import main as cli_main

    src, ids = store_template
    store = root / "store"
    shutil.copytree(src, store)
    assert cli_main(["actuals", "--file", str(write_labels(root / "labels.csv", ids)), "--store", str(store)]) == 0
    return store, ids
