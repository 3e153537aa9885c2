"""The data behind the interactive embedding explorer: a 2-D map of baseline vs windows per
embedding space, the drift clusters ranked by their contribution, and the requests behind them.

Everything here is plain data (numpy/pandas -> JSON-able dicts); :mod:`.page` renders it.

Spaces: a model can have several embedding spaces (input image, prompt, generated output). The
report iterates over :func:`report_spaces`, one map + cluster ranking per space; a space needs a
baseline matrix and the record column that holds the window's vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from monitoring.analysis.baseline.spaces import embeddings_from_column
from monitoring.analysis.baseline.spaces import SPACE_BY_NAME
from monitoring.analysis.baseline.store import METADATA_FIELDS, Baseline
from monitoring.analysis.drift.cluster import ClusterJSD

#: Points drawn on a map at most (baseline + all windows): SVG scatter stays fluid up to a few
#: thousand points, and every sampled window point carries its thumbnail in the page.
MAP_MAX_POINTS = 6000
#: Share of MAP_MAX_POINTS given to the baseline (the rest is split evenly across windows).
MAP_BASELINE_SHARE = 1 / 3
#: UMAP is fitted on at most this many baseline rows; everything else is projected with it.
PROJECTION_FIT_ROWS = 2000
#: Typical requests listed per cluster (closest to the cluster centre).
CLUSTER_EXAMPLES = 6
#: Numeric record fields offered as "colour by" on the map, besides dataset/prediction/correctness.
COLOR_FIELDS = (*METADATA_FIELDS, "pred_top_prob", "pred_entropy", "queue_ms", "compute_ms")
WINDOW_COLUMNS = ["request_id", "ts_ms", "outcome", "pred_label", "thumbnail", *COLOR_FIELDS]


@dataclass
class Space:
    """One embedding space of a model: its name on the page, the record column holding window
    vectors, and the baseline's vectors for it (rows aligned with ``baseline_meta``)."""

    name: str
    column: str
    baseline: np.ndarray
    baseline_meta: pd.DataFrame
    source: str | None = None


@dataclass
class WindowRows:
    """The scoreable rows of one window in one space: vectors + the per-request details."""

    index: int          # position of the window in the scoring run
    label: str
    X: np.ndarray
    meta: pd.DataFrame  # request_id, ts_ms, pred_label, label (actual), thumbnail, COLOR_FIELDS present
    extra: dict[str, Any] = field(default_factory=dict)


def report_spaces(baseline: Baseline) -> list[Space]:
    """The embedding spaces of ``baseline`` the report maps: every space it has a sample of
    (input image, prompt, output; see monitoring/analysis/baseline/spaces.py), each with its own rows."""
    return [Space(name, SPACE_BY_NAME[name].column, sp.embeddings, baseline.space_metadata(name), sp.source)
            for name, sp in baseline.spaces.items()]


