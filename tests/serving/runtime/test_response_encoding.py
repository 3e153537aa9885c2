"""JSON clients get JSON: generated images as base64 text unless the request asks for raw bytes.

Unit tests of serving/runtime/response_encoding.py, then the real tritonserver: a plain KServe v2 JSON
body (no parameters, no binary flags) to each SD model parses with `json.loads`; gRPC and
binary+json clients that send `image_encoding: raw` get raw PNG bytes.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image

from serving.runtime.errors import InvalidInputError
from serving.runtime.response_encoding import BASE64, RAW, encode_outputs, requested_encoding
from tests.conftest import gen_args, mask_png, png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SD_INPUTS = {
    "sd_img2img": ({"prompt": "a photo of a cat", "image": png(64)}, (64, 64)),
    "sd_depth": ({"prompt": "a house", "image": png(64)}, (64, 64)),
    "sd_inpaint": ({"prompt": "a dog", "image": png(64), "mask_image": mask_png(64)}, (64, 64)),
    "sd_upscale": ({"prompt": "a tree", "image": png(48)}, (192, 192)),
}


def test_requested_encoding_defaults_to_base64_and_names_a_bad_value():
    assert requested_encoding("{}") == BASE64
    assert requested_encoding("") == BASE64
    assert requested_encoding('{"image_encoding": "raw", "other": 1}') == RAW
    with pytest.raises(InvalidInputError, match="request parameter 'image_encoding': 'hex' is not one of base64, raw"):
        requested_encoding('{"image_encoding": "hex"}')


def test_encode_outputs_touches_only_encoded_images():
    image = png(16)
    outputs = {"generated_image": np.array([[image]], dtype=np.object_),
               "label": np.array([[b"class_3"]], dtype=np.object_),
               "probabilities": np.array([[0.25, 0.75]], dtype=np.float32)}
    encoded = encode_outputs(outputs, BASE64)
    assert encoded["generated_image"].shape == (1, 1)
    assert base64.b64decode(encoded["generated_image"][0, 0]) == image
    assert encoded["label"][0, 0] == b"class_3"
    assert encoded["probabilities"].tolist() == [[0.25, 0.75]]
    assert encode_outputs(outputs, RAW)["generated_image"][0, 0] == image


def plain_json(inputs: dict, **extra) -> bytes:
    """A KServe v2 JSON body the way curl/boto3 users write it: images as base64 text."""
    def text(v):
        return base64.b64encode(v).decode() if isinstance(v, bytes) else v
    doc = {"inputs": [{"name": k, "shape": [1, 1], "datatype": "BYTES", "data": [text(v)]}
                      for k, v in inputs.items()], **extra}
    return json.dumps(doc).encode()


def post(server, model: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{server.http_url}/v2/models/{model}/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("model", sorted(SD_INPUTS))
def test_plain_json_request_gets_a_json_body_with_a_base64_png(triton_server, model):
    inputs, size = SD_INPUTS[model]
    status, body = post(triton_server, model, plain_json({**inputs, "gen_args": gen_args().decode()}))
    assert status == 200
    doc = json.loads(body)
    out = {o["name"]: o for o in doc["outputs"]}["generated_image"]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 1]
    data = base64.b64decode(out["data"][0], validate=True)
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).size == size


def test_classifier_json_outputs_are_unchanged(triton_server):
    status, body = post(triton_server, "resnet_classifier", plain_json({"image": png(64)}))
    assert status == 200
    outs = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert outs["label"]["data"][0].startswith("class_")
    assert abs(sum(outs["probabilities"]["data"]) - 1.0) < 1e-5


def test_grpc_client_asking_raw_gets_png_bytes_and_plain_grpc_gets_base64(triton_server):
    inputs, size = SD_INPUTS["sd_depth"]
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    tensors = []
    for name, value in {**inputs, "gen_args": gen_args()}.items():
        t = grpcclient.InferInput(name, [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[value if isinstance(value, bytes) else value.encode()]], dtype=np.object_))
        tensors.append(t)
    try:
        raw = client.infer("sd_depth", tensors, parameters={"image_encoding": "raw"}).as_numpy("generated_image")
        text = client.infer("sd_depth", tensors).as_numpy("generated_image")
    finally:
        client.close()
    assert raw[0, 0].startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(raw[0, 0])).size == size
    assert base64.b64decode(text[0, 0]) == raw[0, 0]  # same seed, same image, other encoding


def test_bad_image_encoding_is_a_400_naming_the_parameter(triton_server):
    inputs, _ = SD_INPUTS["sd_depth"]
    status, body = post(triton_server, "sd_depth", plain_json(inputs, parameters={"image_encoding": "hex"}))
    assert status == 400
    assert "request parameter 'image_encoding': 'hex' is not one of base64, raw" in json.loads(body)["error"]
    status, _ = post(triton_server, "sd_depth", plain_json(inputs))  # the instance still serves
    assert status == 200
