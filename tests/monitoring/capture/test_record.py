"""The one record function: what each declared contribution turns into, field by field."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from monitoring.capture import FIELD_NAMES
from monitoring.capture.record import Contribution, RecordOptions, record_fields
from tests.conftest import photo

ARGS = {"num_inference_steps": 4, "guidance_scale": 7.5, "strength": 0.6, "seed": 3, "output_format": "png"}


def prompt_item(**kw) -> Contribution:
    base = dict(input_image=photo(96, seed=1), prompt="a red fox, ünïcode", negative_prompt=None, prompt_tokens=9,
                gen_args=dict(ARGS), output_image=photo(64, seed=2), output_nonfinite=False)
    base.update(kw)
    return Contribution(**base)


def test_every_produced_field_is_in_the_contract():
    rec = record_fields(prompt_item(embeddings={"embedding": (np.ones(4), "x")}), RecordOptions(True, True))
    assert set(rec) <= FIELD_NAMES


def test_prompt_hash_always_text_only_when_enabled():
    rec = record_fields(prompt_item())
    assert rec["prompt_hash"] == hashlib.sha256("a red fox, ünïcode".encode("utf-8")).hexdigest()
    assert "prompt_text" not in rec and "thumbnail" not in rec
    assert record_fields(prompt_item(), RecordOptions(prompt_text=True))["prompt_text"] == "a red fox, ünïcode"


def test_options_come_from_the_environment():
    assert RecordOptions.from_env({}) == RecordOptions(False, False)
    assert RecordOptions.from_env({"CAPTURE_PROMPT_TEXT": "1", "CAPTURE_THUMBNAILS": "1"}) == RecordOptions(True, True)


def test_gen_settings_as_flat_fields():
    rec = record_fields(prompt_item(gen_args=dict(ARGS, noise_level=20, width=None)))
    assert (rec["gen_steps"], rec["gen_guidance"], rec["gen_strength"], rec["gen_noise_level"]) == (4, 7.5, 0.6, 20)
    assert "gen_width" not in rec and "gen_height" not in rec  # not run with a requested size
    assert json.loads(rec["gen_args"])["seed"] == 3


def test_output_checks():
    ok = record_fields(prompt_item())
    assert ok["output_blank"] is False and ok["output_nonfinite"] is False
    flat = record_fields(prompt_item(output_image=Image.new("RGB", (64, 64), (9, 9, 9)), output_nonfinite=True))
    assert flat["output_blank"] is True and flat["output_nonfinite"] is True and flat["output_std"] == 0.0


def test_thumbnail_is_a_small_jpeg_of_the_input():
    rec = record_fields(prompt_item(), RecordOptions(thumbnails=True))
    thumb = Image.open(io.BytesIO(base64.b64decode(rec["thumbnail"])))
    assert thumb.format == "JPEG" and max(thumb.size) == 64 and thumb.size == (64, 64)


def test_embeddings_carry_their_declared_source():
    rec = record_fields(Contribution(embeddings={"output_embedding": ([1.0, 2.0], "vae.decoder.mid_block")}))
    assert rec["output_embedding"].dtype == np.float32 and rec["output_embedding_source"] == "vae.decoder.mid_block"


def test_classifier_prediction_fields():
    rec = record_fields(Contribution(input_image=photo(32), probabilities=np.array([0.1, 0.9]), labels=["a", "b"]))
    assert rec["pred_label"] == "b" and rec["pred_top_prob"] == pytest.approx(0.9)
    assert "prompt_hash" not in rec and "output_blank" not in rec
