"""Latency percentiles, and Triton's server-side timings from its statistics API.

Triton keeps cumulative counters per model (`GET /v2/models/<m>/stats`): how many requests
succeeded and how long they spent queued, in input handling, in `execute`, and in output
handling. A step's server-side figures are the difference between a snapshot before and one
after the step, divided by the difference in counts.
"""

from __future__ import annotations

import math
import time
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


def pending_from_metrics(text: str, model: str) -> int | None:
    """Triton's `nv_inference_pending_request_count` of `model` (all versions) from /metrics text."""
    total, found = 0, False
    for line in text.splitlines():
        if line.startswith("nv_inference_pending_request_count{") and f'model="{model}"' in line:
            try:
                total += int(float(line.rsplit(" ", 1)[1]))
                found = True
            except (IndexError, ValueError):
                continue
    return total if found else None


class QueueProbe:
    """The model's queue after the load: how many requests were still waiting when the last
    caller was answered or gave up, and when the server had finished with all of them."""

    def __init__(self, metrics_url: str, model: str, stats: ServerStats | None = None, max_wait_s: float = 120.0):
        self.url = metrics_url if metrics_url.startswith("http") else f"http://{metrics_url}"
        self.model, self.stats, self.max_wait_s = model, stats, max_wait_s

    def pending(self) -> int | None:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
                return pending_from_metrics(r.read().decode(errors="replace"), self.model)
        except OSError:
            return None

    def _done_count(self) -> tuple[int, float] | None:
        snap = self.stats.snapshot() if self.stats else None
        if snap is None:
            return None
        execs = max(1, snap.get("execution_count", 0))
        return snap.get("success_count", 0) + snap.get("fail_count", 0), snap.get("compute_infer_ns", 0) / execs / 1e9

    def settle(self) -> dict[str, Any]:
        """Poll until the queue is empty and no execution is finishing (counts stable for twice
        the mean execution time, at least 1 s); return the queue at the start and when it drained."""
        start = time.perf_counter()
        first = self.pending()
        deadline = start + self.max_wait_s
        drained_at = None
        while time.perf_counter() < deadline:
            n = self.pending()
            if n is None:
                break
            if n == 0:
                drained_at = time.perf_counter()
                break
            time.sleep(0.05)  # polling a server we do not control
        idle_at = drained_at
        if drained_at is not None and self.stats is not None:
            last, stable_since = self._done_count(), time.perf_counter()
            while last is not None and time.perf_counter() < deadline:
                quiet = max(1.0, 2 * last[1])
                time.sleep(0.1)
                now = self._done_count()
                if now is None:
                    break
                if now[0] != last[0]:
                    last, stable_since = now, time.perf_counter()
                    idle_at = stable_since
                elif time.perf_counter() - stable_since >= quiet:
                    break
        return {"pending_at_end": first, "drained_at": drained_at, "idle_at": idle_at,
                "settle_started_at": start}
