"""`sd_inpaint`: Stable Diffusion inpainting (white mask pixels are repainted)."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableDiffusionInpaintPipeline

from serving.runtime.errors import InvalidInputError
from serving.runtime.gen_args import GenArgSpec
from serving.runtime.models.diffusion import DiffusionItem, DiffusionRuntime, check_denoising_steps, strength_spec


class SDInpaintRuntime(DiffusionRuntime):
    name = "sd_inpaint"
    required_inputs = ("prompt", "image", "mask_image")
    optional_inputs = ("negative_prompt", "gen_args")

    def build_pipeline(self, path: str):
        return StableDiffusionInpaintPipeline.from_pretrained(path, **self.load_kwargs())

    def gen_arg_specs(self) -> dict[str, GenArgSpec]:
        specs = super().gen_arg_specs()
        specs["strength"] = strength_spec(1.0)
        return specs

    def check_item(self, item: DiffusionItem) -> None:
        assert item.image is not None and item.mask is not None
        if item.mask.size != item.image.size:
            raise InvalidInputError(
                f"input 'mask_image': size {item.mask.width}x{item.mask.height} differs from "
                f"input 'image' size {item.image.width}x{item.image.height}; they must match"
            )
        check_denoising_steps(item.args)

    # The pipeline's own VAE encoder pass sees the *masked* image (and with the inpainting UNet
    # at strength 1.0 the unmasked one is never encoded), so the input-image embedding comes
    # from one extra encoder pass over the unmasked input, run only while capturing.
    def taps_in_pipeline(self) -> list[str]:
        return [name for name in self.taps if name != "embedding"]

    def image_embedding(self, items: list[DiffusionItem]) -> np.ndarray | None:
        width, height = self.work_size(items[0].image)  # type: ignore[misc]
        pixels = self.pipe.image_processor.preprocess([it.image for it in items], height=height, width=width)
        tap = self.taps["embedding"]
        with torch.inference_mode(), tap.armed_for_call():
            self.pipe.vae.encoder(pixels.to(self.device.device, dtype=self.pipe.vae.dtype))
        return tap.first_rows(len(items))

    def call_pipeline(self, items: list[DiffusionItem]):
        # The inpainting pipeline does not infer its size from the image: pass it explicitly.
        width, height = self.work_size(items[0].image)  # type: ignore[misc]
        return self.pipe(**self.prompt_kwargs(items), image=[it.image for it in items],
                         mask_image=[it.mask for it in items], strength=items[0].args["strength"],
                         height=height, width=width)