def projector(X_fit: np.ndarray, method: str = "umap", seed: int = 0) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(name, 2-D projection fitted on ``X_fit``). ``umap`` (umap-learn) unless it is missing or
    the sample is too small for a neighbour graph, then PCA (documented fallback)."""
    if method not in ("umap", "pca"):
        raise ValueError(f"projection must be 'umap' or 'pca', got {method!r}")
    if method == "umap" and X_fit.shape[0] >= 30:
        try:
            import umap
        except ImportError:
            umap = None
        if umap is not None:
            reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1).fit(X_fit)
            return "UMAP", lambda X: np.asarray(reducer.transform(X), dtype=np.float64)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(X_fit)
    return "PCA", lambda X: pca.transform(X)


def sample_sizes(n_baseline: int, n_windows: Sequence[int], max_points: int = MAP_MAX_POINTS) -> tuple[int, list[int]]:
    """How many baseline and window rows go on the map (all of them when they fit)."""
    if n_baseline + sum(n_windows) <= max_points:
        return n_baseline, list(n_windows)
    nb = min(n_baseline, int(max_points * MAP_BASELINE_SHARE)) if n_windows else min(n_baseline, max_points)
    left = max_points - nb
    per = left // max(len(n_windows), 1)
    return nb, [min(n, per) for n in n_windows]


def cluster_contributions(baseline_share: np.ndarray, window_share: np.ndarray) -> np.ndarray:
    """Each cluster's term of the Jensen-Shannon divergence (base 2); they sum to JSD^2, the
    square of the cluster_jsd statistic, so they rank clusters by how much drift they carry."""
    p = np.asarray(baseline_share, np.float64)
    q = np.asarray(window_share, np.float64)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1) / np.where(m > 0, m, 1)), 0.0)
        tq = np.where(q > 0, q * np.log2(np.where(q > 0, q, 1) / np.where(m > 0, m, 1)), 0.0)
    return 0.5 * (tp + tq)


def _clean(v: Any) -> Any:
    """A JSON-able scalar (None for NaN/None)."""
    if v is None:
        return None
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else round(float(v), 4)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


def correctness(pred: pd.Series, truth: pd.Series) -> list[str]:
    out = []
    for p, t in zip(pred, truth):
        if _clean(p) is None or _clean(t) is None:
            out.append("no label")
        else:
            out.append("correct" if str(p) == str(t) else "wrong")
    return out


def request_card(meta: pd.DataFrame, i: int, fields: Sequence[str]) -> dict[str, Any]:
    """The details shown for one request (hover/click card, cluster examples)."""
    row = meta.iloc[i]
    ts = _clean(row.get("ts_ms"))
    return {
        "request_id": _clean(row.get("request_id")),
        "time": pd.to_datetime(ts, unit="ms", utc=True).isoformat() if ts is not None else None,
        "prediction": _clean(row.get("pred_label")),
        "label": _clean(row.get("label")),
        "metadata": {f: _clean(row.get(f)) for f in fields if _clean(row.get(f)) is not None},
        "thumbnail": _clean(row.get("thumbnail")),
    }


def build_space(space: Space, windows: list[WindowRows], *, cluster_config: dict[str, Any], projection: str = "umap",
                max_points: int = MAP_MAX_POINTS, seed: int = 0) -> dict[str, Any]:
    """The explorer payload of one space: sampled map points, per-window ranked clusters."""
    rng = np.random.default_rng(seed)
    Xb = np.asarray(space.baseline, np.float32)
    windows = [w for w in windows if w.X.shape[0] and w.X.shape[1] == Xb.shape[1]]
    fit_idx = rng.choice(len(Xb), min(len(Xb), PROJECTION_FIT_ROWS), replace=False)
    proj_name, proj = projector(Xb[fit_idx], projection, seed)

    # clusters: the scorer's own k-means (same config and seed), so ids match the saved explanation
    cj = ClusterJSD(random_state=cluster_config.get("random_state", 0), alpha=cluster_config.get("alpha", 0.01)).fit(Xb)
    nb, nws = sample_sizes(len(Xb), [w.X.shape[0] for w in windows], max_points)
    datasets = ["baseline"] + [w.label for w in windows]
    fields = [f for f in COLOR_FIELDS if f in space.baseline_meta.columns or any(f in w.meta.columns for w in windows)]
    pts: dict[str, list[Any]] = {k: [] for k in ("x", "y", "ds", "window", "cluster", "rid", "time", "pred", "label", "correct", "thumb")}
    pts["fields"] = {f: [] for f in fields}

    def add(ds: int, window: int, X: np.ndarray, meta: pd.DataFrame, idx: np.ndarray) -> None:
        P = proj(X[idx])
        lab, _ = cj.assign(X[idx])
        sub = meta.iloc[idx].reset_index(drop=True)
        truth = sub["label"] if "label" in sub else pd.Series([None] * len(sub))
        pred = sub["pred_label"] if "pred_label" in sub else pd.Series([None] * len(sub))
        pts["x"] += [round(float(v), 4) for v in P[:, 0]]
        pts["y"] += [round(float(v), 4) for v in P[:, 1]]
        pts["ds"] += [ds] * len(idx)
        pts["window"] += [window] * len(idx)
        pts["cluster"] += [int(c) for c in lab]
        pts["rid"] += [_clean(v) for v in (sub["request_id"] if "request_id" in sub else [None] * len(sub))]
        ts = sub["ts_ms"] if "ts_ms" in sub else pd.Series([None] * len(sub))
        pts["time"] += [pd.to_datetime(t, unit="ms", utc=True).isoformat() if _clean(t) is not None else None for t in ts]
        pts["pred"] += [_clean(v) for v in pred]
        pts["label"] += [_clean(v) for v in truth]
        pts["correct"] += correctness(pred, truth)
        pts["thumb"] += [_clean(v) for v in (sub["thumbnail"] if "thumbnail" in sub else [None] * len(sub))]
        for f in fields:
            pts["fields"][f] += [_clean(v) for v in (sub[f] if f in sub else [None] * len(sub))]

    bmeta = space.baseline_meta.reset_index(drop=True)
    add(0, -1, Xb, bmeta, np.sort(rng.choice(len(Xb), nb, replace=False)))
    out_windows = []
    for k, (w, nw) in enumerate(zip(windows, nws)):
        add(k + 1, w.index, w.X, w.meta, np.sort(rng.choice(w.X.shape[0], nw, replace=False)))
        lab, dist = cj.assign(w.X)
        share = np.bincount(lab, minlength=cj.n_clusters) / len(lab)
        contrib = cluster_contributions(cj.baseline_share_, share)
        total = float(contrib.sum()) or 1.0
        ranked = []
        for c in np.argsort(-contrib, kind="stable"):
            members = np.flatnonzero(lab == c)
            typical = members[np.argsort(dist[members], kind="stable")[:CLUSTER_EXAMPLES]]
            ranked.append({
                "cluster": int(c), "baseline_share": float(cj.baseline_share_[c]), "window_share": float(share[c]),
                "window_count": int(members.size), "expected_count": float(cj.baseline_share_[c] * len(lab)),
                "contribution": float(contrib[c] / total),
                "direction": "gained" if share[c] > cj.baseline_share_[c] else "lost",
                "examples": [request_card(w.meta, int(i), fields) for i in typical],
            })
        out_windows.append({"index": w.index, "label": w.label, "n": int(w.X.shape[0]), "n_shown": int(nw),
                            "jsd": float(np.sqrt(contrib.sum())), "clusters": ranked})
    return {
        "name": space.name, "column": space.column, "source": space.source, "projection": proj_name,
        "datasets": datasets, "n_total": [len(Xb)] + [w.X.shape[0] for w in windows], "n_shown": [nb] + nws,
        "fields": fields, "points": pts, "windows": out_windows, "n_clusters": cj.n_clusters,
    }
