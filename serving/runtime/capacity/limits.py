"""GPU memory and time of a request, and the limits that keep every admitted request inside both.

The model: a pipeline call holds the weights plus the largest activation set of its stages
(text encoder, VAE encode, one UNet step with its classifier-free-guidance pair, VAE decode),
all traced per item on the meta device at real size (`costs.json`, `serving.runtime.capacity.profile`);
its time is the FLOPs of every stage and step over a sustained throughput per GPU class.
Sizes between grid points are interpolated linearly in pixels, which over-estimates the convex
(attention) part: the limits err on the side of refusing.

A request is refused with INVALID_ARG when its group would need more GPU memory than the
instance's share (`gpu_memory_fraction` of the GPU, the same bound `set_per_process_memory_fraction`
enforces) or more time than `max_request_seconds`. Every number is configurable per model in
config.pbtxt `parameters`; docs/gpu.md has the derived tables.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from serving.runtime.errors import InvalidInputError

COSTS_PATH = Path(__file__).parent / "costs.json"
GIB = 2**30
# The caching allocator rounds blocks up and fragments; cuBLAS/cuDNN keep workspaces. With
# these, estimates came within 0.87-1.16 of the peak reserved memory bench/gpu_check.py measured
# on an H200, the upscaler's smallest call excepted (docs/gpu.md).
ALLOCATOR_OVERHEAD = 1.25
WORKSPACE_BYTES = GIB // 4
# SageMaker ends an invocation after 60 s; leave room for queueing and image encoding.
DEFAULT_MAX_REQUEST_SECONDS = 45.0
# Tiled VAE decoding (diffusers' AutoencoderKL) overlaps tiles by 25%: 1/0.75² as much work.
TILED_DECODE_WORK = 1 / 0.75**2
VAE_TILE_SIDE = 512  # output pixels per tile side; the SD 2 VAEs were trained at 512


@dataclass(frozen=True)
class GpuClass:
    name: str
    memory_bytes: int
    # Sustained fp16 TFLOP/s of a whole pipeline call, not the datasheet peak. A10G: about
    # 7 it/s at 512x512 as commonly reported, times 1.6 TFLOP per CFG step (an assumption, never
    # measured here). H100: the lowest throughput bench/gpu_check.py measured on an H200 (same
    # fp16 compute as an H100 SXM, more memory bandwidth) for the large calls where the time
    # limit bites (1024² batch 2-4, upscaler 384²-512²): 128.7-199 TFLOP/s (docs/gpu.md).
    tflops: float
    fractions: dict[str, float]  # default share per model when all five share one GPU
    # Models measured slower than `tflops` says, as a factor on their time estimate. H100: the
    # upscaler's largest admitted call (input 512² x 2, 50 steps) took 50.9 s on an H100 against
    # 33.8 s estimated at 128 TFLOP/s (bench/results/gpu-check-nvidia-h100-2026-11-27-50steps.md),
    # while img2img's (1024² x 11, 50 steps) took 38.7 s against 42.2 s. One run each: the
    # factor is the measured ratio rounded up, not a model of why.
    slowdown: dict[str, float] = field(default_factory=dict)


# Shares sum to < 1: each process also has a CUDA context (~0.4 GiB assumed) outside its allocator.
GPU_CLASSES = {
    "a10g": GpuClass("a10g", memory_bytes=23028 * 2**20, tflops=12.0, fractions={
        "sd_img2img": 0.20, "sd_depth": 0.21, "sd_inpaint": 0.20, "sd_upscale": 0.25, "resnet_classifier": 0.03}),
    "h100": GpuClass("h100", memory_bytes=81559 * 2**20, tflops=128.0, fractions={
        "sd_img2img": 0.20, "sd_depth": 0.20, "sd_inpaint": 0.20, "sd_upscale": 0.30, "resnet_classifier": 0.02},
        slowdown={"sd_upscale": 1.55}),
}


@dataclass(frozen=True)
class Workload:
    """One pipeline call: `items` images of `pixels` each (the output for SD, the input for the
    upscaler), `steps` denoising steps that actually run, whether input images are VAE-encoded."""

    pixels: int
    items: int
    steps: int
    encodes_image: bool = True


@dataclass(frozen=True)
class Estimate:
    memory_bytes: int
    seconds: float


@lru_cache(maxsize=1)
def load_costs(path: Path = COSTS_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


def interpolate(pixels: int, grid_pixels: list[int], values: list[float]) -> float:
    """Linear in pixels between grid points; the first value below the grid, extrapolated above."""
    if pixels <= grid_pixels[0]:
        return float(values[0])
    i = min(bisect.bisect_left(grid_pixels, pixels), len(grid_pixels) - 1)
    x0, x1, y0, y1 = grid_pixels[i - 1], grid_pixels[i], values[i - 1], values[i]
    return y0 + (y1 - y0) * (pixels - x0) / (x1 - x0)


class CostModel:
    """Memory and time of one model's pipeline calls, from its row of `costs.json`."""

    def __init__(self, model: str, vae_slicing: bool = True, vae_tiling: bool = False,
                 costs: dict[str, Any] | None = None):
        table = (costs or load_costs())["models"].get(model)
        if table is None:
            raise KeyError(f"no cost table for model {model!r}")
        self.model = model
        self.table = table
        self.vae_slicing = vae_slicing
        self.vae_tiling = vae_tiling
        self.weight_bytes = sum(table["weight_bytes"].values())
        self.grid = [s * s for s in table.get("sides", [])]

    def stage(self, name: str, key: str, pixels: int) -> float:
        return interpolate(pixels, self.grid, self.table["stages"][name][key])

    def fixed(self, key: str) -> float:
        return sum(stage[key] for stage in self.table["fixed"].values())

    def _decode(self, key: str, pixels: int, items: int) -> float:
        out_pixels = pixels * self.table["output_scale"] ** 2
        if self.vae_tiling and out_pixels > VAE_TILE_SIDE**2:
            tile = VAE_TILE_SIDE**2 // self.table["output_scale"] ** 2
            if key == "flops":
                return items * self.stage("vae_decode", key, pixels) * TILED_DECODE_WORK
            # Tiles are decoded one at a time; the decoded tiles, blended rows and the result
            # (3 channels at the VAE's precision) stay alive until the image is assembled.
            image = 3 * out_pixels * self.table["vae_dtype_bytes"]
            per_call = 1 if self.vae_slicing else items
            return per_call * self.stage("vae_decode", key, tile) + 3 * items * image
        per_call = 1 if self.vae_slicing else items
        return per_call * self.stage("vae_decode", key, pixels)

    def activation_bytes(self, w: Workload) -> float:
        if not self.grid:  # the classifier: every image is resized to one shape
            return w.items * self.fixed("peak_bytes")
        peaks = [w.items * self.fixed("peak_bytes"),
                 w.items * self.stage("unet_step", "peak_bytes", w.pixels),
                 self._decode("peak_bytes", w.pixels, w.items)]
        if w.encodes_image and "vae_encode" in self.table["stages"]:
            per_call = 1 if self.vae_slicing else w.items
            peaks.append(per_call * self.stage("vae_encode", "peak_bytes", w.pixels))
        return max(peaks)

    def flops(self, w: Workload) -> float:
        if not self.grid:
            return w.items * self.fixed("flops")
        total = w.items * (self.fixed("flops") + w.steps * self.stage("unet_step", "flops", w.pixels))
        total += self._decode("flops", w.pixels, w.items)
        if w.encodes_image and "vae_encode" in self.table["stages"]:
            total += w.items * self.stage("vae_encode", "flops", w.pixels)
        return total

    def estimate(self, w: Workload, tflops: float) -> Estimate:
        memory = self.weight_bytes + ALLOCATOR_OVERHEAD * self.activation_bytes(w) + WORKSPACE_BYTES
        return Estimate(int(memory), self.flops(w) / (tflops * 1e12))


