"""Latency percentiles, and Triton's server-side timings from its statistics API.

Triton keeps cumulative counters per model (`GET /v2/models/<m>/stats`): how many requests
succeeded and how long they spent queued, in input handling, in `execute`, and in output
handling. A step's server-side figures are the difference between a snapshot before and one
after the step, divided by the difference in counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)
STAT_KEYS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def latency_summary(values_s: list[float]) -> dict[str, float | None]:
    """min/mean/p50/p90/p95/p99/max in milliseconds (None when there are no values)."""
    keys = ["min", "mean"] + [f"p{p}" for p in PERCENTILES] + ["max"]
    if not values_s:
        return {k: None for k in keys}
    a = np.asarray(values_s, dtype=np.float64) * 1000.0
    out = {"min": float(a.min()), "mean": float(a.mean())}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(a, p))
    out["max"] = float(a.max())
    return {k: round(v, 3) for k, v in out.items()}


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def flatten_model_stats(doc: dict, model: str) -> dict[str, int] | None:
    """Cumulative counters of `model` from a statistics response (HTTP JSON or gRPC as_json)."""
    for entry in doc.get("model_stats", []) or []:
        if entry.get("name") != model:
            continue
        inf = entry.get("inference_stats", {}) or {}
        out = {"inference_count": _int(entry.get("inference_count")),
               "execution_count": _int(entry.get("execution_count"))}
        for key in STAT_KEYS:
            s = inf.get(key, {}) or {}
            out[f"{key}_count"] = _int(s.get("count"))
            out[f"{key}_ns"] = _int(s.get("ns"))
        return out
    return None


class ServerStats:
    """Snapshots of one model's statistics through tritonclient (HTTP or gRPC)."""

    def __init__(self, url: str, protocol: str, model: str):
        self.url, self.protocol, self.model = url, protocol, model
        if protocol == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        self._client = tc.InferenceServerClient(url=url)

    def snapshot(self) -> dict[str, int] | None:
        try:
            if self.protocol == "grpc":
                doc = self._client.get_inference_statistics(self.model, as_json=True)
            else:
                doc = self._client.get_inference_statistics(self.model)
        except Exception:
            return None
        return flatten_model_stats(doc, self.model)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass


def _avg_ms(d: dict[str, int], key: str) -> float | None:
    n = d.get(f"{key}_count", 0)
    return round(d[f"{key}_ns"] / n / 1e6, 3) if n > 0 else None


def server_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, Any] | None:
    """What the server saw during a step: counts, mean queue/compute times, mean batch size."""
    if before is None or after is None:
        return None
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    execs = d.get("execution_count", 0)
    return {
        "success_count": d.get("success_count", 0),
        "fail_count": d.get("fail_count", 0),
        "inference_count": d.get("inference_count", 0),
        "execution_count": execs,
        "avg_batch_size": round(d.get("inference_count", 0) / execs, 3) if execs > 0 else None,
        "request_ms": _avg_ms(d, "success"),
        "queue_ms": _avg_ms(d, "queue"),
        "compute_input_ms": _avg_ms(d, "compute_input"),
        "compute_infer_ms": _avg_ms(d, "compute_infer"),
        "compute_output_ms": _avg_ms(d, "compute_output"),
    }


def finite(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
