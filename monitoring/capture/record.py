"""The one function that turns what a runtime declares about one served item into record fields.

Serving (`serving/runtime/capture_hook.py`) and every baseline source (`monitoring/analysis/baseline/sources.py`)
call :func:`record_fields` on a :class:`Contribution`, so a served image and the same image in a
baseline produce identical metadata fields and embeddings: there is no second code path that
could round differently.

A runtime never gets probed for attributes: it fills a `Contribution` with what it has (its
input image, prompt, generation settings as run, prediction, output image, embeddings with their
sources) and leaves the rest None.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .image_stats import DEFAULT_TOP_K, image_stats, output_image_stats, prediction_stats

#: Longest side of a thumbnail, px (the explorer shows them as 64 px tiles).
THUMBNAIL_PX = 64
#: A generated image whose pixel std (0..255) is below this is reported as blank.
BLANK_STD = 1.0

#: gen_args keys that have a flat column of their own: gen_args key -> record field.
FLAT_GEN_ARGS = {
    "num_inference_steps": "gen_steps",
    "guidance_scale": "gen_guidance",
    "strength": "gen_strength",
    "noise_level": "gen_noise_level",
    "width": "gen_width",
    "height": "gen_height",
}


@dataclass
class Contribution:
    """What one served item (one row of a request) contributes to its capture record."""

    input_image: Image.Image | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    prompt_tokens: int | None = None
    gen_args: dict[str, Any] | None = None  # settings as run (seed included)
    probabilities: np.ndarray | None = None
    labels: Sequence[str] | None = None
    top_k: int = DEFAULT_TOP_K  # how many class probabilities the record keeps (model parameter capture_top_k)
    output_image: Image.Image | np.ndarray | None = None
    output_nonfinite: bool | None = None  # the pipeline's float output had NaN/inf
    #: record field ("embedding", "text_embedding", "output_embedding") -> (vector, source)
    embeddings: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordOptions:
    """Privacy/size switches; both off by default."""

    prompt_text: bool = False
    thumbnails: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "RecordOptions":
        env = os.environ if env is None else env
        return cls(prompt_text=env.get("CAPTURE_PROMPT_TEXT", "0") == "1",
                   thumbnails=env.get("CAPTURE_THUMBNAILS", "0") == "1")


def input_luma(image: Image.Image) -> np.ndarray:
    """The luma plane image statistics are computed on: PIL's C conversion (BT.601, rounded to
    8 bits), ~3x cheaper than the float path on the capture thread that shares cores with
    inference. Serving and baselines both come through here, so both see the same rounding."""
    return np.asarray(image.convert("L"))


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def thumbnail(image: Image.Image, size: int = THUMBNAIL_PX) -> str:
    """Base64 JPEG of ``image`` with its longest side at most ``size`` px."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def record_fields(c: Contribution, options: RecordOptions = RecordOptions()) -> dict[str, Any]:
    """The record fields (see `fields.py`) one item contributes, apart from request context
    (id, timing, outcome), which the caller adds."""
    rec: dict[str, Any] = {}
    if c.input_image is not None:
        rec.update(image_stats(input_luma(c.input_image)))
        rec["image_mode"] = c.input_image.info.get("source_mode", c.input_image.mode)
        if c.input_image.info.get("source_format"):
            rec["image_format"] = c.input_image.info["source_format"]
        if options.thumbnails:
            rec["thumbnail"] = thumbnail(c.input_image)
    if c.prompt is not None:
        rec["prompt_hash"] = prompt_hash(c.prompt)
        if options.prompt_text:
            rec["prompt_text"] = c.prompt
        rec["prompt_tokens"] = c.prompt_tokens
        rec["has_negative_prompt"] = bool(c.negative_prompt)
    if c.gen_args is not None:
        rec["gen_args"] = json.dumps(c.gen_args, sort_keys=True)
        for key, name in FLAT_GEN_ARGS.items():
            value = c.gen_args.get(key)
            if value is not None:
                rec[name] = value
    if c.probabilities is not None:
        rec.update(prediction_stats(c.probabilities, list(c.labels) if c.labels is not None else None, c.top_k))
        if "pred_top_k_labels" in rec:  # a json field: text, so a record can go straight into a table too
            rec["pred_top_k_labels"] = json.dumps(rec["pred_top_k_labels"])
    if c.output_image is not None:
        out = output_image_stats(np.asarray(c.output_image))
        rec.update(out)
        rec["output_blank"] = out["output_std"] is not None and out["output_std"] < BLANK_STD
        rec["output_nonfinite"] = bool(c.output_nonfinite)
    for name, (vector, source) in c.embeddings.items():
        rec[name] = np.asarray(vector, dtype=np.float32)
        rec[f"{name}_source"] = source
    return rec


@dataclass
class RequestCapture:
    """One sampled-in request as the capture worker gets it: its context fields (model,
    version, timing, segment attributes), its id, and either what each of its rows contributes
    or the error its caller got. The request thread fills it with references to what the
    request already computed; :meth:`records` (on the capture worker) turns it into records."""

    request_id: str
    context: dict[str, Any]
    rows: list[Contribution] = field(default_factory=list)
    error: dict[str, Any] | None = None  # outcome, error_code, error_message, output_nonfinite
    options: RecordOptions = RecordOptions()

    def __len__(self) -> int:
        """How many records this request makes: one per row, one for an error."""
        return 1 if self.error is not None else len(self.rows)

    def records(self) -> list[dict[str, Any]]:
        if self.error is not None:
            return [dict(self.context, request_id=self.request_id, **self.error)]
        single = len(self.rows) == 1
        return [dict(self.context, request_id=self.request_id if single else f"{self.request_id}:{row}", outcome="ok",
                     **record_fields(c, self.options))
                for row, c in enumerate(self.rows)]
