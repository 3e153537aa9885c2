"""KServe v2 request bodies (JSON and binary+json) and response parsing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from deploy.payload import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    PayloadError,
    build_request,
    header_size,
    parse_response,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def test_json_request_matches_the_sample_format() -> None:
    body, content_type = build_request({"prompt": ["a red fox"], "image": ["aGVsbG8="]})
    assert content_type == JSON_CONTENT_TYPE == "application/json"
    assert json.loads(body) == {
        "inputs": [
            {"name": "prompt", "shape": [1, 1], "datatype": "BYTES", "data": ["a red fox"]},
            {"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": ["aGVsbG8="]},
        ]
    }


def test_json_request_batch_outputs_and_id() -> None:
    body, _ = build_request({"prompt": ["a", b"b"]}, outputs=["generated_image"], request_id="r-1")
    assert json.loads(body) == {
        "id": "r-1",
        "inputs": [{"name": "prompt", "shape": [2, 1], "datatype": "BYTES", "data": ["a", "b"]}],
        "outputs": [{"name": "generated_image"}],
    }


def test_json_request_from_numpy_array() -> None:
    body, _ = build_request({"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert json.loads(body)["inputs"] == [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}
    ]


def test_json_request_refuses_raw_binary() -> None:
    with pytest.raises(PayloadError, match="input 'image': binary value cannot go in a JSON body"):
        build_request({"image": [PNG]})


@pytest.mark.parametrize("bad, message", [
    ({}, "no inputs"),
    ({"prompt": "just a string"}, "give a list of values, not a single str"),
    ({"prompt": []}, "input 'prompt': no values"),
    ({"prompt": [3]}, "values must be str or bytes, got int"),
])
def test_invalid_inputs(bad, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        build_request(bad)


def test_binary_request_layout() -> None:
    body, content_type = build_request({"prompt": ["a fox"], "image": [PNG]}, binary=True)
    prefix, _, param = content_type.partition(";")
    assert prefix == BINARY_CONTENT_TYPE == "application/vnd.sagemaker-triton.binary+json"
    size = header_size(content_type)
    assert param == f"json-header-size={size}"
    header = json.loads(body[:size])
    assert header["parameters"] == {"binary_data_output": True, "image_encoding": "raw"}  # raw images back
    inputs = {i["name"]: i for i in header["inputs"]}
    assert inputs["prompt"]["shape"] == [1, 1] and inputs["prompt"]["datatype"] == "BYTES"
    # The tensors follow the header in input order, each a 4-byte length + bytes per element.
    offset = size
    decoded = {}
    for item in header["inputs"]:
        n = item["parameters"]["binary_data_size"]
        decoded[item["name"]] = deserialize_bytes_tensor(body[offset:offset + n])
        offset += n
    assert offset == len(body)
    assert decoded["prompt"].tolist() == [b"a fox"]
    assert decoded["image"].tolist() == [PNG]


def test_binary_request_with_named_outputs() -> None:
    body, content_type = build_request({"prompt": ["x"]}, binary=True, outputs=["generated_image"])
    header = json.loads(body[:header_size(content_type)])
    assert header["outputs"] == [{"name": "generated_image", "parameters": {"binary_data": True}}]


def test_parse_json_response() -> None:
    body = json.dumps({
        "model_name": "sd_depth", "model_version": "1",
        "outputs": [{"name": "generated_image", "shape": [1, 1], "datatype": "BYTES", "data": ["aW1n"]},
                    {"name": "scores", "shape": [2], "datatype": "FP32", "data": [0.25, 0.75]}],
    }).encode()
    out = parse_response(body, "application/json")
    assert out["generated_image"].tolist() == [["aW1n"]]
    assert out["scores"].dtype == np.float32 and out["scores"].tolist() == [0.25, 0.75]


def test_parse_binary_response() -> None:
    image = serialize_byte_tensor(np.array([PNG], dtype=np.object_)).item()  # 0-d array holding bytes
    scores = np.array([1.5, 2.5], dtype=np.float32).tobytes()
    header = json.dumps({"outputs": [
        {"name": "generated_image", "shape": [1], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(image)}},
        {"name": "scores", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": len(scores)}},
    ]}).encode()
    content_type = f"{BINARY_CONTENT_TYPE};json-header-size={len(header)}"
    out = parse_response(header + image + scores, content_type)
    assert out["generated_image"].tolist() == [PNG]
    assert out["scores"].tolist() == [1.5, 2.5]


def test_parse_error_bodies() -> None:
    with pytest.raises(PayloadError, match="server error: input 'image': not a PNG"):
        parse_response(b'{"error": "input \'image\': not a PNG/JPEG/WebP image"}', "application/json")
    with pytest.raises(PayloadError, match=r"response is not a KServe v2 body: .*starts b'body'"):
        parse_response(b"body", "text/plain")
    with pytest.raises(PayloadError, match="response has no 'outputs' list"):
        parse_response(b'{"model_name": "m"}', "application/json")
    with pytest.raises(PayloadError, match="lacks json-header-size"):
        parse_response(b"{}", BINARY_CONTENT_TYPE)
    with pytest.raises(PayloadError, match="json-header-size=99 is larger than the 2-byte body"):
        parse_response(b"{}", f"{BINARY_CONTENT_TYPE};json-header-size=99")


def test_header_size_only_for_binary_content_type() -> None:
    assert header_size("application/json") is None
    assert header_size(None) is None
    assert header_size(f"{BINARY_CONTENT_TYPE}; json-header-size=42") == 42


def test_segment_attributes_travel_in_the_body() -> None:
    """CustomAttributes never reach the model behind Triton's SageMaker frontend: segments go in the body."""
    body, _ = build_request({"prompt": ["a fox"]}, segments={"tenant": "acme", "region": "eu"})
    assert json.loads(body)["parameters"] == {"segment.tenant": "acme", "segment.region": "eu"}
    body, content_type = build_request({"prompt": ["a fox"], "image": [PNG]}, binary=True, segments={"tenant": "acme"})
    header = json.loads(body[:header_size(content_type)])
    assert header["parameters"] == {"binary_data_output": True, "image_encoding": "raw", "segment.tenant": "acme"}
    with pytest.raises(PayloadError, match=r"segment.tenant': value of 65 characters is outside 1..64"):
        build_request({"prompt": ["a"]}, segments={"tenant": "x" * 65})
