"""Realistic, deterministic request payloads for the five models.

Images are real photographs (scikit-learn's bundled `china.jpg` and `flower.jpg`, cropped at
several places) and upscaled handwritten digits (`load_digits()`), encoded as JPEG and PNG the
way clients send them. Prompts come from a short list; `gen_args` carry the step count and a
per-request seed. Request `i` of a run always gets the same payload, so runs are repeatable.

Every SD request carries a negative prompt by default ("always"): Triton's dynamic batcher
only batches requests that send the same set of inputs, so traffic where some requests leave
an optional input out ("mixed") forms smaller batches. That is worth measuring on its own.

`bad_fraction` turns an evenly spread, deterministic subset of requests into bad ones, cycling
through kinds the server must refuse with INVALID_ARG; each bad payload records the error kind
it should produce (see `bench.loadtest.transports.classify_error`), so error counting can be
checked against what was injected.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from serving import MODEL_NAMES

PROMPTS = (
    "a photo of a red house under a blue sky",
    "a cat sitting on a tree in the garden",
    "a watercolor painting of a mountain lake at dawn",
    "a dog running on the beach, golden hour, 35mm photo",
    "a cozy living room with a fireplace, interior design magazine",
    "an old stone bridge over a river in autumn",
    "a bowl of fresh fruit on a wooden table, studio lighting",
    "a futuristic city skyline at night with neon lights",
)
NEGATIVE_PROMPTS = ("blurry, low quality", "text, watermark, signature", "deformed, extra limbs")
NEGATIVE_MODES = ("always", "mixed", "never")

# Which inputs each model takes (beyond the image).
SD_MODELS = ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale")
DEFAULT_IMAGE_SIZE = {"sd_img2img": 64, "sd_depth": 64, "sd_inpaint": 64, "sd_upscale": 32,
                      "resnet_classifier": 256}
# Bad kinds each model can be sent, and the error kind the server's answer is classified as.
BAD_KINDS = {
    "resnet_classifier": ("image",),
    **{m: ("image", "gen_args") for m in SD_MODELS},
}
EXPECTED_ERROR = {"image": "invalid_arg:image", "gen_args": "invalid_arg:gen_args"}
UNDECODABLE_IMAGE = b"\x89PNG\r\n\x1a\n this is not really a png"
BAD_GEN_ARGS = {"num_inference_steps": 0}  # below the minimum of 1


@dataclass(frozen=True)
class Payload:
    """One request: input name -> bytes value (sent as a [1, 1] BYTES tensor)."""

    index: int
    inputs: dict[str, bytes]
    bad: str | None = None  # the injected fault, if any
    expected_error: str | None = None
    nbytes: int = field(default=0)


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=90)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def _square(img: Image.Image, size: int, left: float, top: float) -> Image.Image:
    """A square crop of `img` (its shorter side) at a relative position, resized to `size`."""
    side = min(img.size)
    x = int((img.width - side) * left)
    y = int((img.height - side) * top)
    return img.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)


def _synthetic(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
    return Image.fromarray(np.clip(0.6 * grad + rng.normal(60, 40, (size, size, 3)), 0, 255).astype(np.uint8))


@lru_cache(maxsize=8)
def sample_images(size: int) -> tuple[bytes, ...]:
    """Encoded square images of `size` pixels: photo crops (JPEG) and digits (PNG).

    Falls back to textured synthetic images when scikit-learn is not installed.
    """
    images: list[bytes] = []
    try:
        from sklearn.datasets import load_digits, load_sample_images

        photos = [Image.fromarray(a) for a in load_sample_images().images]
        for photo in photos:
            for left, top in ((0.0, 0.5), (0.5, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0)):
                images.append(_encode(_square(photo, size, left, top), "JPEG"))
        digits = load_digits().images  # 8x8, values 0..16
        for k in (0, 1, 2, 3, 4, 5):
            gray = (digits[k] * (255.0 / 16.0)).astype(np.uint8)
            rgb = Image.fromarray(gray, mode="L").resize((size, size), Image.BILINEAR).convert("RGB")
            images.append(_encode(rgb, "PNG"))
    except ImportError:
        images = [_encode(_synthetic(size, s), "PNG") for s in range(8)]
    return tuple(images)


@lru_cache(maxsize=8)
def sample_mask(size: int) -> bytes:
    m = np.zeros((size, size), dtype=np.uint8)
    m[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return _encode(Image.fromarray(m, mode="L"), "PNG")


class PayloadFactory:
    """`factory(i)` -> the payload of request `i`; deterministic for a given configuration."""

    def __init__(self, model: str, *, image_size: int | None = None, inference_steps: int = 4,
                 bad_fraction: float = 0.0, seed: int = 0, text2img: bool = False,
                 extra_gen_args: dict | None = None, negative_prompt: str = "always"):
        if model not in MODEL_NAMES:
            raise ValueError(f"unknown model {model!r}; one of {list(MODEL_NAMES)}")
        if not 0.0 <= bad_fraction <= 1.0:
            raise ValueError(f"bad_fraction {bad_fraction} must be within [0, 1]")
        if negative_prompt not in NEGATIVE_MODES:
            raise ValueError(f"negative_prompt {negative_prompt!r}: one of {list(NEGATIVE_MODES)}")
        if text2img and model != "sd_img2img":
            raise ValueError("text2img is only for sd_img2img")
        self.model = model
        self.image_size = image_size or DEFAULT_IMAGE_SIZE[model]
        self.inference_steps = inference_steps
        self.bad_fraction = bad_fraction
        self.seed = seed
        self.text2img = text2img
        self.extra_gen_args = dict(extra_gen_args or {})
        self.negative_prompt = negative_prompt
        self.images = sample_images(self.image_size)
        self.mask = sample_mask(self.image_size)

    def is_bad(self, i: int) -> bool:
        """Evenly spread: request i is bad when floor((i+1)f) > floor(i f)."""
        f = self.bad_fraction
        return f > 0 and int((i + 1) * f + 1e-9) > int(i * f + 1e-9)

    def bad_kind(self, i: int) -> str:
        kinds = BAD_KINDS[self.model]
        ordinal = int((i + 1) * self.bad_fraction + 1e-9) - 1  # 0 for the first bad request, 1, ...
        return kinds[ordinal % len(kinds)]

    def gen_args(self, i: int) -> dict:
        args = {"num_inference_steps": self.inference_steps, "seed": (self.seed * 1_000_003 + i) % (2**32)}
        if self.text2img:
            args.update(height=self.image_size, width=self.image_size)
        args.update(self.extra_gen_args)
        return args

    def __call__(self, i: int) -> Payload:
        image = self.images[(self.seed + i) % len(self.images)]
        inputs: dict[str, bytes] = {}
        if self.model == "resnet_classifier":
            inputs["image"] = image
        else:
            inputs["prompt"] = PROMPTS[(self.seed + i) % len(PROMPTS)].encode()
            if self.negative_prompt == "always" or (self.negative_prompt == "mixed" and (self.seed + i) % 2 == 0):
                inputs["negative_prompt"] = NEGATIVE_PROMPTS[(self.seed + i) % len(NEGATIVE_PROMPTS)].encode()
            if not self.text2img:
                inputs["image"] = image
            if self.model == "sd_inpaint":
                inputs["mask_image"] = self.mask
            inputs["gen_args"] = json.dumps(self.gen_args(i)).encode()
        bad = expected = None
        if self.is_bad(i):
            bad = self.bad_kind(i)
            expected = EXPECTED_ERROR[bad]
            if bad == "image":
                inputs["image"] = UNDECODABLE_IMAGE
            else:
                inputs["gen_args"] = json.dumps(dict(self.gen_args(i), **BAD_GEN_ARGS)).encode()
        return Payload(index=i, inputs=inputs, bad=bad, expected_error=expected,
                       nbytes=sum(len(v) for v in inputs.values()))
