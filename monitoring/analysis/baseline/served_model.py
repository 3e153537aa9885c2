"""Run images through a served model's own runtime, in-process: monitoring's one adapter onto serving.

This is the only module on the analysis side that imports `serving` (the layer check in
tests/test_layers.py enforces it). It sends each image as the request a client would send
(plus a prompt and gen_args for the prompt models), and turns every answer into record fields
with the capture hook's own function, `monitoring.capture.record.record_fields`: a baseline
built here and the records captured while serving the same images agree field for field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.capture.record import RecordOptions, record_fields
from serving.runtime.models import runtime_class
from serving.runtime.models.base import ModelRuntime, RawRequest

#: What a baseline may send besides the image: prompt models also need a prompt.
SENDABLE_INPUTS = {"image", "prompt", "gen_args"}


def default_checkpoint(model: str) -> str:
    env = os.environ.get(f"CHECKPOINT_DIR_{model.upper()}")
    if env:
        return env
    return str(Path(__file__).resolve().parents[3] / "model_repository" / model / "1" / "checkpoint")


def load_runtime(model: str, checkpoint_dir: str | None, batch_size: int) -> ModelRuntime:
    runtime = runtime_class(model)(checkpoint_dir or default_checkpoint(model), max_pipeline_batch=batch_size)
    missing = set(runtime.required_inputs) - SENDABLE_INPUTS
    if missing:
        raise ValueError(f"model {model!r} requires input(s) {sorted(missing)} besides the image: "
                         f"build its baseline --from records of served traffic instead")
    runtime.load()
    runtime.capture_embeddings = True
    return runtime


def request_for(runtime: ModelRuntime, image: bytes, prompt: str | None, gen_args: dict[str, Any] | None) -> RawRequest:
    inputs = {"image": np.array([[image]], dtype=np.object_)}
    if "prompt" in runtime.required_inputs:
        if not prompt:
            raise ValueError(f"model {runtime.name!r} needs a prompt for every image: give --prompt")
        inputs["prompt"] = np.array([[prompt.encode()]], dtype=np.object_)
    if gen_args:
        inputs["gen_args"] = np.array([[json.dumps(gen_args).encode()]], dtype=np.object_)
    return RawRequest(inputs)


def embed_images(
    images: list[bytes],
    model: str = "resnet_classifier",
    checkpoint_dir: str | None = None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    prompt: str | None = None,
    gen_args: dict[str, Any] | None = None,
) -> tuple[np.ndarray, pd.DataFrame, str]:
    """Serve encoded images through ``model``'s runtime with embedding capture on.

    Returns (embeddings (n, d) float32, metadata with the capture record's fields, embedding source).
    """
    runtime = load_runtime(model, checkpoint_dir, batch_size)
    embs, rows, sources = [], [], set()
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        for j, res in enumerate(runtime.handle([request_for(runtime, b, prompt, gen_args) for b in chunk])):
            if res.error is not None:
                raise ValueError(f"image #{start + j} failed in {model}: {res.error}")
            fields = record_fields(runtime.contribution(res.items[0], res.item_outputs[0]), RecordOptions())
            if fields.get("embedding") is None:
                raise RuntimeError(f"{model} produced no embedding: its runtime declares no embedding tap")
            embs.append(fields.pop("embedding"))
            sources.add(fields.pop("embedding_source"))
            rows.append({k: v for k, v in fields.items() if not isinstance(v, np.ndarray)})
        if progress is not None:
            progress(len(chunk))
    return np.stack(embs), pd.DataFrame(rows), (sources.pop() if sources else "")
