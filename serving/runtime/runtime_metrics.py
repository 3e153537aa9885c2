"""Failure counters of a model process on Triton's own /metrics (:8002), as custom metrics.

`ModelRuntime.counters` counts what a GPU host must alert on and Triton's built-in metrics
cannot see: outputs turned into errors because they were NaN/inf, out-of-memory errors, and
cached-memory releases (docs/gpu.md).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

NAMES = {
    "nonfinite_outputs": ("pipeline_nonfinite_outputs_total", "Pipeline calls whose output had NaN/inf pixels (answered with an error)"),
    "out_of_memory": ("pipeline_out_of_memory_total", "Pipeline calls that ran out of memory"),
    "memory_releases": ("pipeline_memory_releases_total", "Times cached GPU memory was released (after OOM or a large request)"),
    "expired": ("pipeline_expired_requests_total", "Requests dropped before their pipeline call because the caller's deadline_ms had passed"),
    "finished_late": ("pipeline_late_results_total", "Requests whose pipeline call ended after the caller's deadline_ms (work for nobody)"),
}


class RuntimeMetrics:
    """Publishes the increase of each runtime counter since the last `update()`."""

    def __init__(self, pb_utils: Any, model: str, version: str, runtime: Any):
        self.runtime = runtime
        self.metrics: dict[str, Any] = {}
        self.families: list[Any] = []  # Triton deletes a family's metrics with it: keep both alive
        self.last = {key: 0 for key in NAMES}
        if not hasattr(pb_utils, "MetricFamily"):
            return
        for key, (name, text) in NAMES.items():
            family = pb_utils.MetricFamily(name=name, description=text, kind=pb_utils.MetricFamily.COUNTER)
            self.families.append(family)
            self.metrics[key] = family.Metric(labels={"model": model, "version": str(version)})

    def update(self) -> None:
        try:
            for key, metric in self.metrics.items():
                value = self.runtime.counters.get(key, 0)
                if value > self.last[key]:  # rare events: one core round trip only when they happen
                    metric.increment(value - self.last[key])
                    self.last[key] = value
        except Exception:  # metrics must never fail a request
            log.exception("updating runtime metrics failed")
