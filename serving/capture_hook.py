"""Hand what each request saw and produced to monitoring, off the request path.

`execute` calls `observe()` with the runtime's results; that only puts a reference on a
bounded queue (dropping and counting when full). A worker thread asks the runtime what each
item contributes (`ModelRuntime.contribution`), turns that into record fields with the one
record function (`monitoring.capture.record.record_fields`, which baselines use too), and
submits the records to the `monitoring.capture.Capturer`, whose own thread writes spool
segments for the sidecar.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any

from monitoring.capture.priority import lower_current_thread_priority
from monitoring.capture.record import RecordOptions, record_fields
from serving.errors import NonFiniteOutputError
from serving.runtimes.base import ModelRuntime, RequestResult

log = logging.getLogger(__name__)


def new_request_id() -> str:
    return uuid.uuid4().hex


class CaptureHook:
    """Builds capture records for one model from the results of `ModelRuntime.handle`."""

    def __init__(self, runtime: ModelRuntime, model_version: str, capturer: Any, queue_size: int = 1024,
                 served_name: str | None = None, options: RecordOptions | None = None):
        self.runtime = runtime
        self.served_name = served_name or runtime.name
        self.model_version = str(model_version)
        self.capturer = capturer
        self.enabled = bool(getattr(capturer, "enabled", False))
        self.options = options or RecordOptions.from_env()
        self.dropped = 0
        runtime.capture_embeddings = self.enabled
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = None
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name=f"capture-hook-{runtime.name}", daemon=True)
            self._thread.start()

    # -- request path: a queue put, nothing else ---------------------------------------------
    def observe(self, request_ids: list[str], results: list[RequestResult], arrival_ms: int,
                attributes: list[dict[str, str] | None] | None = None) -> None:
        """``attributes``: each request's validated segment attributes (None/empty: none)."""
        if not self.enabled:
            return
        try:
            self._q.put_nowait((request_ids, results, arrival_ms, attributes))
        except queue.Full:
            self.dropped += len(results)

    # -- worker thread -------------------------------------------------------------------------
    def _run(self) -> None:
        lower_current_thread_priority()
        while True:
            job = self._q.get()
            if job is None:
                self._q.task_done()
                return
            try:
                for record in self.records(*job):
                    self.capturer.submit(record)
            except Exception:  # monitoring must never take the model down
                log.exception("building capture records failed")
            finally:
                self._q.task_done()

    def records(self, request_ids: list[str], results: list[RequestResult], arrival_ms: int,
                attributes: list[dict[str, str] | None] | None = None):
        attributes = attributes or [None] * len(results)
        for rid, result, attrs in zip(request_ids, results, attributes):
            base = {
                "model": self.served_name, "model_version": self.model_version, "ts_ms": arrival_ms,
                "queue_ms": result.wait_ms, "compute_ms": result.compute_ms, "batch_size": result.batch_size,
            }
            if attrs:
                base["segment_attrs"] = attrs
            if result.error is not None:
                # `expired`: dropped before its pipeline call because the caller's deadline passed
                yield dict(base, request_id=rid, outcome="expired" if result.expired else "error", error_code=result.error.code,
                           error_message=str(result.error)[:1000],
                           output_nonfinite=True if isinstance(result.error, NonFiniteOutputError) else None)
                continue
            rows = len(result.items)
            for row, (item, out) in enumerate(zip(result.items, result.item_outputs)):
                rec = dict(base, request_id=rid if rows == 1 else f"{rid}:{row}", outcome="ok")
                rec.update(record_fields(self.runtime.contribution(item, out), self.options))
                yield rec

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> bool:
        """Build every queued record, then flush and close the capturer (graceful stop: no loss)."""
        if self._thread is not None:
            deadline = time.monotonic() + timeout
            self._q.put(None)
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return bool(self.capturer.close(timeout=timeout))
