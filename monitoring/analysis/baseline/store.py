"""Saving and loading baselines (no pickle: JSON manifest, ``.npy`` samples, Arrow metadata).

A baseline holds one metadata sample (every kept row) and, per embedding space the model
captures (:mod:`monitoring.analysis.baseline.spaces`: input image, prompt, output), that space's vectors
with their row positions in the metadata sample. Each space is fitted and scored on its own.

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

from monitoring.analysis.artifacts import (
    baseline_dir, baselines_prefix, read_arrow, read_json, read_npy, write_arrow, write_json, write_npy,
)
from monitoring.analysis.drift.outputs import OUTPUT_STAT_FIELDS, OutputChecks
from monitoring.analysis.drift.settings import SettingsDrift
from monitoring.ingest.store.backend import open_backend

from .spaces import SPACE_BY_NAME, SpaceSample, primary_space

#: Request metadata the metadata detector compares (inputs only: what the world sends us).
METADATA_FIELDS = ("brightness", "contrast", "sharpness", "image_width", "image_height", "prompt_tokens")
#: Generation settings, compared as categories by SettingsDrift (gen_width/height -> gen_size).
SETTINGS_COLUMNS = ("gen_steps", "gen_guidance", "gen_strength", "gen_noise_level", "gen_width", "gen_height",
                    "has_negative_prompt")
#: Output checks' columns (OutputChecks): blank / non-finite flags and output image statistics.
OUTPUT_COLUMNS = ("output_blank", "output_nonfinite", *OUTPUT_STAT_FIELDS)
#: Extra per-row columns kept with the sample (report map, prompt explanations), not drift-tested.
#: prompt_text is only there if it was captured (CAPTURE_PROMPT_TEXT=1).
CONTEXT_FIELDS = ("request_id", "pred_label", "pred_top_prob", "pred_entropy", "label", "prompt_hash", "prompt_text")
KEPT_FIELDS = (*METADATA_FIELDS, *SETTINGS_COLUMNS, *OUTPUT_COLUMNS, *CONTEXT_FIELDS)
DEFAULT_MAX_ROWS = 10_000
FORMAT_VERSION = 2  # 2: several embedding spaces (space-<name>.npy + rows); 1 still loads


def _projected(baseline: "Baseline", projection: Any, fit: Any, X: np.ndarray | None = None):
    """``fit(projection.apply(X))`` with the projection recorded on the suite (``projection_``):
    the same seeded matrix the store's writer used, so baseline and windows live in one space."""
    suite = fit(projection.apply(baseline.embeddings if X is None else X))
    suite.projection_ = projection
    return suite


def default_detector_config() -> dict[str, Any]:
    from monitoring.analysis.drift import EMBEDDING_METHODS
    from monitoring.analysis.drift.calibration import DEFAULT_ALPHA, DEFAULT_N_NULL

    return {"methods": list(EMBEDDING_METHODS), "alpha": DEFAULT_ALPHA, "n_null": DEFAULT_N_NULL,
            "random_state": 0, "metadata_fields": list(METADATA_FIELDS)}


