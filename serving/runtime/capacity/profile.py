"""Measure activation memory and FLOPs of the real-size models on the meta device.

Nothing is allocated: every operator runs on shapes only. `LiveBytes` follows each tensor an
operator creates until Python drops it, so its peak is the largest set of activations alive at
once in one forward pass, which is what the caching allocator must hold on a GPU (plus its
rounding, see `serving.runtime.capacity.limits`). PyTorch's `FlopCounterMode` counts the FLOPs of the
same pass. Scaled-dot-product attention is one operator here, as with the fused (flash /
memory-efficient) kernels a GPU uses; `peak_bytes_math_attention` adds the score matrix the
math fallback would materialise, which is what a GPU pays when no fused kernel applies.

`python -m serving.runtime.capacity.profile` rewrites `costs.json` (about a minute on 2 CPU cores);
`limits.py` reads only that file, so serving never imports diffusers for it.
"""

from __future__ import annotations

import argparse
import json
import weakref
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from serving.runtime.capacity.realsize import SD_MODELS, build_component

COSTS_PATH = Path(__file__).parent / "costs.json"
SERVING_DTYPE = torch.float16
# Output sides for SD (the limits admit 64-1024 per side); input sides for the x4 upscaler.
SD_SIDES = (256, 512, 768, 1024)
UPSCALE_SIDES = (64, 128, 256, 384, 512)
UPSCALE_FACTOR = 4
TEXT_TOKENS = 77
DEPTH_SIDE = 384  # DPT-hybrid's processor resizes every input to 384x384
RESNET_SIDE = 224


class LiveBytes(TorchDispatchMode):
    """Peak bytes of operator outputs alive at once (views and in-place results excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.peak_math = 0  # peak if attention materialised its score matrix

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.ops.aten.scaled_dot_product_attention.default:
            q, k = args[0], args[1]
            scores = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.element_size()
            self.peak_math = max(self.peak_math, self.live + 2 * scores)  # scores + softmax
        inputs = {id(a) for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in inputs and t._base is None:
                nbytes = t.untyped_storage().nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, nbytes)
        return out

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes


def trace(fn) -> dict[str, int]:
    """Run `fn()` on meta tensors; return its peak live bytes and FLOPs."""
    live, flops = LiveBytes(), FlopCounterMode(display=False)
    with torch.inference_mode(), flops, live:
        fn()
    return {"peak_bytes": live.peak, "peak_bytes_math_attention": max(live.peak, live.peak_math),
            "flops": flops.get_total_flops()}


def meta(*shape: int, dtype: torch.dtype = SERVING_DTYPE) -> torch.Tensor:
    return torch.empty(*shape, device="meta", dtype=dtype)


def weight_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    return sum(p.numel() for p in module.parameters()) * torch.finfo(dtype).bits // 8


def profile_sd(model: str) -> dict[str, Any]:
    """Per-item costs of each stage of an SD pipeline at each grid side (CFG doubles the UNet batch)."""
    upscale = model == "sd_upscale"
    with torch.device("meta"):
        parts = {c: build_component(model, c) for c in ("text_encoder", "unet", "vae")}
        if model == "sd_depth":
            parts["depth_estimator"] = build_component(model, "depth_estimator")
    # The upscaler's VAE runs in fp32 (force_upcast: it overflows in fp16); the runtime keeps
    # it in fp32 from load on, so its weights count at fp32 too.
    vae_dtype = torch.float32 if upscale else SERVING_DTYPE
    for name, part in parts.items():
        part.to(vae_dtype if name == "vae" else SERVING_DTYPE).eval()
    unet, vae = parts["unet"], parts["vae"]
    weights = {name: weight_bytes(p, vae_dtype if name == "vae" else SERVING_DTYPE) for name, p in parts.items()}
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    hidden = parts["text_encoder"].config.hidden_size
    context = meta(2, TEXT_TOKENS, hidden)
    fixed = {"text_encoder": trace(lambda: parts["text_encoder"](torch.zeros(2, TEXT_TOKENS, dtype=torch.long, device="meta")))}
    if model == "sd_depth":
        fixed["depth_estimator"] = trace(lambda: parts["depth_estimator"](meta(1, 3, DEPTH_SIDE, DEPTH_SIDE)))
    sides = UPSCALE_SIDES if upscale else SD_SIDES
    stages: dict[str, list[dict[str, int]]] = {"unet_step": [], "vae_decode": []}
    if not upscale:
        stages["vae_encode"] = []
    for side in sides:
        latent = side if upscale else side // vae_factor
        extra = {"class_labels": torch.zeros(2, dtype=torch.long, device="meta")} if upscale else {}
        x = meta(2, unet.config.in_channels, latent, latent)
        stages["unet_step"].append(trace(lambda: unet(x, torch.zeros(1, device="meta"), context, **extra)))
        z = meta(1, vae.config.latent_channels, latent, latent, dtype=vae_dtype)
        stages["vae_decode"].append(trace(lambda: vae.decode(z)))
        if not upscale:
            img = meta(1, 3, side, side, dtype=vae_dtype)
            stages["vae_encode"].append(trace(lambda: vae.encode(img)))
    return {
        "grid": "input_side" if upscale else "output_side",
        "sides": list(sides),
        "output_scale": UPSCALE_FACTOR if upscale else 1,
        "vae_factor": vae_factor,
        "vae_dtype_bytes": torch.finfo(vae_dtype).bits // 8,
        "weight_bytes": weights,
        "fixed": fixed,
        "stages": {name: {key: [row[key] for row in rows] for key in rows[0]} for name, rows in stages.items()},
    }


def profile_resnet() -> dict[str, Any]:
    with torch.device("meta"):
        model = build_component("resnet_classifier", "model").to(SERVING_DTYPE).eval()
    return {
        "grid": "fixed",
        "weight_bytes": {"model": weight_bytes(model, SERVING_DTYPE)},
        # The processor resizes every image to 224x224: cost per item does not depend on its size.
        "fixed": {"forward": trace(lambda: model(meta(1, 3, RESNET_SIDE, RESNET_SIDE)))},
    }


def profile_model(model: str) -> dict[str, Any]:
    return profile_resnet() if model == "resnet_classifier" else profile_sd(model)


def build_costs() -> dict[str, Any]:
    return {
        "about": "Per-item activation bytes and FLOPs of the real-size models, traced on the meta "
                 "device by serving/runtime/capacity/profile.py; weights in serving precision.",
        "versions": {"torch": torch.__version__.split("+")[0], "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
        "models": {m: profile_model(m) for m in SD_MODELS + ("resnet_classifier",)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=COSTS_PATH)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(build_costs(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
