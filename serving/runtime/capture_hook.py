"""Hand what each request saw and produced to monitoring: the request thread's whole share of capture.

`execute` calls `observe()` with the runtime's results. For each request it asks the
`monitoring.capture.Capturer` whether the request is sampled in (decided on its id, before
anything is built); for a kept request only, it wraps references to what the request already
computed (`ModelRuntime.contribution`: input image, probabilities, tapped embeddings) in a
`monitoring.capture.record.RequestCapture` and queues it. The Capturer's one worker thread
makes the records (`record_fields`, the one record function baselines use too) and writes the
spool segments the sidecar reads: one queue, one worker, one drop counter (the Capturer's).
"""

from __future__ import annotations

import uuid
from typing import Any

from monitoring.capture.record import RecordOptions, RequestCapture
from serving.runtime.errors import NonFiniteOutputError
from serving.runtime.models.base import ModelRuntime, RequestResult


def new_request_id() -> str:
    return uuid.uuid4().hex


class CaptureHook:
    """Queues one model's sampled-in requests, as `ModelRuntime.handle` answered them, for capture."""

    def __init__(self, runtime: ModelRuntime, model_version: str, capturer: Any,
                 served_name: str | None = None, options: RecordOptions | None = None):
        self.runtime = runtime
        self.served_name = served_name or runtime.name
        self.model_version = str(model_version)
        self.capturer = capturer
        self.enabled = bool(getattr(capturer, "enabled", False))
        self.options = options or RecordOptions.from_env()
        runtime.capture_embeddings = self.enabled

    # -- request path: a sampling decision per request, a queue put per kept one ----------------
    def observe(self, request_ids: list[str], results: list[RequestResult], arrival_ms: int,
                attributes: list[dict[str, str] | None] | None = None) -> None:
        """``attributes``: each request's validated segment attributes (None/empty: none)."""
        if not self.enabled:
            return
        attributes = attributes or [None] * len(results)
        for rid, result, attrs in zip(request_ids, results, attributes):
            records = 1 if result.error is not None else len(result.items)
            # `build` runs inside submit_request, only once the request is sampled in
            self.capturer.submit_request(rid, records, lambda rid=rid, result=result, attrs=attrs:
                                         self.request(rid, result, arrival_ms, attrs))

    def request(self, request_id: str, result: RequestResult, arrival_ms: int,
                attributes: dict[str, str] | None = None) -> RequestCapture:
        """One request for the capture worker: references to what it computed, nothing built yet."""
        context: dict[str, Any] = {
            "model": self.served_name, "model_version": self.model_version, "ts_ms": arrival_ms,
            "queue_ms": result.wait_ms, "compute_ms": result.compute_ms, "batch_size": result.batch_size,
        }
        if attributes:
            context["segment_attrs"] = attributes
        if result.error is not None:
            # `expired`: dropped before its pipeline call because the caller's deadline passed
            error = {"outcome": "expired" if result.expired else "error", "error_code": result.error.code,
                     "error_message": str(result.error)[:1000],
                     "output_nonfinite": True if isinstance(result.error, NonFiniteOutputError) else None}
            return RequestCapture(request_id, context, error=error, options=self.options)
        rows = [self.runtime.contribution(item, out) for item, out in zip(result.items, result.item_outputs)]
        return RequestCapture(request_id, context, rows=rows, options=self.options)

    def records(self, request_ids: list[str], results: list[RequestResult], arrival_ms: int,
                attributes: list[dict[str, str] | None] | None = None) -> list[dict[str, Any]]:
        """The records these requests make, built here (for tests and tools; serving builds them
        on the capture worker through the same `RequestCapture.records`)."""
        attributes = attributes or [None] * len(results)
        return [rec for rid, result, attrs in zip(request_ids, results, attributes)
                for rec in self.request(rid, result, arrival_ms, attrs).records()]

    def counters(self) -> dict[str, int]:
        """The capturer's counters (`dropped` is the one drop counter between request and spool)."""
        return self.capturer.counters()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> bool:
        """Flush and close the capturer: every queued request reaches the spool (graceful stop)."""
        return bool(self.capturer.close(timeout=timeout))