@dataclass
class Baseline:
    """A stored baseline. ``embeddings`` is the primary space's sample (the input image's when
    there is one; see :func:`~monitoring.analysis.baseline.spaces.primary_space`); ``spaces`` has them all."""

    model: str
    version: int
    embeddings: np.ndarray                      # (n, d) float32, primary space
    metadata: pd.DataFrame                      # every kept row: KEPT_FIELDS present
    manifest: dict[str, Any] = field(default_factory=dict)
    spaces: dict[str, SpaceSample] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.spaces:  # a single-space (format 1) baseline: the input image, row for row
            self.spaces = {"image": SpaceSample(self.embeddings, np.arange(len(self.embeddings)),
                                                self.manifest.get("embedding_source"))}

    @property
    def primary_space(self) -> str:
        return primary_space(self.spaces) or "image"

    def space_metadata(self, space: str) -> pd.DataFrame:
        """The metadata rows of ``space``'s sample, aligned with its embeddings."""
        return self.metadata.iloc[self.spaces[space].rows].reset_index(drop=True)

    @property
    def detector_config(self) -> dict[str, Any]:
        return dict(default_detector_config(), **self.manifest.get("detectors", {}))

    def metadata_frame(self) -> pd.DataFrame | None:
        """The drift-tested metadata columns (None if there are none)."""
        cols = [c for c in self.detector_config["metadata_fields"] if c in self.metadata.columns
                and self.metadata[c].notna().any()]
        return self.metadata[cols] if cols else None

    def fit_suite(self, projection: Any = None, **overrides: Any):
        """A :class:`~monitoring.analysis.drift.DriftSuite` fitted on the primary space + metadata (deterministic).

        ``projection``: a :class:`~monitoring.ingest.store.projection.Projection`: fit on the projected
        sample instead (the suite then scores the store's projected column; see that module)."""
        if projection is not None:
            return _projected(self, projection, lambda X: self._fit_suite_on(X, overrides))
        return self._fit_suite_on(self.embeddings, overrides)

    def _fit_suite_on(self, X: np.ndarray, overrides: dict[str, Any]):
        from monitoring.analysis.drift import DriftSuite

        cfg = dict(self.detector_config, **overrides)
        suite = DriftSuite(tuple(cfg["methods"]), alpha=cfg["alpha"], n_null=cfg["n_null"], random_state=cfg["random_state"])
        meta = self.metadata_frame()
        if meta is not None and len(meta) != len(self.embeddings):
            meta = self.space_metadata(self.primary_space)[meta.columns]
        try:
            return suite.fit(X, meta)
        except ValueError:
            if meta is None:
                raise
            return suite.fit(X, None)  # no usable metadata column: embeddings only

    def fit_space(self, space: str, projection: Any = None, **overrides: Any):
        """An embeddings-only :class:`~monitoring.analysis.drift.DriftSuite` fitted on one space's sample
        (``projection``: on its seeded random projection, as :meth:`fit_suite`)."""
        from monitoring.analysis.drift import DriftSuite

        cfg = dict(self.detector_config, **overrides)
        suite = DriftSuite(tuple(cfg["methods"]), metadata=False, alpha=cfg["alpha"], n_null=cfg["n_null"],
                           random_state=cfg["random_state"])
        if projection is not None:
            return _projected(self, projection, suite.fit, self.spaces[space].embeddings)
        return suite.fit(self.spaces[space].embeddings)

    def fit_metadata(self):
        """The request-metadata detector fitted on every kept row, or None if no field is usable."""
        from monitoring.analysis.drift import MetadataDrift

        meta = self.metadata_frame()
        if meta is None:
            return None
        try:
            return MetadataDrift(alpha=self.detector_config["alpha"]).fit(meta.apply(pd.to_numeric, errors="coerce"))
        except ValueError:
            return None

    def fit_settings(self) -> SettingsDrift | None:
        """The generation-settings detector, or None when the baseline has no settings."""
        try:
            return SettingsDrift(alpha=self.detector_config["alpha"]).fit(self.metadata)
        except ValueError:
            return None

    def fit_outputs(self) -> OutputChecks | None:
        """Output checks (failed/blank/non-finite shares, output stats), or None for non-generative models."""
        if not any(c in self.metadata.columns and self.metadata[c].notna().any() for c in OUTPUT_COLUMNS):
            return None
        src = self.manifest.get("source") or {}
        return OutputChecks(alpha=self.detector_config["alpha"]).fit(
            self.metadata, int(src.get("n_errors") or 0), src.get("n_records"))


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def list_baselines(store: Any, model: str, s3_endpoint_url: str | None = None) -> list[dict[str, Any]]:
    """Manifests of every stored baseline version of ``model``, oldest first."""
    backend = open_backend(store, s3_endpoint_url)
    out = []
    for e in backend.list(baselines_prefix(model)):
        if e.key.endswith("/baseline.json"):
            try:
                out.append(read_json(backend, e.key))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda m: m["version"])


