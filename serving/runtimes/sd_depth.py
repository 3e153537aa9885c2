"""`sd_depth`: Stable Diffusion depth-to-image (structure from a depth map of the input)."""

from __future__ import annotations

from pathlib import Path

from diffusers import StableDiffusionDepth2ImgPipeline
from transformers import DPTImageProcessor

from serving.gen_args import GenArgSpec
from serving.runtimes.diffusion import DiffusionItem, DiffusionRuntime, check_denoising_steps, strength_spec


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
        return StableDiffusionDepth2ImgPipeline.from_pretrained(path, **kwargs)

    def gen_arg_specs(self) -> dict[str, GenArgSpec]:
        specs = super().gen_arg_specs()
        specs["strength"] = strength_spec(0.8)
        return specs

    def check_item(self, item: DiffusionItem) -> None:
        check_denoising_steps(item.args)

    def call_pipeline(self, items: list[DiffusionItem]):
        return self.pipe(**self.prompt_kwargs(items), image=[it.image for it in items],
                         strength=items[0].args["strength"])
