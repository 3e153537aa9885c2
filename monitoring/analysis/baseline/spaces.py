"""Embedding spaces: the vector columns a record can carry, each scored on its own.

A generative model captures up to three embeddings per request -- the input image's
(``embedding``), the prompt's (``text_embedding``) and, where the runtime declares a cheap one,
the generated output's (``output_embedding``). They live in different spaces (different widths,
different meanings), so each gets its own baseline sample and its own calibrated detectors. A
record that lacks a space (text2img has no input image) simply counts in the spaces it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Space:
    name: str            # what results are keyed by: "image", "prompt", "output"
    column: str          # the record's vector column
    source_column: str   # the record's column naming where the vector came from
    title: str           # for people


SPACES: tuple[Space, ...] = (
    Space("image", "embedding", "embedding_source", "input image"),
    Space("prompt", "text_embedding", "text_embedding_source", "prompt"),
    Space("output", "output_embedding", "output_embedding_source", "generated output"),
)
SPACE_BY_NAME: dict[str, Space] = {s.name: s for s in SPACES}
VECTOR_COLUMNS: tuple[str, ...] = tuple(s.column for s in SPACES)
SOURCE_COLUMNS: tuple[str, ...] = tuple(s.source_column for s in SPACES)


@dataclass
class SpaceSample:
    """One space's rows: ``embeddings`` (n, d) and ``rows``, their positions in the frame they came from."""

    embeddings: np.ndarray
    rows: np.ndarray
    source: str | None = None


def embeddings_from_column(values: Any, what: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """Stack a column of vectors; returns (X, mask of rows that had one). Widths must agree."""
    vals = list(values)
    mask = np.array([v is not None and len(v) > 0 for v in vals], dtype=bool)
    rows = [np.asarray(v, dtype=np.float32) for v, m in zip(vals, mask) if m]
    if not rows:
        return np.empty((0, 0), np.float32), mask
    widths = {r.shape[0] for r in rows}
    if len(widths) > 1:
        raise ValueError(f"{what} widths differ across rows: {sorted(widths)} (mixed embedding sources?)")
    return np.stack(rows), mask


def spaces_of_frame(df: pd.DataFrame) -> dict[str, SpaceSample]:
    """Every space with at least one vector in ``df`` (rows are positions in ``df``)."""
    out: dict[str, SpaceSample] = {}
    for s in SPACES:
        if s.column not in df.columns:
            continue
        X, mask = embeddings_from_column(df[s.column], f"{s.column} ({s.name} space)")
        if X.shape[0] == 0:
            continue
        src: list[str] = []
        if s.source_column in df.columns:
            src = df.loc[mask, s.source_column].dropna().unique().tolist()
        if len(src) > 1:
            raise ValueError(f"rows mix {s.column} sources {src}: select one model/source")
        out[s.name] = SpaceSample(X, np.flatnonzero(mask), src[0] if src else None)
    return out


def primary_space(names: Any) -> str | None:
    """The space the legacy single-space fields (``methods``, ``embeddings``, ``dim``) describe:
    the input image when there is one, else the first present in SPACES order."""
    names = list(names)
    for s in SPACES:
        if s.name in names:
            return s.name
    return None


def qualified(space: str, method: str) -> str:
    """A method's name in ``drifted`` lists: bare for the image space (unchanged for the
    classifier), ``space:method`` otherwise."""
    return method if space == "image" else f"{space}:{method}"
