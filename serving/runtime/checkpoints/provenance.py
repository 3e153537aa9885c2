"""Where a checkpoint's weights came from: `<checkpoint>/provenance.json`.

Written by `python -m serving.runtime.checkpoints tiny|fetch`, read by `deploy package` (the manifest
carries it per model) and `deploy check` (prints it; refuses test weights unless told they are
wanted). Kinds:

- ``tiny-random``: the offline random-weight checkpoints of `make weights`, for tests only;
- ``hub``: a Hugging Face hub id at a pinned revision;
- ``local-folder``: a diffusers / transformers folder on disk;
- ``single-file``: one `.safetensors` checkpoint converted with diffusers' `from_single_file`.

Every kind lists the sha256 of each weight file (`*.safetensors`, relative to the checkpoint),
so a checkpoint swapped after it was recorded is caught.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PROVENANCE_NAME = "provenance.json"
KINDS = ("tiny-random", "hub", "local-folder", "single-file")
TEST_KINDS = frozenset({"tiny-random"})
WEIGHT_SUFFIX = ".safetensors"


def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def weight_hashes(checkpoint: Path) -> dict[str, str]:
    """{path relative to the checkpoint: sha256} for every weight file, sorted."""
    root = Path(checkpoint)
    return {p.relative_to(root).as_posix(): sha256_path(p)
            for p in sorted(root.rglob(f"*{WEIGHT_SUFFIX}")) if p.is_file()}


def record(checkpoint: Path, kind: str, **source: Any) -> dict:
    """Write provenance.json for `checkpoint` (after its weights are saved) and return it."""
    if kind not in KINDS:
        raise ValueError(f"provenance kind {kind!r} is not one of {', '.join(KINDS)}")
    data = {"kind": kind, **{k: v for k, v in source.items() if v is not None},
            "weights": weight_hashes(Path(checkpoint))}
    if kind in TEST_KINDS:
        data["for_tests"] = True  # spelled out, so a reader of the manifest need not know the kinds
    (Path(checkpoint) / PROVENANCE_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def read(checkpoint: Path) -> dict | None:
    """The recorded provenance, or None when the checkpoint has none (built before it was kept)."""
    path = Path(checkpoint) / PROVENANCE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise ValueError(f"{path}: 'kind' must be one of {', '.join(KINDS)}, got {data.get('kind') if isinstance(data, dict) else data!r}")
    return data


def describe(prov: dict | None) -> str:
    """One line for `deploy check`: what the weights are and where they came from."""
    if prov is None:
        return "unknown origin (no provenance.json)"
    n = len(prov.get("weights", {}))
    kind = prov["kind"]
    if kind == "tiny-random":
        what = "tiny random weights, for tests (outputs are noise)"
    elif kind == "hub":
        what = f"hub {prov.get('source')}@{prov.get('revision', '?')}"
    elif kind == "local-folder":
        what = f"local folder {prov.get('source')}"
    else:
        what = f"single file {prov.get('source')} (sha256 {str(prov.get('source_sha256', '?'))[:12]})"
    dtype = f", {prov['dtype']}" if prov.get("dtype") else ""
    return f"{what}{dtype}; {n} weight file(s) with sha256"


def is_test_weights(prov: dict | None) -> bool:
    """Tiny random weights, or weights whose origin nobody recorded: neither may be deployed."""
    return prov is None or prov.get("kind") in TEST_KINDS
