"""How a payload reaches the model: Triton HTTP, Triton gRPC, or SageMaker `InvokeEndpoint`.

Every transport has `send(payload)`, which returns on success and raises `RequestFailed`
with a short error kind otherwise, and is safe to call from many threads (HTTP and gRPC keep
one client per thread; the boto3 client is thread-safe). `classify_error` turns the server's
message into the kind used in reports, e.g. "refused", "invalid_arg:image", "invalid_arg:gen_args",
"unavailable", "timeout", "connection", "internal".

Each request carries the caller's deadline (`--timeout` from its send: `deadline_ms` and
Triton's queue `timeout`), and refusals ("refused": a full queue, a queue timeout, an expired
deadline) are retried with jittered backoff within it (serving/common/retry.py); `send` returns the
`Attempts`, and a `RequestFailed` carries them too, so reports count refusals apart from errors.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import numpy as np

from serving.runtime.deadline import request_parameters, triton_timeout_us
from bench.loadtest.payloads import Payload
from serving.runtime.response_encoding import PARAMETER, RAW
from serving.common.retry import Attempts, Refused, RetryBudget, RetryPolicy, call_with_retries, is_refusal

RAW_IMAGES = {PARAMETER: RAW}  # tritonclient reads binary tensors: raw image bytes, not base64 text

OUTPUTS = {"resnet_classifier": ("probabilities", "label")}
DEFAULT_OUTPUTS = ("generated_image",)
_FIELD = re.compile(r"input '([A-Za-z0-9_]+)'")
_GEN_ARG = re.compile(r"\bgen_args\b")


class RequestFailed(Exception):
    def __init__(self, kind: str, message: str, attempts: Attempts | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.attempts = attempts


def _with_retries(send_once, timeout_s: float, policy: RetryPolicy, budget: RetryBudget | None) -> Attempts:
    """Run `send_once(remaining_s)` with refusals retried within `timeout_s` and the transport's
    retry budget; return the Attempts."""
    attempts = Attempts()
    deadline = time.monotonic() + timeout_s
    try:
        call_with_retries(send_once, deadline, policy, attempts=attempts, budget=budget)
    except Refused as exc:
        cause = exc.cause if isinstance(exc.cause, RequestFailed) else RequestFailed("refused", str(exc))
        cause.attempts = attempts
        raise cause from None
    except RequestFailed as exc:
        exc.attempts = attempts
        raise
    return attempts


def classify_error(status: str | int | None, message: str) -> str:
    """A short, stable error kind from a status code (HTTP or gRPC name) and the message."""
    s = str(status or "").upper().replace("STATUSCODE.", "")
    text = message or ""
    low = text.lower()
    if is_refusal(s, text):  # before "timeout": Triton's queue timeout says "Request timeout expired"
        return "refused"
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
                 retry: RetryPolicy = RetryPolicy(), send_deadline: bool = True,
                 segments: dict[str, str] | None = None):
        from monitoring.capture.attributes import as_parameters

        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol {protocol!r}: http or grpc")
        self.model, self.url, self.protocol, self.timeout_s = model, url, protocol, timeout_s
        self.retry, self.send_deadline = retry, send_deadline
        # One budget for all of this transport's threads: retries stay a share of successes.
        self.retry_budget = RetryBudget() if retry.max_attempts > 1 else None
        # segment attributes for monitoring (request parameters segment.<name>), checked once here
        self.parameters = {**RAW_IMAGES, **as_parameters(segments)}
        self._local = threading.local()
        # Every thread's client, so close() ends them all, not only the calling thread's: an open
        # keep-alive holds tritonserver's shutdown for its exit time-out (30 s, then exit 1).
        self._clients: set[Any] = set()
        self._clients_lock = threading.Lock()
        if protocol == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        self._tc = tc

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            with self._clients_lock:
                if client not in self._clients:  # closed by close() from another thread
                    client = None
        if client is None:
            if self.protocol == "http":
                client = self._tc.InferenceServerClient(
                    url=self.url, connection_timeout=min(self.timeout_s, 60.0), network_timeout=self.timeout_s)
            else:
                client = self._tc.InferenceServerClient(url=self.url)
            self._local.client = client
            with self._clients_lock:
                self._clients.add(client)
        return client

    @staticmethod
    def _close(client: Any) -> None:
        try:
            client.close()
        except Exception:
            pass

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._clients_lock:
                self._clients.discard(client)
            self._close(client)

    def send(self, payload: Payload) -> Attempts:
        params = {**self.parameters, **(request_parameters(self.timeout_s) if self.send_deadline else {})}
        return _with_retries(lambda remaining: self._send_once(payload, remaining, params), self.timeout_s, self.retry,
                             self.retry_budget)

    def _send_once(self, payload: Payload, remaining_s: float, params: dict) -> None:
        from tritonclient.utils import InferenceServerException

        tc = self._tc
        tensors = []
        for name, value in payload.inputs.items():
            t = tc.InferInput(name, [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[value]], dtype=np.object_))
            tensors.append(t)
        names = OUTPUTS.get(self.model, DEFAULT_OUTPUTS)
        outputs = [tc.InferRequestedOutput(o) for o in names]
        kwargs = {"client_timeout": remaining_s} if self.protocol == "grpc" else {}
        if self.send_deadline:  # Triton rejects it from the queue once the caller has given up
            kwargs["timeout"] = triton_timeout_us(remaining_s)
        try:
            result = self._client().infer(self.model, tensors, outputs=outputs, parameters=params, **kwargs)
        except InferenceServerException as exc:
            kind = classify_error(exc.status(), exc.message() or str(exc))
            if kind in ("connection", "timeout"):
                self._drop_client()
            failed = RequestFailed(kind, exc.message() or str(exc))
            if kind == "refused":
                raise Refused(failed.message, cause=failed) from None
            raise failed from None
        except Exception as exc:  # socket errors, gevent timeouts: not an answer from Triton
            self._drop_client()
            kind = classify_error(None, f"{type(exc).__name__}: {exc}")
            if kind.startswith("error"):
                kind = "connection"
            raise RequestFailed(kind, f"{type(exc).__name__}: {exc}") from None
        _check_outputs(self.model, {o: result.as_numpy(o) for o in names})

    def open_clients(self) -> int:
        """How many threads' clients are open."""
        with self._clients_lock:
            return len(self._clients)

    def close(self) -> None:
        """Close every thread's client (a thread that sends again afterwards opens a new one)."""
        self._local.client = None
        with self._clients_lock:
            clients, self._clients = list(self._clients), set()
        for client in clients:
            self._close(client)


