"""GPU-facing paths of the runtimes, on CPU with the tiny real pipelines: request limits per GPU
class, NaN output, out-of-memory retries, and the load-time settings (attention, VAE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from serving.runtime.capacity.limits import WORKSPACE_BYTES, Workload
from serving.runtime.device import DeviceSpec
from serving.runtime.errors import CheckpointError, InvalidInputError, NonFiniteOutputError, ResourceExhaustedError
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from tests.conftest import gen_args, png, tensor


def load(checkpoint, name: str, **parameters) -> object:
    rt = runtime_class(name)(checkpoint(name), DeviceSpec.for_instance("CPU"), max_pipeline_batch=4,
                             parameters=parameters)
    rt.load()
    return rt


def req(**inputs) -> RawRequest:
    return RawRequest({k: tensor(v) for k, v in inputs.items()})


def rows(n: int, **inputs) -> RawRequest:
    return RawRequest({k: np.array([v] * n, dtype=np.object_).reshape(-1, 1) for k, v in inputs.items()})


@pytest.fixture(scope="module")
def a10g_img2img(checkpoint):
    """The tiny pipeline, validated as if it were the real-size model on a 24 GB A10G (with the
    VAE settings a GPU instance gets by default)."""
    return load(checkpoint, "sd_img2img", gpu_class="a10g", vae_tiling="on", vae_slicing="on")


def test_over_limit_request_is_refused_by_name_and_neighbours_still_run(a10g_img2img):
    rt = a10g_img2img
    fits = rt.limits.max_items(1024 * 1024, 2, encodes_image=False)
    assert 1 <= fits < 4  # the real-size model: 1024x1024 fits an A10G share, four at once do not
    big = rows(4, prompt=b"a cat", gen_args=gen_args(height=1024, width=1024))
    small = req(prompt=b"a dog", gen_args=gen_args(height=64, width=64))
    before = rt.pipeline_calls
    refused, ok = rt.handle([big, small])
    assert isinstance(refused.error, InvalidInputError) and refused.error.code == "INVALID_ARG"
    text = str(refused.error)
    assert "1024x1024 x batch 4 x 2 steps" in text and "GiB of GPU memory" in text
    assert "gpu_memory_fraction 0.2 of 22.5 GiB" in text and f"at most batch {fits} fits" in text
    assert ok.error is None and rt.pipeline_calls == before + 1  # the refused one never ran


def test_requests_are_grouped_no_larger_than_the_gpu_admits(a10g_img2img):
    rt = a10g_img2img
    items = []
    for i in range(4):
        items += rt.check_inputs(req(prompt=b"a cat", gen_args=gen_args(height=768, width=768, seed=i)), i)
    cap = rt.limits.max_items(768 * 768, 2, encodes_image=False)
    assert 1 <= cap < 4
    assert [len(g) for g in rt.plan(items)] == [cap] * (4 // cap) + ([4 % cap] if 4 % cap else [])


def test_cpu_instances_have_no_gpu_limits(checkpoint):
    rt = load(checkpoint, "sd_img2img")
    assert rt.limits is None and rt.vae_slicing is False and rt.vae_tiling is False
    assert rt.attention == "sdpa"
    assert all(isinstance(p, AttnProcessor2_0) for p in rt.pipe.unet.attn_processors.values())


def poison_text_hook(rt, poison: str):
    """A real fault inside the real pipeline: the text encoder returns NaN for one prompt's row,
    as an fp16 overflow would; the NaN flows through the UNet and VAE into that image only."""
    poison_ids = rt.pipe.tokenizer([poison], padding="max_length", max_length=rt.pipe.tokenizer.model_max_length,
                                   truncation=True, return_tensors="pt").input_ids[0]

    def hook(module, args, output):
        ids = args[0]
        for row in range(ids.shape[0]):
            if torch.equal(ids[row], poison_ids):
                output[0][row] = float("nan")
        return output
    return rt.pipe.text_encoder.register_forward_hook(hook)


def test_nan_output_is_an_error_for_its_request_only(checkpoint):
    rt = load(checkpoint, "sd_img2img")
    handle = poison_text_hook(rt, "poison")
    try:
        reqs = [req(prompt=p, image=png(64), gen_args=gen_args(seed=1)) for p in (b"a cat", b"poison", b"a dog")]
        results = rt.handle(reqs)
    finally:
        handle.remove()
    assert results[0].error is None and results[2].error is None
    assert isinstance(results[1].error, NonFiniteOutputError) and results[1].error.code == "INTERNAL"
    assert "non-finite (NaN/inf) pixels in 1 of 1 images" in str(results[1].error)
    # the batched call and the poisoned request alone
    assert rt.counters["nonfinite_outputs"] == 2
    clean = rt.handle([reqs[0]])[0].outputs["generated_image"][0, 0]
    assert clean == results[0].outputs["generated_image"][0, 0]  # neighbours' images are untouched


def oom_hook(rt, should_fail):
    """The UNet raises the error PyTorch raises when the CUDA allocator cannot serve a block."""
    calls = {"n": 0, "raised": 0}

    def pre_hook(module, args):
        calls["n"] += 1
        if should_fail(args[0].shape[0], calls):
            calls["raised"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return rt.pipe.unet.register_forward_pre_hook(pre_hook), calls


def test_oom_in_a_batch_releases_memory_and_retries_each_request_alone(checkpoint):
    rt = load(checkpoint, "sd_img2img")
    handle, calls = oom_hook(rt, lambda batch, c: batch > 2)  # > 1 item (with its CFG pair)
    try:
        results = rt.handle([req(prompt=p, image=png(64), gen_args=gen_args(seed=3)) for p in (b"a cat", b"a dog")])
    finally:
        handle.remove()
    assert [r.error for r in results] == [None, None]
    assert [r.batch_size for r in results] == [1, 1]
    assert calls["raised"] == 1
    assert rt.counters["out_of_memory"] == 1 and rt.counters["memory_releases"] == 1


def test_transient_oom_is_retried_once_after_a_release(checkpoint):
    rt = load(checkpoint, "sd_img2img")
    handle, calls = oom_hook(rt, lambda batch, c: c["raised"] == 0)  # only the very first UNet call
    try:
        (result,) = rt.handle([req(prompt=b"a cat", image=png(64), gen_args=gen_args())])
    finally:
        handle.remove()
    assert result.error is None and calls["raised"] == 1 and rt.counters["memory_releases"] == 1


def test_persistent_oom_is_unavailable_after_one_retry_and_the_runtime_recovers(checkpoint):
    rt = load(checkpoint, "sd_img2img")
    handle, calls = oom_hook(rt, lambda batch, c: True)
    try:
        (result,) = rt.handle([req(prompt=b"a cat", image=png(64), gen_args=gen_args())])
    finally:
        handle.remove()
    assert isinstance(result.error, ResourceExhaustedError) and result.error.code == "UNAVAILABLE"
    assert "out of memory while running the pipeline (OutOfMemoryError" in str(result.error)
    assert calls["raised"] == 2 and rt.counters["out_of_memory"] == 2
    assert rt.handle([req(prompt=b"a cat", image=png(64), gen_args=gen_args())])[0].error is None


def test_vae_tiling_on_the_upscaler_decodes_in_tiles_to_the_full_size(checkpoint):
    rt = load(checkpoint, "sd_upscale", vae_tiling="on", vae_slicing="on")
    vae = rt.pipe.vae
    assert vae.use_tiling and vae.use_slicing
    assert (vae.tile_sample_min_size, vae.tile_latent_min_size) == (512, 128)
    calls = []
    handle = vae.decoder.register_forward_hook(lambda m, a, out: calls.append(tuple(out.shape)))
    try:
        with torch.inference_mode():  # what the pipeline decodes for a 132x132 input image
            image = vae.decode(torch.randn(1, 4, 132, 132, generator=torch.Generator().manual_seed(0))).sample
    finally:
        handle.remove()
    assert tuple(image.shape) == (1, 3, 528, 528) and bool(torch.isfinite(image).all())
    # 2x2 overlapping tiles, none larger than the 512-pixel tile
    assert len(calls) == 4 and calls[0][-2:] == (512, 512) and max(max(c[-2:]) for c in calls) == 512


@pytest.mark.parametrize("parameters, message", [
    ({"attention": "flash"}, "parameter attention: 'flash' is not one of ['sdpa', 'xformers']"),
    ({"vae_tiling": "maybe"}, "parameter vae_tiling: 'maybe' is not one of auto, on, off"),
])
def test_bad_gpu_settings_fail_the_load_by_name(checkpoint, parameters, message):
    rt = runtime_class("sd_img2img")(checkpoint("sd_img2img"), DeviceSpec.for_instance("CPU"), parameters=parameters)
    with pytest.raises(CheckpointError) as err:
        rt.load()
    assert message in str(err.value) and rt.ready is False


def test_xformers_is_a_gpu_only_opt_in(checkpoint):
    rt = load(checkpoint, "sd_img2img", attention="xformers")
    assert rt.attention == "sdpa"  # CPU instance: the GPU-only kernel is not used


def test_cached_memory_is_released_after_a_call_near_the_share(checkpoint):
    rt = load(checkpoint, "sd_img2img", gpu_class="a10g", vae_tiling="on", vae_slicing="on")
    small = req(prompt=b"a cat", gen_args=gen_args(height=64, width=64))
    assert rt.handle([small])[0].error is None
    assert rt.counters["memory_releases"] == 0  # 64x64 uses far less than half the share
    fixed = rt.limits.costs.weight_bytes + WORKSPACE_BYTES
    activations = rt.limits.estimate(Workload(64 * 64, 1, 2, encodes_image=False)).memory_bytes - fixed
    # a share that still admits the call but leaves it over half of the room after the weights
    rt.limits.memory_fraction = (fixed + 1.5 * activations) / rt.limits.device_memory
    assert rt.handle([small])[0].error is None
    assert rt.counters["memory_releases"] == 1
