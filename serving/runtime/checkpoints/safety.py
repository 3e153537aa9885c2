"""Checkpoint directories: where they live, and refusing anything but safetensors."""

from __future__ import annotations

from pathlib import Path

from serving.runtime.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_checkpoint(path: str | Path) -> Path:
    """Return `path` if it holds a loadable safetensors checkpoint; raise a clear error otherwise."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(
            f"checkpoint directory {root} does not exist; run `make weights` (tiny offline weights) "
            f"or `python -m serving.runtime.checkpoints fetch` (real weights, needs network)"
        )
    pickles = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"checkpoint {root} contains pickle weight files {pickles[:5]}: only safetensors are "
            f"loaded (pickle can execute code). Re-save with save_pretrained(safe_serialization=True)."
        )
    if not any(root.rglob("*.safetensors")):
        raise CheckpointError(f"checkpoint {root} has no .safetensors files")
    return root
