"""`sd_upscale`: the Stable Diffusion x4 upscaler; the output is four times the input size."""

from __future__ import annotations

import torch
from diffusers import StableDiffusionUpscalePipeline

from serving.runtime.embeddings import Tap, spatial_mean
from serving.runtime.gen_args import GenArgSpec
from serving.runtime.models.diffusion import DiffusionItem, DiffusionRuntime

UPSCALE_FACTOR = 4


class SDUpscaleRuntime(DiffusionRuntime):
    name = "sd_upscale"
    required_inputs = ("prompt", "image")
    optional_inputs = ("negative_prompt", "gen_args")
    default_guidance = 9.0
    # The output has 16x the pixels: bound the input so the output stays at most 2048x2048.
    max_image_pixels = 512 * 512
    min_image_side = 16
    image_multiple = 4  # the x4 upscaler's VAE downsamples by 4

    def build_pipeline(self, path: str):
        kwargs = self.load_kwargs()
        for unused in ("feature_extractor", "requires_safety_checker"):
            kwargs.pop(unused)
        return StableDiffusionUpscalePipeline.from_pretrained(path, **kwargs)

    def gen_arg_specs(self) -> dict[str, GenArgSpec]:
        specs = super().gen_arg_specs()
        max_noise = int(self.parameters.get("max_noise_level", 350))
        specs["noise_level"] = GenArgSpec("noise_level", int, 20, 0, max_noise)
        return specs

    def _load(self) -> None:
        super()._load()
        self.parameters["max_noise_level"] = str(self.pipe.config.max_noise_level)
        if self.pipe.vae.dtype == torch.float16 and self.pipe.vae.config.force_upcast:
            # diffusers would upcast this VAE to fp32 and back around every decode (it overflows
            # in fp16): keep it in fp32 once, instead of casting 55M parameters per request.
            self.pipe.vae.to(torch.float32)

    def build_image_tap(self, pipe):
        # The upscaler runs no image encoder: its UNet reads the low-resolution image directly,
        # so we take the UNet's mid block at the last (least noisy) step, conditional half.
        return Tap(pipe.unet, "mid_block", spatial_mean, "unet.mid_block:spatial_mean:last_step",
                   keep_last_only=True)

    def image_embedding(self, items: list[DiffusionItem]):
        return self.taps["embedding"].last_call_rows(len(items))

    def call_pipeline(self, items: list[DiffusionItem]):
        return self.pipe(**self.prompt_kwargs(items), image=[it.image for it in items],
                         noise_level=items[0].args["noise_level"])
