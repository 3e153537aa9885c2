"""The runtimes in-process with tiny real checkpoints: outputs, validation, batching, failures."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from serving.runtime.device import DeviceSpec
from serving.runtime.errors import InvalidInputError, PipelineError, ResourceExhaustedError
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from tests.conftest import gen_args, mask_png, png, tensor


@pytest.fixture(scope="module")
def runtimes(checkpoint):
    loaded = {}

    def get(name):
        if name not in loaded:
            rt = runtime_class(name)(checkpoint(name), DeviceSpec.for_instance("CPU"), max_pipeline_batch=4)
            assert rt.ready is False
            rt.load()
            assert rt.ready is True
            loaded[name] = rt
        return loaded[name]
    return get


def image_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def req(**inputs) -> RawRequest:
    return RawRequest({k: tensor(v) for k, v in inputs.items()})


def only_ok(results):
    for r in results:
        assert r.error is None, str(r.error)
    return results


@pytest.mark.parametrize("model, inputs, size", [
    ("sd_img2img", dict(prompt=b"a photo of a cat", image=png(64), gen_args=gen_args()), (64, 64)),
    ("sd_img2img", dict(prompt=b"a photo of a cat", gen_args=gen_args(height=64, width=128)), (128, 64)),
    ("sd_depth", dict(prompt=b"a house", image=png(64), gen_args=gen_args()), (64, 64)),
    ("sd_inpaint", dict(prompt=b"a dog", image=png(64), mask_image=mask_png(64), gen_args=gen_args()), (64, 64)),
    ("sd_upscale", dict(prompt=b"a tree", image=png(32), gen_args=gen_args()), (128, 128)),
    ("sd_img2img", dict(prompt=b"a cat", image=png(72), gen_args=gen_args()), (72, 72)),
])
def test_diffusion_output_is_an_encoded_image_of_the_expected_size(runtimes, model, inputs, size):
    (result,) = only_ok(runtimes(model).handle([req(**inputs)]))
    out = result.outputs["generated_image"]
    assert out.shape == (1, 1) and out.dtype == object
    assert out[0, 0][:8] == b"\x89PNG\r\n\x1a\n"
    assert image_size(out[0, 0]) == size


def test_jpeg_output_format(runtimes):
    (r,) = only_ok(runtimes("sd_img2img").handle([req(prompt=b"a cat", gen_args=gen_args(output_format="jpeg"))]))
    assert r.outputs["generated_image"][0, 0][:3] == b"\xff\xd8\xff"


def test_same_seed_same_image_and_other_seed_differs(runtimes):
    rt = runtimes("sd_img2img")
    run = lambda seed: rt.handle([req(prompt=b"a cat", image=png(64), gen_args=gen_args(seed=seed))])[0].outputs["generated_image"][0, 0]
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_compatible_requests_share_one_pipeline_call_and_match_single_runs(runtimes):
    rt = runtimes("sd_img2img")
    reqs = [req(prompt=p, image=png(64, seed=i), gen_args=gen_args(seed=i)) for i, p in enumerate([b"a cat", b"a dog", b"a tree"])]
    before = rt.pipeline_calls
    batched = only_ok(rt.handle(reqs))
    assert rt.pipeline_calls - before == 1
    assert [r.batch_size for r in batched] == [3, 3, 3]
    singles = [only_ok(rt.handle([r]))[0] for r in reqs]
    for b, s in zip(batched, singles):
        a = np.asarray(Image.open(io.BytesIO(b.outputs["generated_image"][0, 0])), dtype=np.int16)
        c = np.asarray(Image.open(io.BytesIO(s.outputs["generated_image"][0, 0])), dtype=np.int16)
        assert np.abs(a - c).max() <= 2  # batched float maths may differ by a rounding step


def test_incompatible_requests_run_separately(runtimes):
    rt = runtimes("sd_img2img")
    reqs = [req(prompt=b"a cat", image=png(64), gen_args=gen_args()),
            req(prompt=b"a cat", image=png(80), gen_args=gen_args()),
            req(prompt=b"a cat", image=png(64), gen_args=gen_args(num_inference_steps=3)),
            req(prompt=b"a cat", image=png(64), gen_args=gen_args(seed=99))]
    before = rt.pipeline_calls
    only_ok(rt.handle(reqs))
    assert rt.pipeline_calls - before == 3  # seeds do not split a batch; sizes and steps do


def test_request_with_several_rows(runtimes):
    rt = runtimes("resnet_classifier")
    r = RawRequest({"image": tensor(png(64, 1), png(64, 2), png(32, 3))})
    (res,) = only_ok(rt.handle([r]))
    assert res.outputs["probabilities"].shape == (3, 10)
    assert res.outputs["label"].shape == (3, 1)


def test_classifier_runs_all_images_in_one_forward(runtimes):
    rt = runtimes("resnet_classifier")
    before = rt.pipeline_calls
    results = only_ok(rt.handle([req(image=png(s, seed=s)) for s in (16, 64, 100, 300)]))
    assert rt.pipeline_calls - before == 1
    for r in results:
        p = r.outputs["probabilities"][0]
        assert p.dtype == np.float32 and abs(float(p.sum()) - 1.0) < 1e-5
        assert r.outputs["label"][0, 0].decode() == f"class_{int(p.argmax())}"


BAD = [
    ("sd_depth", dict(prompt=b"a cat", gen_args=gen_args()), r"missing required input\(s\) \['image'\]"),
    ("sd_img2img", dict(prompt=b"   ", gen_args=gen_args()), r"input 'prompt': empty"),
    ("sd_img2img", dict(prompt=b"x" * 1001), r"input 'prompt': 1001 characters exceeds the limit of 1000"),
    ("sd_img2img", dict(prompt=b"a", negative_prompt=b"y" * 2000), r"input 'negative_prompt': 2000 characters exceeds"),
    ("sd_img2img", dict(prompt=b"\xff\xfe"), r"input 'prompt': not valid UTF-8"),
    ("sd_img2img", dict(prompt=b"a", image=b"\x89PNG\r\n\x1a\nbroken"), r"input 'image': cannot decode image"),
    ("sd_img2img", dict(prompt=b"a", image=b"!!notbase64!!"), r"input 'image': not a PNG/JPEG/WebP image and not valid base64"),
    ("sd_img2img", dict(prompt=b"a", image=png(1100)), r"input 'image': 1100x1100 = 1210000 pixels exceeds the limit of 1048576"),
    ("sd_upscale", dict(prompt=b"a", image=png(600)), r"input 'image': 600x600 = 360000 pixels exceeds the limit of 262144"),
    ("sd_img2img", dict(prompt=b"a", image=png(32)), r"input 'image': 32x32 is smaller than the minimum side of 64"),
    ("sd_inpaint", dict(prompt=b"a", image=png(64), mask_image=mask_png(72)), r"input 'mask_image': size 72x72 differs from input 'image' size 64x64"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b"{oops"), r"gen_args: not valid JSON"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'"steps"'), r"gen_args: expected a JSON object, got str"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"steps": 3}'), r"gen_args: unknown key\(s\) \['steps'\]"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"guidance_scale": "high"}'), r"gen_args.guidance_scale: 'high' must be a number"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"num_inference_steps": 0}'), r"gen_args.num_inference_steps: 0 is below the minimum 1"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"guidance_scale": 31}'), r"gen_args.guidance_scale: 31.0 exceeds the maximum 30.0"),
    ("sd_depth", dict(prompt=b"a", image=png(64), gen_args=b'{"strength": 0}'), r"gen_args.strength: 0.0 must be > 0.0"),
    ("sd_depth", dict(prompt=b"a", image=png(64), gen_args=b'{"strength": 1.2}'), r"gen_args.strength: 1.2 exceeds the maximum 1.0"),
    ("sd_img2img", dict(prompt=b"a", image=png(64), gen_args=b'{"num_inference_steps": 2, "strength": 0.3}'),
     r"num_inference_steps × strength = 2 × 0.3 = 0.6 runs no denoising step"),
    ("sd_upscale", dict(prompt=b"a", image=png(32), gen_args=b'{"noise_level": 351}'), r"gen_args.noise_level: 351 exceeds the maximum 350"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"height": 100}'), r"gen_args.height: 100 must be a multiple of 8"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"width": 2048}'), r"gen_args.width: 2048 exceeds the maximum 1024"),
    ("sd_img2img", dict(prompt=b"a", image=png(64), gen_args=b'{"height": 64}'), r"gen_args.height: only valid for text-to-image"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"strength": 0.5}'), r"gen_args.strength: only valid for image-to-image"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"seed": -1}'), r"gen_args.seed: -1 is below the minimum 0"),
    ("resnet_classifier", dict(image=png(4)), r"input 'image': 4x4 is smaller than the minimum side of 8"),
    ("resnet_classifier", dict(image=png(8), prompt=b"x"), r"unknown input\(s\) \['prompt'\]"),
]


@pytest.mark.parametrize("model, inputs, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_request_gets_its_own_clear_error(runtimes, model, inputs, message):
    (result,) = runtimes(model).handle([req(**inputs)])
    assert isinstance(result.error, InvalidInputError)
    assert result.error.code == "INVALID_ARG"
    assert result.outputs is None
    import re
    assert re.search(message, str(result.error)), str(result.error)


def test_wrong_tensor_shapes(runtimes):
    rt = runtimes("resnet_classifier")
    two_cols = RawRequest({"image": np.array([[png(16), png(16)]], dtype=object)})
    (r,) = rt.handle([two_cols])
    assert "input 'image': shape [1, 2] must be [batch, 1]" in str(r.error)
    rt2 = runtimes("sd_img2img")
    mismatch = RawRequest({"prompt": tensor(b"a", b"b"), "gen_args": tensor(gen_args())})
    (r,) = rt2.handle([mismatch])
    assert "input 'gen_args': batch size 1 differs from the other inputs' 2" in str(r.error)
    too_big = RawRequest({"image": tensor(*[png(16)] * 5)})
    (r,) = rt.handle([too_big])
    assert "request batch size 5 exceeds the limit of 4" in str(r.error)


def test_mixed_batch_good_requests_succeed_beside_bad_ones(runtimes):
    rt = runtimes("sd_inpaint")
    reqs = [
        req(prompt=b"a cat", image=png(64), mask_image=mask_png(64), gen_args=gen_args(seed=1)),
        req(prompt=b"a cat", image=png(64), mask_image=mask_png(80), gen_args=gen_args()),
        req(prompt=b"a cat", image=png(64), mask_image=mask_png(64), gen_args=b'{"nope": 1}'),
        req(prompt=b"a dog", image=png(64), mask_image=mask_png(64), gen_args=gen_args(seed=2)),
    ]
    results = rt.handle(reqs)
    assert [r.error is None for r in results] == [True, False, False, True]
    assert "mask_image" in str(results[1].error) and "unknown key" in str(results[2].error)
    assert image_size(results[3].outputs["generated_image"][0, 0]) == (64, 64)


def test_pipeline_failure_fails_only_the_request_that_caused_it(runtimes, monkeypatch):
    """Out-of-memory cannot be caused on demand here: inject it for one prompt only."""
    import torch

    rt = runtimes("sd_img2img")
    real = rt.call_pipeline

    def flaky(items):
        if any(it.prompt == "poison" for it in items):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(items)

    monkeypatch.setattr(rt, "call_pipeline", flaky)
    reqs = [req(prompt=p, image=png(64), gen_args=gen_args()) for p in (b"a cat", b"poison", b"a dog")]
    results = rt.handle(reqs)
    assert results[0].error is None and results[2].error is None
    assert isinstance(results[1].error, ResourceExhaustedError)
    assert "out of memory while running the pipeline" in str(results[1].error)
    monkeypatch.setattr(rt, "call_pipeline", lambda items: (_ for _ in ()).throw(ValueError("boom")))
    (r,) = rt.handle([reqs[0]])
    assert isinstance(r.error, PipelineError) and "pipeline failed (ValueError: boom)" in str(r.error)
    monkeypatch.setattr(rt, "call_pipeline", real)
    assert rt.handle([reqs[0]])[0].error is None  # the runtime is still healthy


def test_checkpoint_with_pickle_is_refused(tmp_path):
    from serving.runtime.checkpoints.safety import check_checkpoint
    from serving.runtime.errors import CheckpointError

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match=r"contains pickle weight files \['unet/diffusion_pytorch_model.bin'\]: only safetensors"):
        check_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist; run `make weights`"):
        check_checkpoint(tmp_path / "missing")
    rt = runtime_class("resnet_classifier")(str(tmp_path), DeviceSpec.for_instance("CPU"))
    with pytest.raises(CheckpointError):
        rt.load()
    assert rt.ready is False


def test_device_spec_cpu_is_fp32():
    import torch
    spec = DeviceSpec.for_instance("CPU")
    assert spec.device == "cpu" and spec.dtype == torch.float32
    if not torch.cuda.is_available():
        assert DeviceSpec.for_instance("GPU").device == "cpu"  # no CUDA: falls back rather than crash
