"""`sd_depth`: Stable Diffusion depth-to-image (structure from a depth map of the input)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionDepth2ImgPipeline
from transformers import DPTImageProcessor

from serving.runtime.gen_args import GenArgSpec
from serving.runtime.models.diffusion import DiffusionItem, DiffusionRuntime, check_denoising_steps, strength_spec

# The value a flat depth map is given: what the guarded min-max scaling (d - min) / max(max - min, eps)
# gives every pixel of a map whose max equals its min, mapped to [-1, 1] like diffusers does.
FLAT_DEPTH_VALUE = -1.0


class FlatSafeDepth2ImgPipeline(StableDiffusionDepth2ImgPipeline):
    """`StableDiffusionDepth2ImgPipeline` whose depth map is never NaN because it is flat.

    diffusers scales each depth map to [-1, 1] by 1 / (max - min) at latent resolution, with no
    guard: a map with no depth structure there (max == min) becomes 0/0 = NaN, and so does its
    image. The GPU check (docs/gpu.md) met this with random real-size weights, whose DPT head
    answers all-zero maps; an input the estimator sees as flat does the same with real weights.
    A flat map carries no structure, so it gets one constant depth instead. A map the estimator
    returned non-finite (an fp16 overflow) is left alone: that image still fails as non-finite.
    """

    def estimate_depth(self, image, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The estimator's raw depth, computed as the parent pipeline computes it (fp16 under autocast:
        the DPT-Hybrid batch-norm layers need it)."""
        pixel_values = self.feature_extractor(images=image, return_tensors="pt").pixel_values
        pixel_values = pixel_values.to(device=device, dtype=dtype)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return self.depth_estimator(pixel_values).predicted_depth

    def prepare_depth_map(self, image, depth_map, batch_size, do_classifier_free_guidance, dtype, device):
        if depth_map is None:
            depth_map = self.estimate_depth(image, dtype, device)
        raw_finite = bool(torch.isfinite(depth_map).all())
        scaled = super().prepare_depth_map(image, depth_map, batch_size, do_classifier_free_guidance, dtype, device)
        if raw_finite:  # then an all-NaN row can only be 0/0: a flat map
            flat = torch.isnan(scaled).flatten(1).all(dim=1)
            scaled[flat] = FLAT_DEPTH_VALUE
        return scaled


class SDDepthRuntime(DiffusionRuntime):
    name = "sd_depth"
    required_inputs = ("prompt", "image")
    optional_inputs = ("negative_prompt", "gen_args")

    def build_pipeline(self, path: str):
        kwargs = self.load_kwargs()
        for unused in ("safety_checker", "requires_safety_checker"):
            kwargs.pop(unused)
        # Load the image processor ourselves: stable-diffusion-2-depth's model_index.json names
        # DPTFeatureExtractor, which transformers 5 no longer has.
        kwargs["feature_extractor"] = DPTImageProcessor.from_pretrained(str(Path(path) / "feature_extractor"))
        return FlatSafeDepth2ImgPipeline.from_pretrained(path, **kwargs)

    def gen_arg_specs(self) -> dict[str, GenArgSpec]:
        specs = super().gen_arg_specs()
        specs["strength"] = strength_spec(0.8)
        return specs

    def check_item(self, item: DiffusionItem) -> None:
        check_denoising_steps(item.args)

    def call_pipeline(self, items: list[DiffusionItem]):
        return self.pipe(**self.prompt_kwargs(items), image=[it.image for it in items],
                         strength=items[0].args["strength"])
