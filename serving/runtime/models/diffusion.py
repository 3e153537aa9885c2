"""What the four Stable Diffusion runtimes share: prompts, images, gen_args, seeds, encoding.

Each concrete runtime (`sd_img2img.py`, `sd_depth.py`, ...) declares its pipeline class, the
gen_args it takes, and how a group of validated items becomes one pipeline call.
"""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Hashable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from diffusers.models.attention_processor import AttnProcessor2_0

from monitoring.capture.record import Contribution
from serving.runtime.capacity.limits import VAE_TILE_SIDE, RequestLimits, Workload
from serving.runtime.embeddings import Tap, identity, mean_over_tokens, spatial_mean
from serving.runtime.errors import CheckpointError, InvalidInputError, NonFiniteOutputError
from serving.runtime.gen_args import GenArgSpec, parse_gen_args
from serving.runtime.images import OUTPUT_FORMATS, encode_image, read_image
from serving.runtime.models.base import Item, ItemOutput, ModelRuntime, RawRequest
from serving.runtime.checkpoints.safety import check_checkpoint

MAX_PROMPT_CHARS = 1000
ATTENTION_CHOICES = ("sdpa", "xformers")
SWITCH_VALUES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
MAX_SEED = 2**32 - 1


def common_specs(default_steps: int, default_guidance: float) -> dict[str, GenArgSpec]:
    return {
        "num_inference_steps": GenArgSpec("num_inference_steps", int, default_steps, 1, 150),
        "guidance_scale": GenArgSpec("guidance_scale", float, default_guidance, 0.0, 30.0),
        "seed": GenArgSpec("seed", int, None, 0, MAX_SEED),
        "output_format": GenArgSpec("output_format", str, "png", choices=OUTPUT_FORMATS),
    }


def strength_spec(default: float | None) -> GenArgSpec:
    return GenArgSpec("strength", float, default, 0.0, 1.0, exclusive_minimum=True)


def size_spec(name: str) -> GenArgSpec:
    return GenArgSpec(name, int, None, 64, 1024, multiple_of=8)


def check_denoising_steps(args: dict[str, Any]) -> None:
    """img2img-style pipelines run int(steps × strength) steps; zero steps crashes diffusers."""
    steps, strength = args["num_inference_steps"], args["strength"]
    if int(steps * strength) < 1:
        raise InvalidInputError(
            f"gen_args: num_inference_steps × strength = {steps} × {strength} = {steps * strength:g} "
            f"runs no denoising step; the product must be >= 1"
        )


@dataclass
class DiffusionItem(Item):
    prompt: str = ""
    negative_prompt: str | None = None
    image: Image.Image | None = None
    mask: Image.Image | None = None
    args: dict[str, Any] = field(default_factory=dict)


def decode_text(field_name: str, value: Any, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidInputError(f"input '{field_name}': missing")
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"input '{field_name}': not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    text = str(value).strip()
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"input '{field_name}': {len(text)} characters exceeds the limit of {MAX_PROMPT_CHARS}"
        )
    if not text:
        if required:
            raise InvalidInputError(f"input '{field_name}': empty; give a non-empty text prompt")
        return None
    return text


