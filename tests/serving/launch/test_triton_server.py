"""The five models on a real tritonserver, called with tritonclient over HTTP and gRPC."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from serving.launch.client import infer
from tests.conftest import gen_args, mask_png, png, tensor

SD_CASES = {
    "sd_img2img": (dict(prompt=b"a photo of a cat", image=png(64)), (64, 64)),
    "sd_depth": (dict(prompt=b"a house", image=png(64)), (64, 64)),
    "sd_inpaint": (dict(prompt=b"a dog", image=png(64), mask_image=mask_png(64)), (64, 64)),
    "sd_upscale": (dict(prompt=b"a tree", image=png(48)), (192, 192)),  # 4x the input
}


def call(server, model, protocol="http", **inputs):
    url = server.http_url if protocol == "http" else server.grpc_url
    return infer(model, {k: tensor(v) for k, v in inputs.items()}, url=url, protocol=protocol)


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def assert_ready(server):
    client = httpclient.InferenceServerClient(server.http_url)
    assert client.is_server_ready()
    for m in ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale", "resnet_classifier"):
        assert client.is_model_ready(m), m


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", sorted(SD_CASES))
def test_sd_models_return_an_image_of_the_right_size(triton_server, model, protocol):
    inputs, size = SD_CASES[model]
    out = call(triton_server, model, protocol, gen_args=gen_args(), **inputs)["generated_image"]
    assert out.shape == (1, 1) and isinstance(out[0, 0], bytes)
    assert size_of(out[0, 0]) == size


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_text2img_when_no_image(triton_server, protocol):
    out = call(triton_server, "sd_img2img", protocol, prompt=b"a red house", gen_args=gen_args(height=64, width=96))
    assert size_of(out["generated_image"][0, 0]) == (96, 64)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_classifier_probabilities_and_label(triton_server, protocol):
    out = call(triton_server, "resnet_classifier", protocol, image=png(64))
    probs, label = out["probabilities"], out["label"]
    assert probs.dtype == np.float32 and probs.shape == (1, 10)
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    assert label[0, 0].decode() == f"class_{int(probs[0].argmax())}"


def test_same_seed_same_image_across_calls_and_protocols(triton_server):
    inputs = dict(prompt=b"a cat", image=png(64), gen_args=gen_args(seed=1234))
    a = call(triton_server, "sd_depth", "http", **inputs)["generated_image"][0, 0]
    b = call(triton_server, "sd_depth", "grpc", **inputs)["generated_image"][0, 0]
    c = call(triton_server, "sd_depth", "http", **dict(inputs, gen_args=gen_args(seed=4321)))["generated_image"][0, 0]
    assert a == b and a != c


def test_base64_image_gives_the_same_answer_as_raw_bytes(triton_server):
    raw = call(triton_server, "resnet_classifier", image=png(64, seed=3))["probabilities"]
    b64 = call(triton_server, "resnet_classifier", image=base64.b64encode(png(64, seed=3)))["probabilities"]
    np.testing.assert_array_equal(raw, b64)


SERVER_BAD = [
    ("sd_depth", dict(prompt=b"a cat"), "missing required input"),  # Triton itself checks non-optional inputs
    ("sd_img2img", dict(prompt=b""), "input 'prompt': empty"),
    ("sd_img2img", dict(prompt=b"p" * 1001), "input 'prompt': 1001 characters exceeds the limit of 1000"),
    ("resnet_classifier", dict(image=b"\x89PNG\r\n\x1a\ntruncated"), "input 'image': cannot decode image"),
    ("resnet_classifier", dict(image=b"@@@@"), "input 'image': not a PNG/JPEG/WebP image and not valid base64"),
    ("sd_img2img", dict(prompt=b"a", image=png(1100)), "1100x1100 = 1210000 pixels exceeds the limit of 1048576 pixels"),
    ("sd_inpaint", dict(prompt=b"a", image=png(64), mask_image=mask_png(96)), "input 'mask_image': size 96x96 differs"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b"{bad"), "gen_args: not valid JSON"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b"[]"), "gen_args: expected a JSON object, got list"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"stepz": 2}'), "gen_args: unknown key(s) ['stepz']"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"num_inference_steps": "2"}'), "gen_args.num_inference_steps: '2' must be an integer"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"num_inference_steps": 500}'), "exceeds the maximum 150"),
    ("sd_depth", dict(prompt=b"a", image=png(64), gen_args=b'{"strength": 0}'), "gen_args.strength: 0.0 must be > 0.0"),
    ("sd_upscale", dict(prompt=b"a", image=png(32), gen_args=b'{"noise_level": 1000}'), "gen_args.noise_level: 1000 exceeds the maximum 350"),
    ("sd_img2img", dict(prompt=b"a", gen_args=b'{"width": 65}'), "gen_args.width: 65 must be a multiple of 8"),
    ("sd_inpaint", dict(prompt=b"a", image=png(64), mask_image=mask_png(64), gen_args=b'{"num_inference_steps": 3, "strength": 0.2}'),
     "num_inference_steps × strength = 3 × 0.2 = 0.6 runs no denoising step"),
]


@pytest.mark.parametrize("model, inputs, message", SERVER_BAD, ids=[m[:40] for _, _, m in SERVER_BAD])
def test_bad_input_is_a_clear_400_and_the_server_stays_ready(triton_server, model, inputs, message):
    with pytest.raises(InferenceServerException) as info:
        call(triton_server, model, **inputs)
    assert message in info.value.message()
    assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert_ready(triton_server)


def test_wrong_tensor_shape_is_refused_by_triton(triton_server):
    client = httpclient.InferenceServerClient(triton_server.http_url)
    t = httpclient.InferInput("image", [1, 2], "BYTES")
    t.set_data_from_numpy(np.array([[png(16), png(16)]], dtype=object))
    with pytest.raises(InferenceServerException) as info:
        client.infer("resnet_classifier", [t])
    assert "unexpected shape for input 'image'" in info.value.message()
    assert_ready(triton_server)


def async_all(server, model, requests):
    """Fire every request at once from its own thread and gRPC client, released together by a
    barrier so the dynamic batcher sees them queued; return each result or error in order."""
    import threading

    barrier = threading.Barrier(len(requests))

    def one(inputs):
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensors = []
        for name, value in inputs.items():
            t = grpcclient.InferInput(name, [1, 1], "BYTES")
            t.set_data_from_numpy(tensor(value))
            tensors.append(t)
        barrier.wait()
        try:
            return client.infer(model, tensors)
        except InferenceServerException as exc:
            return exc
        finally:
            client.close()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def stats(server, model, at_least: int = 0):
    """(inference_count, execution_count); Triton updates them just after it responds, so wait
    (bounded) until `at_least` inferences are counted."""
    import time

    client = httpclient.InferenceServerClient(server.http_url)
    deadline = time.monotonic() + 30
    while True:
        s = client.get_inference_statistics(model)["model_stats"][0]
        if s["inference_count"] >= at_least or time.monotonic() > deadline:
            return s["inference_count"], s["execution_count"]
        time.sleep(0.05)


def test_sixteen_parallel_classifier_requests_use_fewer_executions(triton_server):
    inf0, exe0 = stats(triton_server, "resnet_classifier")
    results = async_all(triton_server, "resnet_classifier", [dict(image=png(64, seed=i)) for i in range(16)])
    assert all(not isinstance(r, Exception) for r in results)
    inf1, exe1 = stats(triton_server, "resnet_classifier", at_least=inf0 + 16)
    assert inf1 - inf0 == 16
    assert exe1 - exe0 < 16, f"{exe1 - exe0} executions for 16 requests: no batching happened"


def test_mixed_batch_good_and_bad_requests_together(triton_server):
    good = [dict(image=png(64, seed=i)) for i in range(6)]
    bad = [dict(image=b"garbage-" + bytes([65 + i])) for i in range(3)]
    requests = [x for pair in zip(good, bad + [None] * 3) for x in pair if x is not None]
    results = async_all(triton_server, "resnet_classifier", requests)
    for inputs, res in zip(requests, results):
        if inputs["image"].startswith(b"garbage"):
            assert isinstance(res, InferenceServerException)
            assert "input 'image'" in res.message()
        else:
            assert not isinstance(res, Exception), res
            assert res.as_numpy("probabilities").shape == (1, 10)
    sd_requests = [dict(prompt=b"a cat", image=png(64), gen_args=gen_args(seed=i)) for i in range(3)]
    sd_requests.insert(1, dict(prompt=b"a cat", image=png(64), gen_args=b'{"strength": 7}'))
    sd_results = async_all(triton_server, "sd_img2img", sd_requests)
    assert [isinstance(r, Exception) for r in sd_results] == [False, True, False, False]
    assert "gen_args.strength: 7.0 exceeds the maximum 1.0" in sd_results[1].message()
    assert_ready(triton_server)


def test_instances_resolve_to_the_host_device(triton_server):
    import torch
    from serving.runtime.triton_http import control_headers

    config = httpclient.InferenceServerClient(triton_server.http_url).get_model_config(
        "sd_img2img", headers=control_headers(triton_server.control_key))  # model-config is locked
    kind = config["instance_group"][0]["kind"]
    assert kind == ("KIND_GPU" if torch.cuda.is_available() else "KIND_CPU")
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 50000
