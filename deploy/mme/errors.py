"""Errors of the local MME, each with its container-API status and its SageMaker runtime shape.

Two audiences see an error: a caller of the container contract (`/models...`, statuses as
Triton's SageMaker front end: 400/404/409/507) and a boto3 `invoke_endpoint` caller, who gets
what botocore parses for sagemaker-runtime (rest-json): status + `x-amzn-ErrorType` header +
a JSON body `{"__type", "message"}`; `ModelError` (424) also carries `OriginalStatusCode` and
`OriginalMessage`, as SageMaker does when the container answered with an error.
"""

from __future__ import annotations

import json


class MMEError(Exception):
    status = 500  # container-API status
    sm_code = "InternalFailure"  # sagemaker-runtime error shape
    sm_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def container_body(self) -> bytes:
        return json.dumps({"error": self.message}).encode()

    def runtime_response(self) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for the sagemaker-runtime API."""
        doc = {"__type": self.sm_code, "message": self.message}
        return self.sm_status, {"x-amzn-ErrorType": self.sm_code}, json.dumps(doc).encode()


class BadRequest(MMEError):
    status, sm_code, sm_status = 400, "ValidationError", 400


class UnsafeTarball(BadRequest):
    """The tarball has a member that would escape the destination (or is otherwise refused)."""


class ModelNotFound(MMEError):
    """Not loaded (container API) / no such object under the model data URL (runtime API)."""
    status, sm_code, sm_status = 404, "ValidationError", 400


class AlreadyLoaded(MMEError):
    status, sm_code, sm_status = 409, "ValidationError", 400


class InsufficientMemory(MMEError):
    """The model does not fit the memory budget even with every idle model unloaded."""
    status, sm_code, sm_status = 507, "ModelError", 424

    def runtime_response(self) -> tuple[int, dict[str, str], bytes]:
        return ModelError(self.status, self.message).runtime_response()


class LoadFailed(MMEError):
    """Triton refused the model; `status` is 507 when it looks like memory/disk, else 400."""
    sm_code, sm_status = "ModelError", 424

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def runtime_response(self) -> tuple[int, dict[str, str], bytes]:
        return ModelError(self.status, self.message).runtime_response()


class TritonUnavailable(MMEError):
    status, sm_code, sm_status = 503, "ServiceUnavailable", 503


class Overloaded(MMEError):
    """The model refused the request before doing any work (Triton UNAVAILABLE: its queue is
    full, or the request timed out in it): 503 + Retry-After, which clients retry with backoff."""
    status, sm_code, sm_status = 503, "ServiceUnavailable", 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))

    def runtime_response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = super().runtime_response()
        return status, {**headers, "Retry-After": str(self.retry_after_s)}, body


class ModelError(MMEError):
    """The model (Triton) answered an invocation with an error status."""
    sm_code, sm_status = "ModelError", 424

    def __init__(self, original_status: int, original_message: str) -> None:
        kind = "client" if 400 <= original_status < 500 else "server"
        super().__init__(f'Received {kind} error ({original_status}) from model with message '
                         f'"{original_message}".')
        self.status = original_status
        self.original_status = original_status
        self.original_message = original_message

    def runtime_response(self) -> tuple[int, dict[str, str], bytes]:
        doc = {"__type": self.sm_code, "message": self.message,
               "OriginalStatusCode": self.original_status, "OriginalMessage": self.original_message}
        return self.sm_status, {"x-amzn-ErrorType": self.sm_code}, json.dumps(doc).encode()


_OOM_MARKERS = ("out of memory", "no space left", "cannot allocate memory", "std::bad_alloc",
                "memoryerror", "insufficient memory", "enospc")


def looks_like_oom(message: str) -> bool:
    """Triton's SageMaker front end answers 507 to load errors that read like OOM / full disk."""
    low = message.lower()
    return any(m in low for m in _OOM_MARKERS)
