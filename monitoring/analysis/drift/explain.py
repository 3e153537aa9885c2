"""Turning a drift verdict into something actionable: which clusters gained/lost mass, and which
window rows (by position, so the caller can map them to request ids) are most responsible."""

from __future__ import annotations

from typing import Any

import numpy as np


def top_positions(scores: np.ndarray, k: int, positions: np.ndarray | None = None) -> list[int]:
    """Window positions of the ``k`` largest ``scores`` (largest first).

    ``positions`` maps score index -> window position when the scores were computed on a subset.
    """
    scores = np.asarray(scores)
    k = int(min(k, scores.size))
    if k <= 0:
        return []
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    if positions is not None:
        idx = np.asarray(positions)[idx]
    return [int(i) for i in idx]


def cluster_shift_explanation(
    labels: np.ndarray,
    distances: np.ndarray,
    baseline_share: np.ndarray,
    *,
    top_clusters: int = 3,
    n_examples: int = 5,
) -> dict[str, Any]:
    """Per-cluster baseline share, window share and delta, sorted by |delta|.

    Args:
        labels: cluster index of every window row.
        distances: each window row's distance to its own cluster centre (used to pick
            representative members: the closest ones).
        baseline_share: fraction of the baseline in each cluster.
        top_clusters: how many of the most-changed clusters get example members.
        n_examples: how many window positions to list per top cluster.

    Returns:
        ``{"clusters": [...], "gained": [...], "lost": [...], "top_clusters": [...]}`` where every
        top cluster lists ``window_positions`` of members closest to its centre (a cluster that
        lost all its mass lists none).
    """
    k = baseline_share.size
    n = labels.size
    window_share = np.bincount(labels, minlength=k) / max(n, 1)
    delta = window_share - baseline_share
    order = np.argsort(-np.abs(delta), kind="stable")
    clusters = [
        {
            "cluster": int(c),
            "baseline_share": float(baseline_share[c]),
            "window_share": float(window_share[c]),
            "delta": float(delta[c]),
        }
        for c in order
    ]
    top = []
    for c in order[:top_clusters]:
        members = np.flatnonzero(labels == c)
        closest = members[np.argsort(distances[members], kind="stable")[:n_examples]]
        top.append(
            {
                "cluster": int(c),
                "direction": "gained" if delta[c] > 0 else "lost",
                "delta": float(delta[c]),
                "window_count": int(members.size),
                "expected_count": float(baseline_share[c] * n),
                "window_positions": [int(i) for i in closest],
            }
        )
    return {
        "clusters": clusters,
        "gained": [int(c) for c in order if delta[c] > 0],
        "lost": [int(c) for c in order if delta[c] < 0],
        "top_clusters": top,
    }
