"""Train the demo's small ResNet classifier on the digits, on CPU, and save it like a hub
checkpoint (safetensors + ``preprocessor_config.json``) that ``resnet_classifier`` serves.

Training feeds the model exactly what the served processor produces (the images go through the
same ``ConvNextImageProcessor``), so served predictions and embeddings match training.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

LABELS = [str(i) for i in range(10)]


def make_processor(size: int):
    from transformers import ConvNextImageProcessor

    # shortest_edge < 384: resize the short side to shortest_edge / crop_pct (= size) and
    # centre-crop size x size; with size x size inputs this is the identity resize.
    return ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=1.0,
                                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def make_model(seed: int = 0):
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                          layer_type="basic", num_labels=len(LABELS),
                          id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    return ResNetForImageClassification(config)


def _shift(x, rng: np.random.Generator, max_shift: int):
    """Random translation by up to max_shift pixels, padding with the white background."""
    import torch

    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4, value=float(x.max()))
    out = torch.empty_like(x)
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    for i in range(n):
        out[i] = pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def train_classifier(
    train_images, train_labels, out_dir: str | Path, *, size: int, epochs: int = 8, batch_size: int = 64,
    lr: float = 3e-3, seed: int = 0, eval_images=None, eval_labels=None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Train, save to ``out_dir`` and return ``{"train_accuracy", "holdout_accuracy", "seconds", ...}``."""
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    processor = make_processor(size)
    x = processor(images=list(train_images), return_tensors="pt")["pixel_values"]
    y = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    model = make_model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size]
            xb = _shift(x[idx], rng, 2)
            loss = torch.nn.functional.cross_entropy(model(pixel_values=xb).logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(epoch + 1)
    model.eval()
    info = {"epochs": epochs, "n_train": int(len(x)), "size": size,
            "train_accuracy": accuracy(model, x, y)}
    if eval_images is not None:
        xe = processor(images=list(eval_images), return_tensors="pt")["pixel_values"]
        info["holdout_accuracy"] = accuracy(model, xe, torch.as_tensor(np.asarray(eval_labels)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    processor.save_pretrained(str(out))
    info["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "training.json").write_text(json.dumps(info, indent=2))
    return info


def accuracy(model, x, y) -> float:
    import torch

    with torch.inference_mode():
        pred = torch.cat([model(pixel_values=x[i:i + 256]).logits.argmax(-1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())
