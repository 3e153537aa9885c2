"""Mergeable window summaries: score a window from per-partition partial states.

A fleet's hour of traffic is spread over many Parquet files (and, with a cluster, many
machines). Every default detector's *window side* reduces to a small state that can be built
per partition and merged, so a window is scored without ever holding all its rows::

    suite = DriftSuite().fit(X_ref)                        # baseline, as usual
    parts = [window_state(suite, X_part) for X_part in partitions]   # map (anywhere)
    state = merge_states(parts)                             # reduce (associative)
    results = score_state(suite, state)                     # == suite.score(concat(parts))

State per method (what makes it mergeable):

* ``cluster_jsd``: row count + counts per baseline k-means cluster (sums).
* ``centroid``: row count + float64 sum of the rows (sums).
* ``mmd`` (random-Fourier-feature mode): row count + float64 sum of the feature vectors; the
  unbiased MMD^2 of the feature kernel only needs the sums (:func:`mmd2_from_sums`).
* ``domain_classifier``: a bottom-k sample (each row gets a uniform random key, a state keeps the
  ``max_samples`` rows with the smallest keys; merging keeps the smallest of the union), i.e. a
  uniform sample without replacement, which is what the detector draws from a big window anyway.
  The sample keeps each row already in the detector's feature space (standardised, PCA-64:
  :meth:`DomainClassifier.transform`), 64 floats instead of the embedding, so a state stored per
  partition stays small (5000 x 64 float32 = 1.3 MB, not 41 MB at d=2048).
* ``metadata``: the window's finite values per fitted field (float64). Exact KS/PSI; 8 bytes per
  value, 8 MB per field for a 1M-row window. A quantile sketch (e.g. DataSketches KLL) would
  bound this further at the cost of approximate p-values; not needed at these sizes.

Equality with in-memory scoring: the statistics, thresholds, p-values and verdicts of
``cluster_jsd``, ``centroid`` and ``mmd`` equal :meth:`DriftSuite.score` on the concatenated
rows up to float64 summation order (~1e-12 relative). ``domain_classifier`` scores the sample with
:meth:`DomainClassifier.score_features`, seeded by the sample itself: every state-based path
(streamed in process, on Dask, from states stored at ingest) gives the same draw, and in-memory
scoring an equally valid draw of the same test (same verdict on clear cases), not the same draw. Explanations that need individual rows (example positions, witness
positions) are left out of merged results; cluster shares and top moved dimensions are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .centroid import CentroidDistance, cosine_distance, euclidean_distance
from .cluster import ClusterJSD, js_distance
from .domain_classifier import DomainClassifier
from .metadata import MetadataDrift
from .mmd import MMDDrift, mmd2_from_sums
from .result import DriftResult
from .suite import DriftSuite


@dataclass
class CountState:
    """Row count and a float64 vector that adds under merge (cluster counts, row sums, feature sums)."""

    n: int
    total: np.ndarray

    def merge(self, other: "CountState") -> "CountState":
        return CountState(self.n + other.n, self.total + other.total)


@dataclass
class SampleState:
    """Bottom-k sample: the rows with the ``k`` smallest random keys, and ``n`` rows seen.

    ``order`` is a global row position (partition index, row) used to put a complete sample back
    in window order, so a small window scores exactly like the in-memory call.
    """

    n: int
    k: int
    keys: np.ndarray
    order: np.ndarray
    rows: np.ndarray

    def merge(self, other: "SampleState") -> "SampleState":
        keys = np.concatenate([self.keys, other.keys])
        order = np.concatenate([self.order, other.order])
        rows = np.concatenate([self.rows, other.rows])
        keep = np.argsort(keys, kind="stable")[: self.k]
        return SampleState(self.n + other.n, self.k, keys[keep], order[keep], rows[keep])


@dataclass
class ValuesState:
    """Finite values per metadata field, raw count per field (missing values counted)."""

    n: int
    values: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, int] = field(default_factory=dict)

    def merge(self, other: "ValuesState") -> "ValuesState":
        keys = set(self.values) | set(other.values)
        empty = np.empty(0, np.float64)
        return ValuesState(
            self.n + other.n,
            {k: np.concatenate([self.values.get(k, empty), other.values.get(k, empty)]) for k in keys},
            {k: self.raw.get(k, 0) + other.raw.get(k, 0) for k in keys},
        )


# ---------------------------------------------------------------------------------------------
# map: rows -> state


def detector_state(det: Any, X: np.ndarray, *, part_id: int = 0, row_offset: int = 0) -> Any:
    """Partial state of one fitted embedding detector for the rows ``X`` of one partition.

    ``part_id`` orders partitions and ``row_offset`` is the position of ``X[0]`` in it (a
    partition may be mapped in slices); both seed the sample keys, so the map is deterministic.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or (X.shape[0] and X.shape[1] != det.n_features_in_):
        raise ValueError(f"X must have shape (n, {det.n_features_in_}), got {X.shape}")
    n = int(X.shape[0])
    if isinstance(det, ClusterJSD):
        counts = np.zeros(det.n_clusters, np.float64)
        if n:
            counts += np.bincount(det.assign(X)[0], minlength=det.n_clusters)
        return CountState(n, counts)
    if isinstance(det, CentroidDistance):
        return CountState(n, X.sum(axis=0, dtype=np.float64) if n else np.zeros(X.shape[1]))
    if isinstance(det, MMDDrift):
        if det.n_features is None:
            raise ValueError("MMDDrift(n_features=None) (exact kernel) is not mergeable; use the default RFF mode")
        total = det.rff_.transform(X).sum(axis=0, dtype=np.float64) if n else np.zeros(det.n_features)
        return CountState(n, total)
    if isinstance(det, DomainClassifier):
        seed = [0 if det.random_state is None else int(det.random_state), int(part_id), int(row_offset), 104729]
        keys = np.random.default_rng(seed).random(n)
        keep = np.argsort(keys, kind="stable")[: det.max_samples]
        order = np.stack([np.full(keep.size, part_id, np.int64), keep.astype(np.int64) + row_offset], axis=1)
        return SampleState(n, det.max_samples, keys[keep], order, np.ascontiguousarray(det.transform(X[keep]), np.float32))
    raise TypeError(f"{type(det).__name__} has no mergeable state")