def sagemaker_request(payload: Payload, binary: bool = True, parameters: dict | None = None,
                      segments: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(body, content type) of one KServe v2 request for SageMaker's Triton front end."""
    import base64

    from deploy.payload import build_request

    inputs: dict[str, list[bytes]] = {}
    for name, value in payload.inputs.items():
        if not binary and name in ("image", "mask_image"):
            value = base64.b64encode(value)  # JSON bodies carry images as base64 text
        inputs[name] = [value]
    return build_request(inputs, binary=binary, parameters=parameters, segments=segments)


class SageMakerTransport:
    """`sagemaker-runtime` InvokeEndpoint on a multi-model endpoint (local or real)."""

    def __init__(self, model: str, endpoint_name: str, *, endpoint_url: str | None = None,
                 region: str | None = None, target_model: str | None = None, binary: bool = True,
                 timeout_s: float = 70.0, max_connections: int = 64, client: Any = None,
                 retry: RetryPolicy = RetryPolicy(), send_deadline: bool = True,
                 segments: dict[str, str] | None = None):
        self.model = model
        self.segments = dict(segments or {})
        self.timeout_s, self.retry, self.send_deadline = timeout_s, retry, send_deadline
        self.retry_budget = RetryBudget() if retry.max_attempts > 1 else None
        self.endpoint_name = endpoint_name
        self.target_model = target_model or f"{model}.tar.gz"
        self.binary = binary
        if client is None:
            from deploy.aws import AwsContext

            local = endpoint_url is not None and any(h in endpoint_url for h in ("127.0.0.1", "localhost", "[::1]"))
            ctx = AwsContext(region=region or ("us-east-1" if local else None), endpoint_url=endpoint_url)
            # One attempt per call: refusals are retried here, with jitter, not by botocore at once.
            client = ctx.client("runtime", read_timeout=timeout_s, max_pool_connections=max_connections,
                                retries={"max_attempts": 1, "mode": "standard"})
        self.client = client

    def request_kwargs(self, payload: Payload, parameters: dict | None = None) -> dict[str, Any]:
        body, content_type = sagemaker_request(payload, self.binary, parameters, self.segments)
        return {"EndpointName": self.endpoint_name, "TargetModel": self.target_model,
                "ContentType": content_type, "Accept": content_type.split(";")[0], "Body": body}

    def send(self, payload: Payload) -> Attempts:
        params = None
        if self.send_deadline:
            params = {**request_parameters(self.timeout_s), "timeout": triton_timeout_us(self.timeout_s)}
        kwargs = self.request_kwargs(payload, params)
        return _with_retries(lambda remaining: self._send_once(kwargs), self.timeout_s, self.retry, self.retry_budget)

    def _send_once(self, kwargs: dict[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from deploy.payload import PayloadError, parse_response

        try:
            resp = self.client.invoke_endpoint(**kwargs)
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
            if code == "ServiceUnavailable" or (code == "ModelError" and is_refusal(status, message)):
                kind = "refused"
            failed = RequestFailed(kind, f"{code}: {message}")
            if kind in ("refused", "throttled"):
                hint = (exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}).get("retry-after")
                raise Refused(failed.message, retry_after_s=float(hint) if hint and hint.isdigit() else None,
                              cause=failed) from None
            raise failed from None
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
