"""Invoke one model of the multi-model endpoint through the sagemaker-runtime API.

`InvokeEndpoint` is `POST /endpoints/<name>/invocations` with `X-Amzn-SageMaker-Target-Model:
<model>.tar.gz`; pointing the runtime client at `--endpoint-url http://127.0.0.1:8080` reaches
the project's local MME endpoint the same way.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from deploy.aws import error_code, error_message
from deploy.errors import DeployError
from serving.common.retry import Attempts, Refused, RetryPolicy, call_with_retries, is_refusal

_IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"RIFF": ".webp"}


def invoke(
    runtime: Any,
    endpoint: str,
    target_model: str,
    body: bytes,
    content_type: str,
    *,
    inference_id: str | None = None,
    deadline_s: float | None = None,
    policy: RetryPolicy = RetryPolicy(),
    attempts: Attempts | None = None,
) -> tuple[bytes, str | None]:
    """Send one request; return (response body, response content type).

    Refusals (503, SageMaker's ServiceUnavailable/ThrottlingException, a model's 503) are
    retried with jittered backoff while `deadline_s` from now allows (serving/common/retry.py);
    the final refusal is a DeployError that says it was refused, and how often.
    """
    attempts = attempts if attempts is not None else Attempts()
    deadline = time.monotonic() + deadline_s if deadline_s is not None else None
    try:
        return call_with_retries(lambda _remaining: _invoke_once(runtime, endpoint, target_model, body, content_type,
                                                                 inference_id), deadline, policy, attempts=attempts)
    except Refused as exc:
        raise DeployError(f"model {target_model} on {endpoint} refused the request {attempts.refusals} time(s) "
                          f"(overloaded; retried with backoff within the {deadline_s or 0:g} s deadline): {exc}") from None


def refusal_of(exc: ClientError) -> Refused | None:
    """A Refused when the error means "overloaded, retry later", with the server's Retry-After."""
    resp = exc.response or {}
    meta = resp.get("ResponseMetadata", {}) or {}
    status = meta.get("HTTPStatusCode")
    original = resp.get("OriginalStatusCode")
    code = error_code(exc)
    message = str(resp.get("OriginalMessage") or error_message(exc))
    if not (is_refusal(status, message) or is_refusal(original, message) or is_refusal(code, message)
            or code == "ThrottlingException"):
        return None
    retry_after = (meta.get("HTTPHeaders", {}) or {}).get("retry-after")
    try:
        hint = float(retry_after) if retry_after else None
    except ValueError:
        hint = None
    return Refused(f"{code}: {error_message(exc)}", retry_after_s=hint, cause=exc)


def _invoke_once(runtime: Any, endpoint: str, target_model: str, body: bytes, content_type: str,
                 inference_id: str | None) -> tuple[bytes, str | None]:
    kwargs: dict[str, Any] = {
        "EndpointName": endpoint,
        "TargetModel": target_model,
        "Body": body,
        "ContentType": content_type,
    }
    if inference_id:
        kwargs["InferenceId"] = inference_id
    try:
        resp = runtime.invoke_endpoint(**kwargs)
    except ClientError as exc:
        refused = refusal_of(exc)
        if refused is not None:
            raise refused from None
        if error_code(exc) == "ModelError":
            # The container answered with an error; its text is the useful part.
            raise DeployError(f"model {target_model} on {endpoint} failed: {error_message(exc)}") from None
        raise DeployError(f"invoke {endpoint} ({target_model}) failed: {error_code(exc)}: {error_message(exc)}") from None
    return resp["Body"].read(), resp.get("ContentType")


def image_extension(data: bytes) -> str | None:
    for magic, ext in _IMAGE_MAGIC.items():
        if data.startswith(magic):
            return ext
    return None


def decoded_output(value: Any) -> tuple[bytes, str]:
    """An output element as bytes plus a file extension, base64-decoding images sent as text."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    ext = image_extension(raw)
    if ext:
        return raw, ext
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw, ".bin"
    ext = image_extension(decoded)
    return (decoded, ext) if ext else (raw, ".bin")


def save_outputs(outputs: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Write each BYTES output element to `<out_dir>/<name>_<i><ext>`; return the paths."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, arr in sorted(outputs.items()):
        if arr.dtype != np.object_:
            continue
        for i, value in enumerate(arr.flatten()):
            data, ext = decoded_output(value)
            path = directory / f"{name}_{i}{ext}"
            path.write_bytes(data)
            written.append(path)
    return written


def summarize(outputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Shape, dtype and a short preview of each output, for printing."""
    summary = {}
    for name, arr in sorted(outputs.items()):
        flat = arr.flatten()
        preview = [
            (v[:60] + (b"..." if len(v) > 60 else b"")).decode("utf-8", "replace") if isinstance(v, bytes)
            else (str(v)[:60] + ("..." if len(str(v)) > 60 else ""))
            for v in flat[:3]
        ]
        summary[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "preview": preview}
    return summary