def metadata_state(det: MetadataDrift, df: pd.DataFrame) -> ValuesState:
    """Partial state of a fitted :class:`MetadataDrift` for one partition's metadata frame."""
    values: dict[str, np.ndarray] = {}
    raw: dict[str, int] = {}
    for c in det.fields_:
        if c not in df.columns:
            continue
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values[c] = v[np.isfinite(v)]
        raw[c] = int(v.size)
    return ValuesState(int(len(df)), values, raw)


def window_state(
    suite: DriftSuite, X: np.ndarray, metadata: pd.DataFrame | None = None, *, part_id: int = 0, row_offset: int = 0
) -> dict[str, Any]:
    """``{method: partial state}`` of every detector of a fitted suite for one partition (or slice)."""
    out = {
        name: detector_state(det, X, part_id=part_id, row_offset=row_offset) for name, det in suite.detectors.items()
    }
    if metadata is not None and getattr(suite, "metadata_fitted_", False):
        out["metadata"] = metadata_state(suite.metadata, metadata)
    return out


# ---------------------------------------------------------------------------------------------
# reduce


def merge_states(states: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge ``{method: state}`` mappings (associative and commutative up to float rounding)."""
    merged: dict[str, Any] = {}
    for s in states:
        for name, st in s.items():
            merged[name] = st if name not in merged else merged[name].merge(st)
    return merged


# ---------------------------------------------------------------------------------------------
# score: state -> DriftResult


def _calibrated(det: Any, statistic: float, n: int, explanation: dict[str, Any]) -> DriftResult:
    return det.result(statistic, n, dict(explanation, merged=True))


def score_detector_state(det: Any, state: Any) -> DriftResult:
    """Score one detector from its merged window state (same null, same alpha as ``det.score``)."""
    det._check_fitted()
    if state.n < det.min_window:
        raise ValueError(f"window has {state.n} rows; {det.method} needs at least {det.min_window}")
    if isinstance(det, ClusterJSD):
        share = state.total / state.n
        stat = js_distance(det.baseline_share_, share)
        expl = {
            "n_clusters": det.n_clusters,
            "baseline_share": det.baseline_share_.tolist(),
            "window_share": share.tolist(),
        }
        return _calibrated(det, stat, state.n, expl)
    if isinstance(det, CentroidDistance):
        mu = state.total / state.n
        eu, co = euclidean_distance(det.centroid_, mu), cosine_distance(det.centroid_, mu)
        shift = (mu - det.centroid_) / np.where(det.scale_ > 0, det.scale_, 1.0)
        top = np.argsort(-np.abs(shift), kind="stable")[: min(det.top_dimensions, shift.size)]
        expl = {
            "metric": det.metric,
            "euclidean": float(eu),
            "cosine": float(co),
            "top_dimensions": [
                {"dimension": int(j), "baseline_mean": float(det.centroid_[j]), "window_mean": float(mu[j]), "shift_in_std": float(shift[j])}
                for j in top
            ],
        }
        return _calibrated(det, eu if det.metric == "euclidean" else co, state.n, expl)
    if isinstance(det, MMDDrift):
        stat = mmd2_from_sums(det.ref_sum_, det.n_baseline_, state.total, state.n)
        expl = {"mode": f"random Fourier features ({det.n_features})", "sigma": det.sigma_}
        return _calibrated(det, stat, state.n, expl)
    if isinstance(det, DomainClassifier):
        # back to (partition, row) order first, so the draw does not depend on the merge order
        rows = state.rows[np.lexsort((state.order[:, 1], state.order[:, 0]))]
        result = det.score_features(rows, state.n)
        expl = dict(result.explanation, merged=True, n_window_rows=int(state.n))
        # positions refer to the sample, not to the window: drop them rather than mislead
        expl.pop("most_window_like_positions", None)
        return DriftResult(
            method=result.method,
            statistic=result.statistic,
            threshold=result.threshold,
            p_value=result.p_value,
            is_drift=result.is_drift,
            window_size=int(state.n),
            explanation=expl,
        )
    raise TypeError(f"{type(det).__name__} has no mergeable state")


def score_metadata_state(det: MetadataDrift, state: ValuesState) -> DriftResult:
    """Score a :class:`MetadataDrift` from merged values (exactly ``det.score`` on the rows)."""
    cols = {}
    for c in det.fields_:
        v = state.values.get(c, np.empty(0))
        pad = state.n - v.size  # missing values: NaN rows, which score() drops and counts
        cols[c] = np.concatenate([v, np.full(pad, np.nan)]) if pad > 0 else v
    return det.score(pd.DataFrame(cols))


def score_state(suite: DriftSuite, state: Mapping[str, Any]) -> dict[str, DriftResult]:
    """``{method: DriftResult}`` for a merged window state, like :meth:`DriftSuite.score`."""
    out = {name: score_detector_state(det, state[name]) for name, det in suite.detectors.items()}
    if "metadata" in state and getattr(suite, "metadata_fitted_", False):
        out["metadata"] = score_metadata_state(suite.metadata, state["metadata"])
    return out


# ---------------------------------------------------------------------------------------------
# bytes: a state stored beside its partition (npz, no pickle: a store may be shared)


def states_to_bytes(state: Mapping[str, Any], attrs: Mapping[str, Any] | None = None) -> bytes:
    """``{method: state}`` (+ JSON-able ``attrs``, e.g. what it was made for) as one .npz blob."""
    import io
    import json

    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, Any] = {}
    for name, st in state.items():
        if isinstance(st, CountState):
            kinds[name] = {"kind": "count", "n": int(st.n)}
            arrays[f"{name}.total"] = np.asarray(st.total, np.float64)
        elif isinstance(st, SampleState):
            kinds[name] = {"kind": "sample", "n": int(st.n), "k": int(st.k)}
            arrays[f"{name}.keys"], arrays[f"{name}.order"], arrays[f"{name}.rows"] = st.keys, st.order, st.rows
        elif isinstance(st, ValuesState):
            fields = sorted(st.values)
            kinds[name] = {"kind": "values", "n": int(st.n), "fields": fields, "raw": {f: int(st.raw.get(f, 0)) for f in fields}}
            for i, f in enumerate(fields):
                arrays[f"{name}.v{i}"] = np.asarray(st.values[f], np.float64)
        else:
            raise TypeError(f"{name}: {type(st).__name__} is not a mergeable state")
    head = json.dumps({"states": kinds, "attrs": dict(attrs or {})}, sort_keys=True)
    arrays["__head__"] = np.frombuffer(head.encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def states_from_bytes(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, attrs)`` from :func:`states_to_bytes`."""
    import io
    import json

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        head = json.loads(bytes(z["__head__"]).decode())
        out: dict[str, Any] = {}
        for name, k in head["states"].items():
            if k["kind"] == "count":
                out[name] = CountState(int(k["n"]), z[f"{name}.total"])
            elif k["kind"] == "sample":
                out[name] = SampleState(int(k["n"]), int(k["k"]), z[f"{name}.keys"], z[f"{name}.order"], z[f"{name}.rows"])
            else:
                out[name] = ValuesState(int(k["n"]), {f: z[f"{name}.v{i}"] for i, f in enumerate(k["fields"])},
                                        {f: int(v) for f, v in k["raw"].items()})
    return out, head["attrs"]
