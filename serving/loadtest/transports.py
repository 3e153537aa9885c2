"""How a payload reaches the model: Triton HTTP, Triton gRPC, or SageMaker `InvokeEndpoint`.

Every transport has `send(payload)`, which returns on success and raises `RequestFailed`
with a short error kind otherwise, and is safe to call from many threads (HTTP and gRPC keep
one client per thread; the boto3 client is thread-safe). `classify_error` turns the server's
message into the kind used in reports, e.g. "invalid_arg:image", "invalid_arg:gen_args",
"unavailable", "timeout", "connection", "internal".
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np

from serving.loadtest.payloads import Payload
from serving.response_encoding import PARAMETER, RAW

RAW_IMAGES = {PARAMETER: RAW}  # tritonclient reads binary tensors: raw image bytes, not base64 text

OUTPUTS = {"resnet_classifier": ("probabilities", "label")}
DEFAULT_OUTPUTS = ("generated_image",)
_FIELD = re.compile(r"input '([A-Za-z0-9_]+)'")
_GEN_ARG = re.compile(r"\bgen_args\b")


class RequestFailed(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def classify_error(status: str | int | None, message: str) -> str:
    """A short, stable error kind from a status code (HTTP or gRPC name) and the message."""
    s = str(status or "").upper().replace("STATUSCODE.", "")
    text = message or ""
    low = text.lower()
    if any(k in low for k in ("timed out", "timeout", "deadline exceeded", "deadline_exceeded")) or s in (
            "DEADLINE_EXCEEDED", "504", "408"):
        return "timeout"
    if any(k in low for k in ("connection refused", "failed to connect", "connection reset", "broken pipe",
                              "connect call failed", "name or service not known", "could not connect",
                              "remote end closed", "connection aborted", "socket closed",
                              "endpointconnectionerror")):
        return "connection"
    # A model whose stub died (Triton: 500 "Stub process '<m>_0_0' is not healthy.") or that the
    # watchdog is reloading (400 "... has no available versions"): it comes back by itself
    # (docs/reliability.md), so it is unavailable, not a bad request or a server bug.
    if "is not healthy" in low or "has no available versions" in low:
        return "unavailable"
    if s in ("INVALID_ARGUMENT", "INVALID_ARG", "400") or "invalid_arg" in low:
        m = _FIELD.search(text)
        if m:
            return f"invalid_arg:{m.group(1)}"
        if _GEN_ARG.search(text):
            return "invalid_arg:gen_args"
        if "missing required input" in low:
            return "invalid_arg:missing_input"
        if "unknown input" in low:
            return "invalid_arg:unknown_input"
        return "invalid_arg"
    if s in ("UNAVAILABLE", "503", "RESOURCE_EXHAUSTED", "429") or "unavailable" in low:
        return "unavailable"
    if s in ("NOT_FOUND", "404") or "unknown model" in low or "not found" in low:
        return "not_found"
    if s in ("INTERNAL", "500") or "internal" in low:
        return "internal"
    if s in ("THROTTLINGEXCEPTION",) or "throttl" in low:
        return "throttled"
    return f"error:{s.lower()}" if s else "error"


def _check_outputs(model: str, outputs: dict[str, Any]) -> None:
    for name in OUTPUTS.get(model, DEFAULT_OUTPUTS):
        arr = outputs.get(name)
        if arr is None or np.asarray(arr).size == 0:
            raise RequestFailed("bad_response", f"output {name!r} missing from the response")


class TritonTransport:
    """Triton's KServe v2 API through tritonclient, HTTP or gRPC, binary tensors."""

    def __init__(self, model: str, url: str, protocol: str = "http", timeout_s: float = 120.0,
                 segments: dict[str, str] | None = None):
        from monitoring.capture.attributes import as_parameters

        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol {protocol!r}: http or grpc")
        self.model, self.url, self.protocol, self.timeout_s = model, url, protocol, timeout_s
        # segment attributes for monitoring (request parameters segment.<name>), checked once here
        self.parameters = {**RAW_IMAGES, **as_parameters(segments)}
        self._local = threading.local()
        if protocol == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        self._tc = tc

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                client = self._tc.InferenceServerClient(
                    url=self.url, connection_timeout=min(self.timeout_s, 60.0), network_timeout=self.timeout_s)
            else:
                client = self._tc.InferenceServerClient(url=self.url)
            self._local.client = client
        return client

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def send(self, payload: Payload) -> None:
        from tritonclient.utils import InferenceServerException

        tc = self._tc
        tensors = []
        for name, value in payload.inputs.items():
            t = tc.InferInput(name, [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[value]], dtype=np.object_))
            tensors.append(t)
        names = OUTPUTS.get(self.model, DEFAULT_OUTPUTS)
        outputs = [tc.InferRequestedOutput(o) for o in names]
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            result = self._client().infer(self.model, tensors, outputs=outputs, parameters=self.parameters, **kwargs)
        except InferenceServerException as exc:
            kind = classify_error(exc.status(), exc.message() or str(exc))
            if kind in ("connection", "timeout"):
                self._drop_client()
            raise RequestFailed(kind, exc.message() or str(exc)) from None
        except Exception as exc:  # socket errors, gevent timeouts: not an answer from Triton
            self._drop_client()
            kind = classify_error(None, f"{type(exc).__name__}: {exc}")
            if kind.startswith("error"):
                kind = "connection"
            raise RequestFailed(kind, f"{type(exc).__name__}: {exc}") from None
        _check_outputs(self.model, {o: result.as_numpy(o) for o in names})

    def close(self) -> None:
        self._drop_client()


