"""`sd_img2img`: Stable Diffusion image-to-image, or text-to-image when no `image` is given.

Both pipelines share one set of weights (the text-to-image pipeline is built from the
image-to-image pipeline's components), so the second mode costs no extra memory.
"""

from __future__ import annotations

from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from serving.runtime.errors import InvalidInputError
from serving.runtime.gen_args import GenArgSpec
from serving.runtime.models.diffusion import (
    DiffusionItem, DiffusionRuntime, check_denoising_steps, common_specs, size_spec, strength_spec,
)

DEFAULT_STRENGTH = 0.75


class SDImg2ImgRuntime(DiffusionRuntime):
    name = "sd_img2img"
    required_inputs = ("prompt",)
    optional_inputs = ("image", "negative_prompt", "gen_args")

    def build_pipeline(self, path: str):
        img2img = StableDiffusionImg2ImgPipeline.from_pretrained(path, **self.load_kwargs())
        self.text2img = StableDiffusionPipeline(**img2img.components)
        return img2img

    def _load(self) -> None:
        super()._load()
        self.text2img.set_progress_bar_config(disable=True)

    def gen_arg_specs(self) -> dict[str, GenArgSpec]:
        specs = super().gen_arg_specs()
        specs.update(strength=strength_spec(None), height=size_spec("height"), width=size_spec("width"))
        return specs

    def check_item(self, item: DiffusionItem) -> None:
        args = item.args
        if item.image is not None:
            for key in ("height", "width"):
                if args[key] is not None:
                    raise InvalidInputError(
                        f"gen_args.{key}: only valid for text-to-image (no 'image' input); "
                        f"image-to-image keeps the input image's size"
                    )
            if args["strength"] is None:
                args["strength"] = DEFAULT_STRENGTH
            check_denoising_steps(args)
        elif args["strength"] is not None:
            raise InvalidInputError("gen_args.strength: only valid for image-to-image (give an 'image' input)")

    def call_pipeline(self, items: list[DiffusionItem]):
        kwargs = self.prompt_kwargs(items)
        first = items[0]
        if first.image is None:
            size = self.default_size()
            return self.text2img(**kwargs, height=first.args["height"] or size,
                                 width=first.args["width"] or size)
        return self.pipe(**kwargs, image=[it.image for it in items], strength=first.args["strength"])

    def args_as_run(self, item: DiffusionItem) -> dict:
        args = dict(item.args)
        if item.image is None:  # text-to-image: record the size it generated
            size = self.default_size()
            args["height"], args["width"] = args["height"] or size, args["width"] or size
        return args