def describe(w: Workload, grid: str) -> str:
    side = math.isqrt(w.pixels)
    size = f"{side}x{side}" if side * side == w.pixels else f"{w.pixels} pixels"
    what = "input " if grid == "input_side" else ""
    return f"{what}{size} x batch {w.items} x {w.steps} steps"


def number_parameter(parameters: dict[str, str], name: str) -> float | None:
    text = (parameters.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"parameter {name}: {text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"parameter {name}: {text!r} must be > 0")
    return value


class RequestLimits:
    """What one model instance admits on one GPU class; `check` raises a clear InvalidInputError."""

    def __init__(self, model: str, gpu: GpuClass, memory_fraction: float | None = None,
                 max_seconds: float = DEFAULT_MAX_REQUEST_SECONDS, memory_bytes: int | None = None,
                 vae_slicing: bool = True, vae_tiling: bool = False):
        self.model = model
        self.gpu = gpu
        self.memory_fraction = memory_fraction if memory_fraction is not None else gpu.fractions[model]
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(f"gpu_memory_fraction: {self.memory_fraction} must be in (0, 1]")
        self.device_memory = memory_bytes or gpu.memory_bytes
        self.max_seconds = max_seconds
        self.costs = CostModel(model, vae_slicing=vae_slicing, vae_tiling=vae_tiling)

    @classmethod
    def from_parameters(cls, model: str, parameters: dict[str, str], device_memory: int | None = None,
                        vae_slicing: bool = True, vae_tiling: bool = False) -> "RequestLimits | None":
        """Limits from config.pbtxt parameters: `gpu_class` (a10g, h100, auto or none),
        `gpu_memory_fraction`, `max_request_seconds`. `auto` picks the class nearest to the
        GPU's memory and is `none` (no model-derived limits) on CPU instances."""
        name = (parameters.get("gpu_class") or "auto").strip().lower()
        if name == "auto":
            if device_memory is None:
                return None
            name = "a10g" if device_memory <= 40 * GIB else "h100"
        if name == "none":
            return None
        if name not in GPU_CLASSES:
            raise ValueError(f"parameter gpu_class: {name!r} is not one of {sorted(GPU_CLASSES) + ['auto', 'none']}")
        fraction = number_parameter(parameters, "gpu_memory_fraction")
        seconds = number_parameter(parameters, "max_request_seconds")
        return cls(model, GPU_CLASSES[name], memory_fraction=fraction,
                   max_seconds=seconds if seconds is not None else DEFAULT_MAX_REQUEST_SECONDS,
                   memory_bytes=device_memory, vae_slicing=vae_slicing, vae_tiling=vae_tiling)

    @property
    def memory_limit(self) -> int:
        return int(self.memory_fraction * self.device_memory)

    def estimate(self, w: Workload) -> Estimate:
        return self.costs.estimate(w, self.gpu.tflops / self.gpu.slowdown.get(self.model, 1.0))

    def headroom_used(self, w: Workload) -> float:
        """The share of the memory left after weights and workspaces that this call takes."""
        fixed = self.costs.weight_bytes + WORKSPACE_BYTES
        return (self.estimate(w).memory_bytes - fixed) / max(1, self.memory_limit - fixed)

    def fits(self, w: Workload) -> bool:
        e = self.estimate(w)
        return e.memory_bytes <= self.memory_limit and e.seconds <= self.max_seconds

    def max_items(self, pixels: int, steps: int, encodes_image: bool = True, cap: int = 64) -> int:
        """The largest batch of this shape that fits (0 if not even one item does)."""
        n = 0
        while n < cap and self.fits(Workload(pixels, n + 1, steps, encodes_image)):
            n += 1
        return n

    def check(self, w: Workload) -> None:
        e = self.estimate(w)
        where = f"model '{self.model}' on gpu_class {self.gpu.name}"
        fit = self.max_items(w.pixels, w.steps, w.encodes_image)
        hint = f"at most batch {fit} fits at this size and step count" if fit else "reduce the image size or num_inference_steps"
        if e.memory_bytes > self.memory_limit:
            raise InvalidInputError(
                f"request {describe(w, self.costs.table['grid'])} needs about {e.memory_bytes / GIB:.1f} GiB of GPU memory for {where}, "
                f"over the limit of {self.memory_limit / GIB:.1f} GiB (gpu_memory_fraction "
                f"{self.memory_fraction:g} of {self.device_memory / GIB:.1f} GiB); {hint}"
            )
        if e.seconds > self.max_seconds:
            raise InvalidInputError(
                f"request {describe(w, self.costs.table['grid'])} needs about {e.seconds:.0f} s for {where}, over the limit of "
                f"max_request_seconds {self.max_seconds:g} s; {hint}"
            )
