"""Fixtures shared by every test package: images, tiny checkpoints, a real tritonserver."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from serving import MODEL_NAMES  # noqa: E402
from serving.server import free_port  # noqa: E402,F401 (the one definition; tests import it from here)


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", step: float = 0.02) -> Any:
    """Poll ``cond`` until truthy (returns its value) or fail after ``timeout`` seconds: a
    condition with a deadline, never a sleep used as synchronisation."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def photo(size: int = 64, seed: int = 0) -> Image.Image:
    """A textured RGB image (noise + gradient), so pipelines and stats see real variation."""
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
    pixels = np.clip(0.6 * grad + rng.normal(60, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def png(size: int = 64, seed: int = 0) -> bytes:
    return encode(photo(size, seed))


def mask_png(size: int = 64) -> bytes:
    m = np.zeros((size, size), dtype=np.uint8)
    m[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return encode(Image.fromarray(m, mode="L"))


def tensor(*values) -> np.ndarray:
    return np.array(list(values), dtype=np.object_).reshape(-1, 1)


def gen_args(**kw) -> bytes:
    base = {"num_inference_steps": 2, "seed": 7}
    base.update(kw)
    return json.dumps(base).encode()


@pytest.fixture(scope="session")
def model_repo() -> Path:
    """The shipped model repository, with tiny checkpoints built if `make weights` has not run."""
    repo = ROOT / "model_repository"
    missing = [m for m in MODEL_NAMES if not (repo / m / "1" / "checkpoint" / "model_index.json").exists()
               and not (repo / m / "1" / "checkpoint" / "config.json").exists()]
    if missing:
        from serving.checkpoints.__main__ import main

        main(["tiny", "--repo", str(repo), "--models", *missing])
    return repo


@pytest.fixture(scope="session")
def checkpoint(model_repo):
    def path(model: str) -> str:
        return str(model_repo / model / "1" / "checkpoint")
    return path


@pytest.fixture(scope="session")
def spool_dir(tmp_path_factory) -> Path:
    """Where the session's tritonserver hands monitoring records (see tests/monitoring)."""
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="session")
def triton_server(model_repo, spool_dir, tmp_path_factory):
    """One real tritonserver for the whole session, all five models, on free loopback ports."""
    from serving.server import TritonProcess

    server = TritonProcess(
        repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
        log_path=tmp_path_factory.mktemp("triton-log") / "tritonserver.log",
        extra_env={"CAPTURE_SPOOL_DIR": str(spool_dir), "OMP_NUM_THREADS": "1"},
    )
    server.start(wait_s=600)
    yield server
    code = server.stop()
    assert code == 0, f"tritonserver exited with {code}:\n{server.log_tail()}"
