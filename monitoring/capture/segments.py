"""Spool segment files: the hand-off format between model processes and the sidecar.

A segment is a JSON-lines file written by one model process' capture thread:

* line 1 is a header ``{"_segment": {...}}`` with the format version, the producer id and
  the producer's cumulative counters (so the sidecar can export drops it never saw);
* every other line is one record. Vector fields are stored as
  ``{"f32": "<base64 of little-endian float32>"}`` (4 bytes a value instead of ~20 as
  decimal text); plain lists are accepted on read too.

A segment is written as ``<name>.jsonl.tmp``, fsynced, then renamed to ``<name>.jsonl``:
a reader that ignores ``*.tmp`` never sees a partial segment. The name is
``<epoch-ms>-<pid>-<token>-<seq>.jsonl`` so lexical order is roughly time order and two
processes (or a restarted one reusing a pid) never collide.
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fields import FIELD_KINDS, FIELD_NAMES

SEGMENT_FORMAT = 1
SEGMENT_SUFFIX = ".jsonl"
TMP_SUFFIX = ".tmp"
HEADER_KEY = "_segment"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _encode_vector(v: Any) -> dict[str, str]:
    arr = np.ascontiguousarray(np.asarray(v, dtype="<f4").reshape(-1))
    return {"f32": base64.b64encode(arr.tobytes()).decode("ascii")}


def normalize_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keep known fields, encode vectors and JSON fields. Returns (clean, unknown_keys)."""
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for k, v in record.items():
        if k not in FIELD_NAMES:
            unknown.append(k)
            continue
        if v is None:
            out[k] = None
            continue
        kind = FIELD_KINDS[k]
        if kind == "vector":
            out[k] = _encode_vector(v)
        elif kind == "json" and not isinstance(v, str):
            out[k] = json.dumps(v, default=_json_default, separators=(",", ":"))
        else:
            out[k] = v
    return out, unknown


def encode_line(record: dict[str, Any]) -> str:
    """One already-normalised record (see :func:`normalize_record`) as its segment line."""
    return json.dumps(record, separators=(",", ":"), default=_json_default)


def encode_lines(header: dict[str, Any], lines: list[str]) -> bytes:
    """A segment: its header line, then record lines made by :func:`encode_line`."""
    head = json.dumps({HEADER_KEY: header}, separators=(",", ":"), default=_json_default)
    return "\n".join([head, *lines, ""]).encode("utf-8")


def encode_segment(header: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    """Serialise already-normalised records (see :func:`normalize_record`)."""
    return encode_lines(header, [encode_line(r) for r in records])


def _decode_vector(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, dict) and "f32" in v:
        return np.frombuffer(base64.b64decode(v["f32"]), dtype="<f4")
    if isinstance(v, list):
        return np.asarray([math.nan if x is None else x for x in v], dtype=np.float32)
    raise ValueError(f"bad vector value of type {type(v).__name__}")


@dataclass
class Segment:
    """A decoded segment: its header, its records and the lines that could not be parsed."""

    path: str
    header: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    size: int = 0

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def stem(self) -> str:
        return self.name[: -len(SEGMENT_SUFFIX)] if self.name.endswith(SEGMENT_SUFFIX) else self.name


def read_segment(path: str) -> Segment:
    """Read a finished segment. Unparseable lines are counted in ``bad_lines``, not raised."""
    with open(path, "rb") as f:
        data = f.read()
    seg = Segment(path=path, size=len(data))
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            seg.bad_lines += 1
            continue
        if not isinstance(obj, dict):
            seg.bad_lines += 1
            continue
        if HEADER_KEY in obj and len(obj) == 1:
            seg.header = obj[HEADER_KEY] if isinstance(obj[HEADER_KEY], dict) else {}
            continue
        try:
            for k in FIELD_NAMES.intersection(obj):
                if FIELD_KINDS[k] == "vector":
                    obj[k] = _decode_vector(obj[k])
        except (ValueError, TypeError):
            seg.bad_lines += 1
            continue
        seg.records.append(obj)
    return seg


def write_file_atomic(path: str, data: bytes, fsync_dir: bool = True, tmp_path: str | None = None) -> None:
    """Write ``data`` to ``tmp_path`` (default ``path + '.tmp'``), fsync, rename to ``path``.

    Readers never see a partial ``path``; the temp file is removed if anything fails.
    """
    tmp = tmp_path or path + TMP_SUFFIX
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync_dir:
        try:
            fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