def sagemaker_request(payload: Payload, binary: bool = True, segments: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(body, content type) of one KServe v2 request for SageMaker's Triton front end."""
    import base64

    from deploy.payload import build_request

    inputs: dict[str, list[bytes]] = {}
    for name, value in payload.inputs.items():
        if not binary and name in ("image", "mask_image"):
            value = base64.b64encode(value)  # JSON bodies carry images as base64 text
        inputs[name] = [value]
    return build_request(inputs, binary=binary, segments=segments)


class SageMakerTransport:
    """`sagemaker-runtime` InvokeEndpoint on a multi-model endpoint (local or real)."""

    def __init__(self, model: str, endpoint_name: str, *, endpoint_url: str | None = None,
                 region: str | None = None, target_model: str | None = None, binary: bool = True,
                 timeout_s: float = 70.0, max_connections: int = 64, client: Any = None,
                 segments: dict[str, str] | None = None):
        self.model = model
        self.segments = dict(segments or {})
        self.endpoint_name = endpoint_name
        self.target_model = target_model or f"{model}.tar.gz"
        self.binary = binary
        if client is None:
            from deploy.aws import AwsContext

            local = endpoint_url is not None and any(h in endpoint_url for h in ("127.0.0.1", "localhost", "[::1]"))
            ctx = AwsContext(region=region or ("us-east-1" if local else None), endpoint_url=endpoint_url)
            client = ctx.client("runtime", read_timeout=timeout_s, max_pool_connections=max_connections)
        self.client = client

    def request_kwargs(self, payload: Payload) -> dict[str, Any]:
        body, content_type = sagemaker_request(payload, self.binary, self.segments)
        return {"EndpointName": self.endpoint_name, "TargetModel": self.target_model,
                "ContentType": content_type, "Accept": content_type.split(";")[0], "Body": body}

    def send(self, payload: Payload) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from deploy.payload import PayloadError, parse_response

        try:
            resp = self.client.invoke_endpoint(**self.request_kwargs(payload))
            body = resp["Body"].read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = str(err.get("Code", "")), str(err.get("Message", exc))
            status = exc.response.get("OriginalStatusCode") or code
            if code == "ModelError":
                status = exc.response.get("OriginalStatusCode") or "500"
            kind = classify_error(status, message)
            if code == "ThrottlingException":
                kind = "throttled"
            raise RequestFailed(kind, f"{code}: {message}") from None
        except BotoCoreError as exc:
            kind = classify_error(None, f"{type(exc).__name__}: {exc}")
            raise RequestFailed("connection" if kind.startswith("error") else kind, str(exc)) from None
        try:
            outputs = parse_response(body, resp.get("ContentType"))
        except PayloadError as exc:
            raise RequestFailed(classify_error(None, str(exc)), str(exc)) from None
        _check_outputs(self.model, outputs)

    def close(self) -> None:
        pass
