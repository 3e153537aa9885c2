"""Penultimate-layer embeddings captured with forward hooks during the normal forward pass.

A `Tap` hooks one named module and, only while armed, keeps a pooled copy of each output.
Nothing runs twice: the hook sees the activations the pipeline computes anyway. Per model:

| model | embedding (module, pooling) | text_embedding |
|---|---|---|
| resnet_classifier | `resnet.pooler` (global average pool the head reads), flatten | - |
| sd_img2img / sd_depth / sd_inpaint | `vae.encoder.mid_block`, spatial mean, first encoder pass | `text_encoder.final_layer_norm`, mean over real tokens |
| sd_upscale | `unet.mid_block`, spatial mean, last denoising step, conditional half | same as above |
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.ndim == 4 else x.reshape(x.shape[0], -1)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Tap:
    """A forward hook on `root.<module_path>` that records pooled outputs while armed."""

    def __init__(self, root: torch.nn.Module, module_path: str, pool: Callable[[torch.Tensor], torch.Tensor],
                 source: str):
        self.module = root.get_submodule(module_path)
        self.pool = pool
        self.source = source
        self.calls: list[torch.Tensor] = []
        self.armed = False
        self.handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if not self.armed:
            return
        out = output[0] if isinstance(output, (tuple, list)) else output
        if hasattr(out, "last_hidden_state"):
            out = out.last_hidden_state
        self.calls.append(self.pool(out.detach()).float().cpu())

    @contextmanager
    def armed_for_call(self):
        self.calls = []
        self.armed = True
        try:
            yield self
        finally:
            self.armed = False

    def first_rows(self, n: int) -> np.ndarray | None:
        """The first `n` rows over the calls in order (pipelines may encode item by item)."""
        if not self.calls:
            return None
        rows = torch.cat(self.calls, dim=0)
        return rows[:n].numpy() if rows.shape[0] >= n else None

    def last_call_rows(self, n: int) -> np.ndarray | None:
        """The last call's last `n` rows: the conditional half of a classifier-free-guidance batch."""
        if not self.calls or self.calls[-1].shape[0] < n:
            return None
        return self.calls[-1][-n:].numpy()

    def remove(self) -> None:
        self.handle.remove()


def mean_over_tokens(hidden: np.ndarray, lengths: list[int]) -> np.ndarray:
    """Mean of each row's first `length` token vectors (BOS, prompt tokens and EOS; no padding)."""
    return np.stack([hidden[i, : max(1, n)].mean(axis=0) for i, n in enumerate(lengths)])
