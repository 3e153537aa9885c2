"""Helpers for the capture / store / sidecar tests (no Triton needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from monitoring.ingest.store.backend import LocalBackend
from serving.launch.server import free_port  # noqa: F401 (re-exported for the monitoring tests)
from tests.conftest import wait_for  # noqa: F401 (re-exported for the monitoring tests)

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BASE_TS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
DIM = 16


def make_record(i: int, model: str = "m1", ts_ms: int | None = None, dim: int = DIM) -> dict[str, Any]:
    """A complete record as the serving core produces it."""
    rng = np.random.default_rng(i)
    return {
        "request_id": f"{model}-req-{i:06d}",
        "model": model,
        "model_version": "1",
        "ts_ms": BASE_TS + i * 100 if ts_ms is None else ts_ms,
        "queue_ms": 0.5,
        "compute_ms": 3.25,
        "batch_size": 1,
        "outcome": "ok" if i % 10 else "error",
        "error_code": None if i % 10 else "INVALID_ARG",
        "error_message": None if i % 10 else "bad image",
        "image_width": 224,
        "image_height": 224,
        "brightness": 120.0 + i % 7,
        "contrast": 40.0,
        "sharpness": 900.0,
        "prompt_tokens": None,
        "has_negative_prompt": None,
        "gen_args": None,
        "pred_label": f"class_{i % 5}",
        "pred_top_prob": 0.75,
        "pred_entropy": 1.1,
        "output_width": None,
        "output_height": None,
        "output_mean": None,
        "output_std": None,
        "embedding": rng.standard_normal(dim).astype(np.float32),
        "embedding_source": "resnet.pooler:avgpool",
        "text_embedding": None,
        "text_embedding_source": None,
        "prompt_hash": None,
        "prompt_text": None,
        "gen_steps": None,
        "gen_guidance": None,
        "gen_strength": None,
        "gen_noise_level": None,
        "gen_width": None,
        "gen_height": None,
        "output_nonfinite": None,
        "output_blank": None,
        "output_embedding": None,
        "output_embedding_source": None,
        "thumbnail": None,
        # issue 23
        "pred_top_k_labels": None,
        "pred_top_k_probs": None,
        "image_mode": "RGB",
        "image_format": "PNG",
        "segment_attrs": None,
    }




def spool_segments(spool: Path) -> list[Path]:
    return sorted(p for p in spool.glob("*/*.jsonl"))


def parquet_files(store: Path) -> list[Path]:
    return sorted(store.rglob("*.parquet"))


class SidecarProc:
    """``python -m monitoring sidecar`` as a real subprocess, logs captured to a file."""

    def __init__(self, spool: Path, store: str | Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.log = log
        e = dict(os.environ)
        e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
        e.update(env or {})
        self.logf = open(log, "ab")
        self.start_offset = self.logf.tell()
        self.proc = subprocess.Popen(
            [PY, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store), "--metrics-port", "-1",
             "--poll-interval", "0.02", "--compact-every", "0", *extra],
            cwd=str(ROOT), env=e, stdout=self.logf, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "sidecar started" in self.output() or self.proc.poll() is not None, what="sidecar start")
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        data = self.log.read_bytes()[self.start_offset:]
        return data.decode(errors="replace")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.logf.close()


def produce(spool: Path, n: int, model: str = "m1", start: int = 0, batch_size: int = 50, ts: Callable[[int], int] | None = None) -> None:
    """Write records start..start+n-1 of ``model`` into the spool through a real Capturer."""
    from monitoring.capture import Capturer

    cap = Capturer(spool, model, "1", batch_size=batch_size, flush_interval_s=30.0, queue_size=max(n, 1))
    for i in range(start, start + n):
        assert cap.submit(make_record(i, model=model, ts_ms=None if ts is None else ts(i)))
    assert cap.close(timeout=60)


class DiskFull:
    """Stands in for `write_file_atomic` and raises ENOSPC while `full` is set (the fault a test
    cannot cause on a real filesystem); `full.clear()` makes the disk writable again."""

    def __init__(self, real: Callable[..., Any], full: bool = True):
        import threading

        self.real = real
        self.full = threading.Event()
        if full:
            self.full.set()

    def __call__(self, path: str, data: bytes, **kw: Any) -> Any:
        import errno

        if self.full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return self.real(path, data, **kw)


class CountingBackend(LocalBackend):
    """A real local store backend that records every prefix it is asked to list."""

    def __init__(self, root):
        super().__init__(root)
        self.prefixes = []

    def list(self, prefix=""):
        self.prefixes.append(prefix)
        return super().list(prefix)
