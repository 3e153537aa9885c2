"""What each runtime declares for its capture record, through the one record function."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from monitoring.capture.record import RecordOptions, record_fields
from serving.runtime.capture_hook import CaptureHook
from serving.runtime.device import DeviceSpec
from serving.runtime.errors import NonFiniteOutputError
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from tests.conftest import gen_args, mask_png, png, tensor

SD_INPUTS = {
    "sd_img2img": {"prompt": b"a fox", "image": png(64), "gen_args": gen_args(strength=0.5)},
    "sd_depth": {"prompt": b"a fox", "image": png(64), "gen_args": gen_args(strength=0.5)},
    "sd_inpaint": {"prompt": b"a fox", "image": png(64), "mask_image": mask_png(64), "gen_args": gen_args()},
    "sd_upscale": {"prompt": b"a fox", "image": png(32), "gen_args": gen_args(noise_level=30)},
}


@pytest.fixture(scope="module")
def loaded(checkpoint):
    cache = {}

    def get(name):
        if name not in cache:
            rt = runtime_class(name)(checkpoint(name), DeviceSpec.for_instance("CPU"), max_pipeline_batch=4)
            rt.load()
            rt.capture_embeddings = True
            cache[name] = rt
        return cache[name]
    return get


def served_records(rt, inputs, options=RecordOptions()):
    res = rt.handle([RawRequest({k: tensor(v) for k, v in inputs.items()})])[0]
    assert res.error is None, str(res.error)
    return [record_fields(rt.contribution(it, out), options) for it, out in zip(res.items, res.item_outputs)]


@pytest.mark.parametrize("model", sorted(SD_INPUTS))
def test_prompt_models_record_prompt_settings_output_checks_and_three_embeddings(loaded, model):
    rt = loaded(model)
    rec = served_records(rt, SD_INPUTS[model])[0]
    assert rec["prompt_hash"] == hashlib.sha256(b"a fox").hexdigest() and "prompt_text" not in rec
    assert rec["gen_steps"] == 2 and rec["gen_guidance"] == rt.default_guidance
    if model == "sd_upscale":
        assert rec["gen_noise_level"] == 30 and "gen_strength" not in rec
    else:
        assert rec["gen_strength"] == {"sd_inpaint": 1.0}.get(model, 0.5)
    assert rec["output_nonfinite"] is False and rec["output_blank"] is False
    assert rec["image_width"] == (32 if model == "sd_upscale" else 64)
    for name, source in (("embedding", rt.taps["embedding"].source),
                         ("text_embedding", "text_encoder.final_layer_norm:mean_real_tokens"),
                         ("output_embedding", "vae.decoder.mid_block:spatial_mean")):
        assert rec[f"{name}_source"] == source
        assert rec[name].ndim == 1 and np.isfinite(rec[name]).all()


def test_text_to_image_records_the_size_it_generated(loaded):
    rt = loaded("sd_img2img")
    rec = served_records(rt, {"prompt": b"a fox", "gen_args": gen_args()}, RecordOptions(prompt_text=True))[0]
    size = rt.default_size()
    assert (rec["gen_width"], rec["gen_height"]) == (size, size) == (rec["output_width"], rec["output_height"])
    assert rec["prompt_text"] == "a fox" and "gen_strength" not in rec and "image_width" not in rec


def test_nan_output_is_an_error_and_served_images_are_finite(loaded, monkeypatch):
    """A non-finite output answers with an error, never a black image (docs/gpu.md), so every
    served record has output_nonfinite False."""
    rt = loaded("sd_img2img")
    real = rt.call_pipeline

    def nan_pipeline(items):
        result = real(items)
        result.images[:] = np.nan
        return result
    monkeypatch.setattr(rt, "call_pipeline", nan_pipeline)
    res = rt.handle([RawRequest({k: tensor(v) for k, v in SD_INPUTS["sd_img2img"].items()})])[0]
    assert isinstance(res.error, NonFiniteOutputError) and res.error.code == "INTERNAL"
    # The refused request's capture record says why: the output checks count it as non-finite.
    hook = CaptureHook(rt, "1", SimpleNamespace(enabled=False))
    [err] = list(hook.records(["r-nan"], [res], 0))
    assert err["outcome"] == "error" and err["output_nonfinite"] is True and "non-finite" in err["error_message"]
    monkeypatch.undo()
    rec = served_records(rt, SD_INPUTS["sd_img2img"])[0]
    assert rec["output_nonfinite"] is False


def test_classifier_declares_image_prediction_and_embedding_only(loaded):
    rec = served_records(loaded("resnet_classifier"), {"image": png(48)}, RecordOptions(thumbnails=True))[0]
    assert rec["embedding_source"] == "resnet.pooler:flatten" and rec["pred_label"]
    assert "thumbnail" in rec and "prompt_hash" not in rec and "output_embedding" not in rec
