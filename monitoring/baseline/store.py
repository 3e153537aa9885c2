"""Saving and loading baselines (no pickle: JSON manifest, ``.npy`` sample, Arrow metadata).

The fitted detector state is *not* serialised: every detector is refitted from the stored
sample with the stored configuration and fixed seeds, which is deterministic and fast (about a
second for 10k x 2048 on two cores), and keeps loading safe (nothing executable is stored).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from monitoring.artifacts import (
    backend_of, baseline_dir, baselines_prefix, read_arrow, read_json, read_npy, write_arrow, write_json, write_npy,
)

#: Request metadata the metadata detector compares (inputs only: what the world sends us).
METADATA_FIELDS = ("brightness", "contrast", "sharpness", "image_width", "image_height", "prompt_tokens")
#: Extra per-row columns kept with the sample (for the report's map), not drift-tested.
CONTEXT_FIELDS = ("request_id", "pred_label", "pred_top_prob", "pred_entropy", "label")
DEFAULT_MAX_ROWS = 10_000
FORMAT_VERSION = 1


def default_detector_config() -> dict[str, Any]:
    from monitoring.drift import EMBEDDING_METHODS
    from monitoring.drift.calibration import DEFAULT_ALPHA, DEFAULT_N_NULL

    return {"methods": list(EMBEDDING_METHODS), "alpha": DEFAULT_ALPHA, "n_null": DEFAULT_N_NULL,
            "random_state": 0, "metadata_fields": list(METADATA_FIELDS)}


@dataclass
class Baseline:
    model: str
    version: int
    embeddings: np.ndarray                      # (n, d) float32
    metadata: pd.DataFrame                      # n rows: METADATA_FIELDS present + CONTEXT_FIELDS present
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def detector_config(self) -> dict[str, Any]:
        return dict(default_detector_config(), **self.manifest.get("detectors", {}))

    def metadata_frame(self) -> pd.DataFrame | None:
        """The drift-tested metadata columns (None if there are none)."""
        cols = [c for c in self.detector_config["metadata_fields"] if c in self.metadata.columns
                and self.metadata[c].notna().any()]
        return self.metadata[cols] if cols else None

    def fit_suite(self, **overrides: Any):
        """A :class:`~monitoring.drift.DriftSuite` fitted on this baseline (deterministic)."""
        from monitoring.drift import DriftSuite

        cfg = dict(self.detector_config, **overrides)
        suite = DriftSuite(tuple(cfg["methods"]), alpha=cfg["alpha"], n_null=cfg["n_null"], random_state=cfg["random_state"])
        meta = self.metadata_frame()
        try:
            return suite.fit(self.embeddings, meta)
        except ValueError:
            if meta is None:
                raise
            return suite.fit(self.embeddings, None)  # no usable metadata column: embeddings only


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def list_baselines(store: Any, model: str, s3_endpoint_url: str | None = None) -> list[dict[str, Any]]:
    """Manifests of every stored baseline version of ``model``, oldest first."""
    backend = backend_of(store, s3_endpoint_url)
    out = []
    for e in backend.list(baselines_prefix(model)):
        if e.key.endswith("/baseline.json"):
            try:
                out.append(read_json(backend, e.key))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda m: m["version"])


def save_baseline(
    store: Any,
    model: str,
    embeddings: np.ndarray,
    metadata: pd.DataFrame | None = None,
    *,
    source: dict[str, Any] | None = None,
    embedding_source: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    detectors: dict[str, Any] | None = None,
    s3_endpoint_url: str | None = None,
) -> Baseline:
    """Store a new version (previous + 1) of ``model``'s baseline and return it.

    ``embeddings`` (n, d) and ``metadata`` (n rows, optional) are subsampled to ``max_rows``
    rows at random (seeded). The detectors are checked to fit before anything is written.
    """
    X = np.asarray(embeddings, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contain NaN or inf")
    meta = pd.DataFrame(index=range(len(X))) if metadata is None else metadata.reset_index(drop=True)
    if len(meta) != len(X):
        raise ValueError(f"metadata has {len(meta)} rows but embeddings have {len(X)}")
    n_total = len(X)
    if n_total > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(n_total, max_rows, replace=False))
        X, meta = X[keep], meta.iloc[keep].reset_index(drop=True)
    keep_cols = [c for c in (*METADATA_FIELDS, *CONTEXT_FIELDS) if c in meta.columns]
    meta = meta[keep_cols]
    backend = backend_of(store, s3_endpoint_url)
    versions = [m["version"] for m in list_baselines(backend, model)]
    version = (max(versions) + 1) if versions else 1
    manifest = {
        "format": FORMAT_VERSION,
        "model": model,
        "version": version,
        "created_at": _now_iso(),
        "created_ms": int(time.time() * 1000),
        "source": source or {},
        "n": int(len(X)),
        "n_source_rows": int(n_total),
        "dim": int(X.shape[1]),
        "embedding_source": embedding_source,
        "metadata_columns": keep_cols,
        "detectors": dict(default_detector_config(), **(detectors or {})),
    }
    b = Baseline(model, version, X, meta, manifest)
    b.fit_suite()  # fails loudly (too few rows, NaN, ...) before anything is stored
    d = baseline_dir(model, version)
    write_npy(backend, f"{d}/embeddings.npy", X)
    write_arrow(backend, f"{d}/metadata.arrow", pa.Table.from_pandas(meta, preserve_index=False))
    write_json(backend, f"{d}/baseline.json", manifest)  # last: a version exists once its manifest does
    return b


def load_baseline(store: Any, model: str, version: int | None = None, s3_endpoint_url: str | None = None) -> Baseline:
    """Load ``version`` (default: the latest) of ``model``'s baseline."""
    backend = backend_of(store, s3_endpoint_url)
    manifests = list_baselines(backend, model)
    if not manifests:
        raise LookupError(f"no baseline for model {model!r} in {backend.url()}: build one with "
                          f"`python -m monitoring baseline build --model {model} --from ...`")
    if version is None:
        manifest = manifests[-1]
    else:
        found = [m for m in manifests if m["version"] == int(version)]
        if not found:
            raise LookupError(f"model {model!r} has no baseline version {version}; versions: {[m['version'] for m in manifests]}")
        manifest = found[0]
    d = baseline_dir(model, manifest["version"])
    X = read_npy(backend, f"{d}/embeddings.npy")
    meta = read_arrow(backend, f"{d}/metadata.arrow").to_pandas()
    return Baseline(model, int(manifest["version"]), X, meta, manifest)