def _check_matrix(X: Any, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{what} contain NaN or inf")
    return X


def save_baseline(
    store: Any,
    model: str,
    embeddings: np.ndarray | None = None,
    metadata: pd.DataFrame | None = None,
    *,
    spaces: dict[str, SpaceSample] | None = None,
    source: dict[str, Any] | None = None,
    embedding_source: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    detectors: dict[str, Any] | None = None,
    s3_endpoint_url: str | None = None,
) -> Baseline:
    """Store a new version (previous + 1) of ``model``'s baseline and return it.

    Either ``embeddings`` (n, d), one row per ``metadata`` row (the input-image space), or
    ``spaces`` ``{name: SpaceSample(X, rows, source)}`` whose ``rows`` index ``metadata``.
    Metadata rows are subsampled to ``max_rows`` at random (seeded), each space keeping its
    rows among them. Each space's detectors are checked to fit before anything is written; a
    space with too few rows is left out (listed under ``skipped_spaces``), and the build fails
    only if no space fits.
    """
    if spaces is None:
        if embeddings is None:
            raise ValueError("save_baseline needs embeddings or spaces")
        X = _check_matrix(embeddings, "embeddings")
        spaces = {"image": SpaceSample(X, np.arange(len(X)), embedding_source)}
        n_rows = len(X)
    else:
        if not spaces:
            raise ValueError("spaces is empty: no embedding column had any vector")
        n_rows = len(metadata) if metadata is not None else max(len(s.embeddings) for s in spaces.values())
    meta = pd.DataFrame(index=range(n_rows)) if metadata is None else metadata.reset_index(drop=True)
    if len(meta) != n_rows:
        raise ValueError(f"metadata has {len(meta)} rows but embeddings have {n_rows}")
    for name, sp in spaces.items():
        if name not in SPACE_BY_NAME:
            raise ValueError(f"unknown embedding space {name!r}; known: {list(SPACE_BY_NAME)}")
        _check_matrix(sp.embeddings, f"{name}-space embeddings")
        if len(sp.rows) != len(sp.embeddings) or (len(sp.rows) and (sp.rows.min() < 0 or sp.rows.max() >= n_rows)):
            raise ValueError(f"{name}-space rows do not index the {n_rows} metadata rows")
    n_total = n_rows
    keep = np.arange(n_rows)
    if n_rows > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(n_rows, max_rows, replace=False))
        meta = meta.iloc[keep].reset_index(drop=True)
    new_pos = np.full(n_rows, -1)
    new_pos[keep] = np.arange(len(keep))
    sampled: dict[str, SpaceSample] = {}
    for name, sp in spaces.items():
        sel = new_pos[np.asarray(sp.rows)] >= 0
        sampled[name] = SpaceSample(np.asarray(sp.embeddings, np.float32)[sel], new_pos[np.asarray(sp.rows)[sel]], sp.source)
    keep_cols = [c for c in KEPT_FIELDS if c in meta.columns]
    meta = meta[keep_cols]
    cfg = dict(default_detector_config(), **(detectors or {}))
    # fail loudly (too few rows, NaN, ...) before anything is stored; a space that cannot fit is left out
    fitted, skipped = {}, {}
    probe = Baseline(model, 0, next(iter(sampled.values())).embeddings, meta, {"detectors": cfg}, sampled)
    for name in sampled:
        try:
            probe.fit_space(name)
            fitted[name] = sampled[name]
        except ValueError as e:
            skipped[name] = f"{len(sampled[name].embeddings)} rows: {e}"
    if not fitted:
        raise ValueError("no embedding space has enough rows for the detectors: "
                         + "; ".join(f"{k} space: {v}" for k, v in skipped.items()))
    primary = primary_space(fitted) or "image"
    X = fitted[primary].embeddings
    backend = open_backend(store, s3_endpoint_url)
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
        "n_rows": int(len(meta)),
        "n_source_rows": int(n_total),
        "dim": int(X.shape[1]),
        "embedding_source": fitted[primary].source,
        "primary_space": primary,
        "spaces": {name: {"column": SPACE_BY_NAME[name].column, "n": int(len(sp.embeddings)), "dim": int(sp.embeddings.shape[1]),
                          "embedding_source": sp.source} for name, sp in fitted.items()},
        "skipped_spaces": skipped,
        "metadata_columns": keep_cols,
        "detectors": cfg,
    }
    b = Baseline(model, version, X, meta, manifest, fitted)
    b.fit_suite()
    d = baseline_dir(model, version)
    write_npy(backend, f"{d}/embeddings.npy", X)  # the primary space, as format 1 readers expect
    for name, sp in fitted.items():
        write_npy(backend, f"{d}/space-{name}.npy", sp.embeddings)
        write_npy(backend, f"{d}/space-{name}-rows.npy", np.asarray(sp.rows, np.int64))
    write_arrow(backend, f"{d}/metadata.arrow", pa.Table.from_pandas(meta, preserve_index=False))
    write_json(backend, f"{d}/baseline.json", manifest)  # last: a version exists once its manifest does
    return b


def load_baseline(store: Any, model: str, version: int | None = None, s3_endpoint_url: str | None = None) -> Baseline:
    """Load ``version`` (default: the latest) of ``model``'s baseline."""
    backend = open_backend(store, s3_endpoint_url)
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
    meta = read_arrow(backend, f"{d}/metadata.arrow").to_pandas()
    if "spaces" not in manifest:  # format 1: one image space, row for row
        X = read_npy(backend, f"{d}/embeddings.npy")
        return Baseline(model, int(manifest["version"]), X, meta, manifest)
    spaces = {name: SpaceSample(read_npy(backend, f"{d}/space-{name}.npy"), read_npy(backend, f"{d}/space-{name}-rows.npy"),
                                info.get("embedding_source"))
              for name, info in manifest["spaces"].items()}
    primary = manifest.get("primary_space") or primary_space(spaces) or "image"
    return Baseline(model, int(manifest["version"]), spaces[primary].embeddings, meta, manifest, spaces)
