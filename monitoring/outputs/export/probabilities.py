"""Per-class probability columns from the captured top-k (pandas and numpy only: the SDK venvs import it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd


def class_probabilities(frame: pd.DataFrame, classes: list[str] | None = None) -> tuple[list[str], pd.DataFrame] | None:
    """One probability column per class (``class order``, frame) from the captured top-k, or None
    without classifier predictions. Classes outside a row's top k share that row's remaining mass
    evenly (capture keeps k of them: an approximation whose error is at most that mass); a row
    with only ``pred_top_prob`` (the baseline) is the k = 1 case."""
    if "prediction_label" not in frame.columns or frame["prediction_label"].isna().all():
        return None
    extra_classes = list(classes or [])
    rows: list[dict[str, float]] = []
    classes: set[str] = set()
    for labs, probs, top, p1 in zip(frame.get("top_k_labels", pd.Series([None] * len(frame))),
                                    frame.get("top_k_probs", pd.Series([None] * len(frame))),
                                    frame["prediction_label"], frame.get("pred_top_prob", pd.Series([None] * len(frame)))):
        if isinstance(labs, str):
            labs = json.loads(labs)
        if labs is not None and probs is not None and len(labs):
            known = {str(k): float(v) for k, v in zip(labs, probs)}
        elif top is not None and p1 is not None and not pd.isna(p1):
            known = {str(top): float(p1)}
        else:
            known = {}
        classes.update(known)
        rows.append(known)
    if not any(rows):  # predictions without probabilities (a generative model's output check)
        return None
    if "actual_label" in frame.columns:
        classes.update(str(v) for v in frame["actual_label"].dropna())
    order = sorted(set(extra_classes) | classes, key=lambda c: (len(c), c))  # "2" before "10"
    table = np.full((len(rows), len(order)), np.nan)
    index = {c: i for i, c in enumerate(order)}
    for r, known in enumerate(rows):
        if not known:
            continue
        rest = [c for c in order if c not in known]
        left = max(0.0, 1.0 - sum(known.values()))
        table[r, :] = left / len(rest) if rest else 0.0
        for c, v in known.items():
            table[r, index[c]] = v
    return order, pd.DataFrame(table, columns=order, index=frame.index)