class DiffusionRuntime(ModelRuntime):
    default_steps = 30
    default_guidance = 7.5
    max_image_pixels = 1024 * 1024
    min_image_side = 64
    image_multiple = 8  # VAE downsampling: diffusers floors image sides to this multiple

    # -- load -----------------------------------------------------------------------------
    def _load(self) -> None:
        path = check_checkpoint(self.checkpoint_dir)
        pipe = self.build_pipeline(str(path))
        pipe.to(self.device.device)
        pipe.set_progress_bar_config(disable=True)
        self.attention = self.configure_attention(pipe)
        self.configure_vae(pipe.vae)
        self.pipe = pipe
        # The conditioning SD 2.x reads (its converted OpenCLIP encoder already ends at the
        # penultimate layer). transformers 5 dropped the `text_model` wrapper.
        prefix = "text_model." if hasattr(pipe.text_encoder, "text_model") else ""
        self.taps = {
            "embedding": self.build_image_tap(pipe),
            "text_embedding": Tap(pipe.text_encoder, prefix + "final_layer_norm", identity,
                                  "text_encoder.final_layer_norm:mean_real_tokens"),
            # The final latents entering the VAE decoder: a free embedding of the output image.
            "output_embedding": Tap(pipe.vae, "decoder.mid_block", spatial_mean, "vae.decoder.mid_block:spatial_mean"),
        }

    # -- GPU settings (docs/gpu.md) -----------------------------------------------------------
    def switch(self, name: str, auto: bool) -> bool:
        """An on/off/auto config.pbtxt parameter; `auto` is on for GPU instances when `auto`."""
        value = self.parameters.get(name, "auto").strip().lower()
        if value == "auto":
            return self.device.is_gpu and auto
        if value not in SWITCH_VALUES:
            raise CheckpointError(f"parameter {name}: {value!r} is not one of auto, on, off")
        return SWITCH_VALUES[value]

    @property
    def vae_slicing(self) -> bool:
        # Decoding a batch one image at a time costs nothing measurable and caps the decoder's
        # activations at one image's.
        return self.switch("vae_slicing", auto=True)

    @property
    def vae_tiling(self) -> bool:
        # Above 512x512 output the decoder's full-resolution activations dominate the peak
        # (the x4 upscaler's fp32 VAE at 2048x2048: 12 GiB); 512-pixel tiles bound it.
        return self.switch("vae_tiling", auto=True)

    def configure_vae(self, vae) -> None:
        if self.vae_slicing:
            vae.enable_slicing()
        if self.vae_tiling:
            vae.enable_tiling()
            vae.tile_sample_min_size = VAE_TILE_SIDE
            vae.tile_latent_min_size = VAE_TILE_SIDE // 2 ** (len(vae.config.block_out_channels) - 1)

    def configure_attention(self, pipe) -> str:
        """PyTorch SDPA by default; xformers only when asked (`attention: xformers`), and then it
        must work: a partly working build would otherwise fail on the first real request."""
        choice = self.parameters.get("attention", "sdpa").strip().lower()
        if choice not in ATTENTION_CHOICES:
            raise CheckpointError(f"parameter attention: {choice!r} is not one of {list(ATTENTION_CHOICES)}")
        if choice == "xformers" and self.device.is_gpu:
            try:
                pipe.enable_xformers_memory_efficient_attention()
            except Exception as exc:  # not installed, or built for another CUDA/torch
                raise CheckpointError(f"parameter attention: xformers cannot be enabled ({exc})") from exc
            return "xformers"
        # diffusers' default on torch >= 2; set explicitly so nothing earlier leaves another.
        for component in (pipe.unet, pipe.vae):
            component.set_attn_processor(AttnProcessor2_0())
        return "sdpa"

    def build_limits(self) -> RequestLimits | None:
        return RequestLimits.from_parameters(self.name, self.parameters, self.device.total_memory(),
                                             vae_slicing=self.vae_slicing, vae_tiling=self.vae_tiling)

    def workload(self, items: list[Item]) -> Workload | None:
        first = items[0]
        assert isinstance(first, DiffusionItem)
        size = self.work_size(first.image)
        if size is None:  # text-to-image
            default = self.default_size()
            size = (first.args.get("width") or default, first.args.get("height") or default)
        steps = first.args["num_inference_steps"]
        strength = first.args.get("strength")
        return Workload(pixels=size[0] * size[1], items=len(items),
                        steps=max(1, int(steps * strength)) if strength else steps,
                        encodes_image=first.image is not None)

    def default_size(self) -> int:
        return self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor

    def build_image_tap(self, pipe) -> Tap:
        """The input-image embedding: the VAE encoder's mid block, which the img2img-style
        pipelines run on the input image."""
        return Tap(pipe.vae, "encoder.mid_block", spatial_mean, "vae.encoder.mid_block:spatial_mean")

    def taps_in_pipeline(self) -> list[str]:
        """The taps armed while the pipeline runs (all unless a runtime embeds its input apart)."""
        return list(self.taps)

    def image_embedding(self, items: list[DiffusionItem]) -> np.ndarray | None:
        return self.taps["embedding"].first_rows(len(items))

    def token_counts(self, prompts: list[str]) -> list[int]:
        tok = self.pipe.tokenizer
        ids = tok(prompts, truncation=True, max_length=tok.model_max_length)["input_ids"]
        return [len(x) for x in ids]

    @abstractmethod
    def build_pipeline(self, path: str):
        """The diffusers pipeline, loaded from ``path`` with `load_kwargs()`."""

    def load_kwargs(self) -> dict[str, Any]:
        # safetensors only; fp16 on GPU. Safety checker is an operator choice, off by default.
        return dict(use_safetensors=True, dtype=self.device.dtype, safety_checker=None,
                    feature_extractor=None, requires_safety_checker=False)

    # -- check_inputs -----------------------------------------------------------------------
    def gen_arg_specs(self) -> dict[str, GenArgSpec]:
        return common_specs(int(self.parameters.get("default_num_inference_steps", self.default_steps)),
                            self.default_guidance)

    def check_item(self, item: DiffusionItem) -> None:
        """Model-specific cross-field checks; raise InvalidInputError."""

    def read_image(self, name: str, raw: Any, mode: str = "RGB") -> Image.Image:
        return read_image(name, raw, self.max_image_pixels, self.min_image_side, mode)

    def check_inputs(self, request: RawRequest, request_index: int) -> list[Item]:
        items = []
        for row in range(self.rows(request)):
            raw_image = self.cell(request, "image", row)
            raw_mask = self.cell(request, "mask_image", row)
            item = DiffusionItem(
                request_index=request_index,
                prompt=decode_text("prompt", self.cell(request, "prompt", row), required=True),
                negative_prompt=decode_text("negative_prompt", self.cell(request, "negative_prompt", row), required=False),
                image=self.read_image("image", raw_image) if raw_image is not None else None,
                mask=self.read_image("mask_image", raw_mask, mode="L") if raw_mask is not None else None,
            )
            item.args = parse_gen_args(self.cell(request, "gen_args", row), self.gen_arg_specs())
            if item.args["seed"] is None:
                item.args["seed"] = secrets.randbelow(MAX_SEED + 1)
            self.check_item(item)
            items.append(item)
        return items

    # -- batching ---------------------------------------------------------------------------
    def work_size(self, img: Image.Image | None) -> tuple[int, int] | None:
        if img is None:
            return None
        m = self.image_multiple
        return (img.width // m * m, img.height // m * m)

    def batch_key(self, item: Item) -> Hashable:
        assert isinstance(item, DiffusionItem)
        shared = tuple(sorted((k, v) for k, v in item.args.items() if k not in ("seed", "output_format")))
        return (self.work_size(item.image), self.work_size(item.mask), shared)

    # -- predict ----------------------------------------------------------------------------
    def generators(self, items: list[DiffusionItem]) -> list[torch.Generator]:
        # CPU generators: the same seed gives the same noise on CPU and GPU hosts.
        return [torch.Generator("cpu").manual_seed(it.args["seed"]) for it in items]

    def prompt_kwargs(self, items: list[DiffusionItem]) -> dict[str, Any]:
        negatives = [it.negative_prompt for it in items]
        return dict(
            prompt=[it.prompt for it in items],
            # An empty negative prompt is exactly what diffusers uses when none is given.
            negative_prompt=None if all(n is None for n in negatives) else [n or "" for n in negatives],
            num_inference_steps=items[0].args["num_inference_steps"],
            guidance_scale=items[0].args["guidance_scale"],
            generator=self.generators(items),
            # Float pixels, so NaN/inf can be seen (a cast to PIL turns them into black).
            output_type="np",
        )

    @abstractmethod
    def call_pipeline(self, items: list[DiffusionItem]):
        """Run the pipeline once for ``items`` (compatible by `batch_key`), `prompt_kwargs` included."""

    def finite_images(self, pixels: np.ndarray) -> list[Image.Image]:
        """The pipeline's float images as PIL (exactly its own `pil` conversion), or an error
        when any is not finite: fp16 overflow must not come back as a black image."""
        bad = [i for i in range(len(pixels)) if not np.isfinite(pixels[i]).all()]
        if bad:
            raise NonFiniteOutputError(
                f"pipeline produced non-finite (NaN/inf) pixels in {len(bad)} of {len(pixels)} images "
                f"(numerical overflow on this {self.device.device} instance); the request was not answered with them"
            )
        return self.pipe.numpy_to_pil(pixels)

    def predict(self, items: list[Item]) -> list[ItemOutput]:
        n = len(items)
        with torch.inference_mode(), ExitStack() as armed:
            if self.capture_embeddings:
                for name in self.taps_in_pipeline():
                    armed.enter_context(self.taps[name].armed_for_call())
            result = self.call_pipeline(items)  # type: ignore[arg-type]
        # A non-finite image raises NonFiniteOutputError here (docs/gpu.md): a served image is
        # always finite, so its record's output_nonfinite is False.
        images = self.finite_images(np.asarray(result.images))
        outputs = [ItemOutput(values={"image": img, "nonfinite": False}) for img in images]
        if not self.capture_embeddings:
            return outputs
        # Taps hold device tensors until here: one copy per tap after the pipeline returned.
        tokens = self.token_counts([it.prompt for it in items])
        hidden = self.taps["text_embedding"].first_rows(n)
        found = {
            "embedding": self.image_embedding(items),  # type: ignore[arg-type]
            "text_embedding": mean_over_tokens(hidden, tokens) if hidden is not None else None,
            "output_embedding": self.taps["output_embedding"].first_rows(n),
        }
        for i, out in enumerate(outputs):
            out.values["prompt_tokens"] = tokens[i]
            out.embeddings = {name: rows[i] for name, rows in found.items() if rows is not None}
        return outputs

    # -- monitoring -------------------------------------------------------------------------
    def args_as_run(self, item: DiffusionItem) -> dict[str, Any]:
        """The generation settings the pipeline ran with (defaults filled in)."""
        return dict(item.args)

    def contribution(self, item: Item, output: ItemOutput) -> Contribution:
        assert isinstance(item, DiffusionItem)
        return Contribution(
            input_image=item.image, prompt=item.prompt, negative_prompt=item.negative_prompt,
            prompt_tokens=output.values.get("prompt_tokens"), gen_args=self.args_as_run(item),
            output_image=output.values["image"], output_nonfinite=output.values["nonfinite"],
            embeddings=self.embedded(output),
        )

    # -- postprocess ------------------------------------------------------------------------
    def postprocess(self, items: list[Item], outputs: list[ItemOutput]) -> dict[str, np.ndarray]:
        encoded = [encode_image(out.values["image"], it.args["output_format"])  # type: ignore[attr-defined]
                   for it, out in zip(items, outputs)]
        return {"generated_image": np.array(encoded, dtype=np.object_).reshape(-1, 1)}
