"""Penultimate-layer embeddings captured with forward hooks during the normal forward pass.

A `Tap` hooks one named module and, only while armed, keeps a pooled copy of each output.
The pooled rows stay on the model's device until the pipeline has returned (`first_rows()` /
`last_call_rows()` copy them to the CPU once), so a GPU pipeline never waits on a
device-to-host copy mid-call. Per model:

| model | embedding (module, pooling) | text_embedding | output_embedding |
|---|---|---|---|
| resnet_classifier | `resnet.pooler` (global average pool the head reads), flatten | - | - |
| sd_img2img / sd_depth | `vae.encoder.mid_block`, spatial mean, the pipeline's encoder pass over the input image | `text_encoder.final_layer_norm`, mean over real tokens | `vae.decoder.mid_block`, spatial mean (the final latents being decoded) |
| sd_inpaint | `vae.encoder.mid_block`, spatial mean, over the *unmasked* input image (one extra encoder pass, only while capturing: the pipeline itself encodes the masked image) | same | same |
| sd_upscale | `unet.mid_block`, spatial mean, last denoising step, conditional half (the upscaler has no image encoder) | same | same |
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
                 source: str, keep_last_only: bool = False):
        self.module = root.get_submodule(module_path)
        self.pool = pool
        self.source = source
        # A tap inside the denoising loop fires once per step; only the last step is used, so
        # holding the others would cost memory for nothing.
        self.keep_last_only = keep_last_only
        self.calls: list[torch.Tensor] = []
        self.armed = False
        self.module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if not self.armed:
            return
        out = output[0] if isinstance(output, (tuple, list)) else output
        if hasattr(out, "last_hidden_state"):
            out = out.last_hidden_state
        pooled = self.pool(out.detach()).float()  # stays on the device: no sync mid-pipeline
        if self.keep_last_only:
            self.calls = [pooled]
        else:
            self.calls.append(pooled)

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
        return rows[:n].cpu().numpy() if rows.shape[0] >= n else None

    def last_call_rows(self, n: int) -> np.ndarray | None:
        """The last call's last `n` rows: the conditional half of a classifier-free-guidance batch."""
        if not self.calls or self.calls[-1].shape[0] < n:
            return None
        return self.calls[-1][-n:].cpu().numpy()


def mean_over_tokens(hidden: np.ndarray, lengths: list[int]) -> np.ndarray:
    """Mean of each row's first `length` token vectors (BOS, prompt tokens and EOS; no padding)."""
    return np.stack([hidden[i, : max(1, n)].mean(axis=0) for i, n in enumerate(lengths)])
