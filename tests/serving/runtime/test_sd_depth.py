"""sd_depth's depth map: a flat map (no depth structure) must not turn into a NaN image.

Found on the GPU (docs/gpu.md, bench/results/gpu-check-nvidia-h200-2026-11-27.*): random real-size
weights give all-zero depth maps, which diffusers' min-max scaling turns into 0/0 = NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionDepth2ImgPipeline

from serving.runtime.device import DeviceSpec
from serving.runtime.errors import NonFiniteOutputError
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from serving.runtime.models.sd_depth import FLAT_DEPTH_VALUE, FlatSafeDepth2ImgPipeline
from tests.conftest import gen_args, photo, png, tensor


@pytest.fixture(scope="module")
def depth_rt(checkpoint):
    rt = runtime_class("sd_depth")(checkpoint("sd_depth"), DeviceSpec.for_instance("CPU"), max_pipeline_batch=4)
    rt.load()
    return rt


def req(prompt: bytes, seed: int) -> RawRequest:
    return RawRequest({"prompt": tensor(prompt), "image": tensor(png(64, seed)), "gen_args": tensor(gen_args(seed=seed))})


def set_depth_rows(rt, rows: list[int], value: float):
    """A real fault inside the real estimator: its head answers `value` everywhere for these rows."""
    def hook(module, args, output):
        output = output.clone()
        output[rows] = value
        return output
    return rt.pipe.depth_estimator.head.register_forward_hook(hook)


def prepared(pipe, images, cls=FlatSafeDepth2ImgPipeline) -> torch.Tensor:
    with torch.inference_mode():
        return cls.prepare_depth_map(pipe, images, None, len(images), True, torch.float32, torch.device("cpu"))


def test_the_runtime_uses_the_flat_safe_pipeline(depth_rt):
    assert isinstance(depth_rt.pipe, FlatSafeDepth2ImgPipeline)


def test_a_structured_depth_map_is_exactly_what_diffusers_prepares(depth_rt):
    images = [photo(64, 1), photo(64, 2)]
    ours, theirs = prepared(depth_rt.pipe, images), prepared(depth_rt.pipe, images, StableDiffusionDepth2ImgPipeline)
    assert ours.shape == (4, 1, 8, 8)  # two images, doubled for classifier-free guidance
    assert torch.isfinite(ours).all() and torch.equal(ours, theirs)


def test_a_flat_depth_map_gets_one_constant_depth_and_its_neighbour_is_untouched(depth_rt):
    images = [photo(64, 1), photo(64, 2)]
    clean = prepared(depth_rt.pipe, images)
    handle = set_depth_rows(depth_rt, [0], 0.0)
    try:
        theirs = prepared(depth_rt.pipe, images, StableDiffusionDepth2ImgPipeline)
        ours = prepared(depth_rt.pipe, images)
    finally:
        handle.remove()
    assert torch.isnan(theirs[0]).all() and torch.isnan(theirs[2]).all()  # diffusers: 0/0 for image 0
    assert (ours[0] == FLAT_DEPTH_VALUE).all() and (ours[2] == FLAT_DEPTH_VALUE).all()
    assert torch.equal(ours[1], clean[1]) and torch.equal(ours[3], clean[3])


def test_a_flat_depth_map_is_answered_with_a_finite_image(depth_rt):
    handle = set_depth_rows(depth_rt, [0], 0.0)  # the first request's map, in a batch of two
    try:
        flat, neighbour = depth_rt.handle([req(b"a cat", 1), req(b"a dog", 2)])
    finally:
        handle.remove()
    assert flat.error is None and neighbour.error is None
    assert flat.outputs["generated_image"].shape == (1, 1)
    _, clean = depth_rt.handle([req(b"a cat", 1), req(b"a dog", 2)])  # the same batch, no fault
    assert clean.outputs["generated_image"][0, 0] == neighbour.outputs["generated_image"][0, 0]


def test_a_non_finite_depth_map_still_fails_as_non_finite(depth_rt):
    before = depth_rt.counters["nonfinite_outputs"]
    handle = set_depth_rows(depth_rt, [0], float("inf"))  # an fp16 overflow in the estimator
    try:
        (result,) = depth_rt.handle([req(b"a cat", 1)])
    finally:
        handle.remove()
    assert isinstance(result.error, NonFiniteOutputError)
    assert depth_rt.counters["nonfinite_outputs"] == before + 1
