"""Build and parse KServe v2 inference bodies as SageMaker's Triton front end expects them.

Two encodings:
* JSON: `{"inputs":[{"name","shape","datatype":"BYTES","data":[...]}]}`, content type
  application/json. Text only: binary values (images) must be base64 text.
* binary+json: a JSON header followed by raw tensor bytes, content type
  `application/vnd.sagemaker-triton.binary+json;json-header-size=N`. Images travel raw,
  about 25% smaller and no base64 on either side.

Shared by `python -m deploy invoke`, the load tester and the local endpoint's tests.
"""

from __future__ import annotations

import json
import re
from typing import Mapping, Sequence, Union

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from monitoring.capture.attributes import as_parameters

JSON_CONTENT_TYPE = "application/json"
# Request parameter the models read to return images as raw bytes instead of base64 text
# (serving/runtime/response_encoding.py; plain JSON bodies leave it out and get base64).
IMAGE_ENCODING = "image_encoding"
BINARY_CONTENT_TYPE = "application/vnd.sagemaker-triton.binary+json"
_HEADER_SIZE = re.compile(r"json-header-size\s*=\s*(\d+)")

Value = Union[bytes, str]
InputValues = Union[Sequence[Value], np.ndarray]


class PayloadError(ValueError):
    """A body could not be built or parsed, or the server answered with an error body."""


def _as_array(name: str, values: InputValues) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (str, bytes)):
        raise PayloadError(f"input {name!r}: give a list of values, not a single {type(values).__name__}")
    items = list(values)
    if not items:
        raise PayloadError(f"input {name!r}: no values")
    for v in items:
        if not isinstance(v, (str, bytes)):
            raise PayloadError(f"input {name!r}: values must be str or bytes, got {type(v).__name__}")
    # Shape [batch, 1]: the sample's configs declare dims [-1] with max_batch_size > 0, so one
    # request with one prompt is [[prompt]].
    return np.array([[v if isinstance(v, bytes) else v.encode("utf-8")] for v in items], dtype=np.object_)


def _triton_dtype(arr: np.ndarray) -> str:
    if arr.dtype == np.object_ or arr.dtype.kind in ("S", "U"):
        return "BYTES"
    return np_to_triton_dtype(arr.dtype)


def _json_data(name: str, arr: np.ndarray) -> list:
    if _triton_dtype(arr) != "BYTES":
        return arr.flatten().tolist()
    out = []
    for v in arr.flatten():
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise PayloadError(
                    f"input {name!r}: binary value cannot go in a JSON body; use binary=True "
                    "or send base64 text"
                ) from None
        out.append(str(v))
    return out


def build_request(
    inputs: Mapping[str, InputValues],
    binary: bool = False,
    *,
    outputs: Sequence[str] | None = None,
    request_id: str = "",
    segments: Mapping[str, str] | None = None,
    parameters: Mapping[str, object] | None = None,
) -> tuple[bytes, str]:
    """Return (body, content_type) for an inference request.

    `segments` ({"tenant": "acme"}) go in the body as request parameters `segment.<name>`: Triton's
    SageMaker frontend forwards no HTTP header (CustomAttributes) to the model, the body it does.

    `inputs` maps input name to a list of str/bytes (sent as BYTES with shape [len, 1]) or to a
    numpy array (sent with its own shape and dtype). With `binary`, tensors travel as raw bytes
    after a JSON header and outputs are requested in binary too. `parameters` are request
    parameters, e.g. `deadline_ms` (serving/runtime/deadline.py) and Triton's queue `timeout` (µs).
    """
    if not inputs:
        raise PayloadError("no inputs")
    try:
        segment_params = as_parameters(segments)
    except ValueError as exc:
        raise PayloadError(str(exc)) from None
    arrays = {name: _as_array(name, values) for name, values in inputs.items()}
    if not binary:
        doc: dict = {
            "inputs": [
                {
                    "name": name,
                    "shape": list(arr.shape),
                    "datatype": _triton_dtype(arr),
                    "data": _json_data(name, arr),
                }
                for name, arr in arrays.items()
            ]
        }
        if outputs:
            doc["outputs"] = [{"name": o} for o in outputs]
        if request_id:
            doc["id"] = request_id
        params = {**segment_params, **(parameters or {})}
        if params:
            doc["parameters"] = params
        return json.dumps(doc).encode("utf-8"), JSON_CONTENT_TYPE
    infer_inputs = []
    for name, arr in arrays.items():
        tensor = httpclient.InferInput(name, list(arr.shape), _triton_dtype(arr))
        tensor.set_data_from_numpy(arr, binary_data=True)
        infer_inputs.append(tensor)
    requested = [httpclient.InferRequestedOutput(o, binary_data=True) for o in outputs] if outputs else None
    # Binary output asked for: images can travel as raw bytes, not the JSON default base64 text.
    params = {IMAGE_ENCODING: "raw", **segment_params, **(parameters or {})}
    timeout = params.pop("timeout", None)  # tritonclient reserves the name: it has its own argument
    body, header_size = httpclient.InferenceServerClient.generate_request_body(
        infer_inputs, outputs=requested, request_id=request_id, parameters=params, timeout=timeout
    )
    if header_size is None:  # no binary tensor after all: the body is plain JSON
        return body, JSON_CONTENT_TYPE
    return body, f"{BINARY_CONTENT_TYPE};json-header-size={header_size}"


def header_size(content_type: str | None) -> int | None:
    """The JSON header length announced by a binary+json content type, else None."""
    if not content_type or not content_type.split(";")[0].strip().lower() == BINARY_CONTENT_TYPE:
        return None
    m = _HEADER_SIZE.search(content_type)
    if m is None:
        raise PayloadError(f"content type {content_type!r} lacks json-header-size")
    return int(m.group(1))


def parse_response(body: bytes, content_type: str | None) -> dict[str, np.ndarray]:
    """Decode an inference response into {output name: array}; raise PayloadError on an error body.

    BYTES outputs come back as object arrays of bytes (binary) or str (JSON), as tritonclient
    returns them.
    """
    size = header_size(content_type)
    if size is not None and size > len(body):
        raise PayloadError(f"json-header-size={size} is larger than the {len(body)}-byte body")
    header = body[:size] if size is not None else body
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"response is not a KServe v2 body: {exc}; starts {body[:60]!r}") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"response is not a KServe v2 body: {body[:60]!r}")
    if "error" in doc:
        raise PayloadError(f"server error: {doc['error']}")
    if not isinstance(doc.get("outputs"), list):
        raise PayloadError(f"response has no 'outputs' list: {body[:60]!r}")
    result = httpclient.InferenceServerClient.parse_response_body(body, header_length=size)
    return {out["name"]: result.as_numpy(out["name"]) for out in doc["outputs"]}
