"""The two load modes, like Triton's perf_analyzer.

* Closed loop (`run_concurrency_step`): N workers each send a request, wait for its answer and
  send the next. Throughput at saturation; but a slow server slows the senders down, which
  hides queueing delay from the latencies (coordinated omission).
* Open loop (`run_rate_step`): arrival times are fixed up front (constant spacing or Poisson
  with a seed) and each request is issued at its scheduled time from a thread pool, whether or
  not earlier ones have been answered. Latency is measured from the *scheduled* time, so time a
  request spent waiting for a free sender or in the server's queue counts; how late sends were
  is reported as `max_send_lag_ms`.

Both stop early and cleanly when `stop` (a threading.Event) is set: no new request is sent,
requests in flight are awaited (bounded by the transport's timeout), and the step is marked
`interrupted`. Counts always balance: `sent == ok + errors`.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from bench.loadtest.payloads import Payload
from bench.loadtest.stats import latency_summary, server_delta
from bench.loadtest.transports import RequestFailed

MAX_CONCURRENCY = 512
MAX_RATE = 5000.0
MAX_REQUESTS_PER_STEP = 1_000_000


class Transport(Protocol):
    def send(self, payload: Payload) -> Any: ...  # transports return serving.common.retry.Attempts


@dataclass
class RequestRecord:
    index: int
    scheduled: float | None  # perf_counter time it was due (open loop), None in closed loop
    started: float  # perf_counter time the send began
    finished: float
    error: str | None
    injected: str | None
    attempts: int = 1
    refusal_latencies: tuple[float, ...] = ()  # seconds each refused attempt took to be answered
    expired_answers: int = 0  # attempts the runtime answered "request expired" (Triton: a success)


class Recorder:
    """Thread-safe counters and per-request records of one step; read by the progress display."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[RequestRecord] = []
        self.sent = 0
        self.ok = 0
        self.errors = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.started_at = time.perf_counter()

    def begin(self) -> None:
        with self.lock:
            self.sent += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, rec: RequestRecord) -> None:
        with self.lock:
            self.in_flight -= 1
            self.records.append(rec)
            if rec.error is None:
                self.ok += 1
            else:
                self.errors += 1

    def progress(self) -> dict[str, Any]:
        with self.lock:
            recent = [r.finished - (r.scheduled if r.scheduled is not None else r.started)
                      for r in self.records[-200:] if r.error is None]
            elapsed = time.perf_counter() - self.started_at
            return {"sent": self.sent, "ok": self.ok, "errors": self.errors, "in_flight": self.in_flight,
                    "elapsed_s": elapsed, "rps": self.ok / elapsed if elapsed > 0 else 0.0,
                    "p50_ms": float(np.percentile(recent, 50)) * 1000 if recent else None}


def _issue(transport: Transport, payload: Payload, recorder: Recorder, scheduled: float | None) -> None:
    recorder.begin()
    started = time.perf_counter()
    error, info = None, None
    try:
        info = transport.send(payload)
    except RequestFailed as exc:
        error, info = exc.kind, exc.attempts
    except Exception as exc:  # a bug or an unexpected client error still counts, by type
        error = f"client:{type(exc).__name__}"
    recorder.end(RequestRecord(payload.index, scheduled, started, time.perf_counter(), error, payload.expected_error,
                               attempts=getattr(info, "count", 1) or 1,
                               refusal_latencies=tuple(getattr(info, "refusal_latencies_s", ())),
                               expired_answers=getattr(info, "expired", 0)))


def arrival_offsets(rate: float, duration_s: float, max_requests: int | None, arrival: str = "constant",
                    seed: int = 0) -> list[float]:
    """Seconds from the step's start at which each request is due, within `duration_s`."""
    if rate <= 0 or rate > MAX_RATE:
        raise ValueError(f"rate {rate} must be within (0, {MAX_RATE}]")
    cap = min(max_requests or MAX_REQUESTS_PER_STEP, MAX_REQUESTS_PER_STEP)
    if arrival == "constant":
        n = min(cap, max(1, int(math.floor(rate * duration_s + 1e-9))))
        return [k / rate for k in range(n)]
    if arrival != "poisson":
        raise ValueError(f"arrival {arrival!r}: constant or poisson")
    rng = np.random.default_rng(seed)
    out: list[float] = []
    t = 0.0
    while len(out) < cap:
        if out:
            t += float(rng.exponential(1.0 / rate))
        if t >= duration_s and out:
            break
        out.append(t)
    return out


def overload_summary(recs: list[RequestRecord], ok: int, server: dict | None) -> dict[str, Any]:
    """Refusals apart from errors and timeouts, and the work the server did for nobody."""
    refusal_lat = [x for r in recs for x in r.refusal_latencies]
    out: dict[str, Any] = {
        "refused": sum(1 for r in recs if r.error == "refused"),  # still refused after its retries
        "timeouts": sum(1 for r in recs if r.error == "timeout"),
        "other_errors": sum(1 for r in recs if r.error not in (None, "refused", "timeout")),
        "attempts": sum(r.attempts for r in recs),
        "refused_attempts": len(refusal_lat),
        "ok_after_retry": sum(1 for r in recs if r.error is None and r.attempts > 1),
        "refusal_latency_ms": latency_summary(refusal_lat),
        "server_successes": None, "work_for_nobody": None, "work_for_nobody_fraction": None,
    }
    # Answers the model process gave without computing (expired deadlines, bad input, its own
    # errors): Triton's statistics count them as successes too.
    backend_answers = sum(r.expired_answers for r in recs) + sum(
        1 for r in recs if r.error is not None and r.error.split(":")[0] in ("invalid_arg", "internal", "unavailable"))
    out["expired_answers"] = sum(r.expired_answers for r in recs)
    if server is not None:
        # Computed, but the caller had gone (timed out) or never got it: server successes minus
        # client successes (each client success is one server success) minus backend error answers.
        done = server.get("success_count", 0)
        nobody = max(0, done - ok - backend_answers)
        out["server_successes"] = done
        out["work_for_nobody"] = nobody
        out["work_for_nobody_fraction"] = round(nobody / done, 4) if done else 0.0
    return out


def queue_after(settled: dict | None, load_end: float) -> dict[str, Any] | None:
    """`QueueProbe.settle()`'s times as seconds after the load stopped (the last scheduled send)."""
    if settled is None:
        return None
    rel = lambda t, t0=load_end: round(t - t0, 3) if t is not None else None  # noqa: E731
    last = settled.get("settle_started_at")
    # Callers who retry refusals keep offering load until their deadline, after the last
    # scheduled send: the queue's drain is also timed from the last caller's answer.
    return {"pending_at_end": settled.get("pending_at_end"),
            "last_answer_after_load_s": rel(last),
            "drained_after_load_s": rel(settled.get("drained_at")),
            "idle_after_load_s": rel(settled.get("idle_at")),
            "drained_after_last_answer_s": rel(settled.get("drained_at"), last) if last is not None else None,
            "idle_after_last_answer_s": rel(settled.get("idle_at"), last) if last is not None else None}


def _finish(kind: str, recorder: Recorder, t0: float, extra: dict[str, Any], interrupted: bool,
            before: dict | None, after: dict | None) -> dict[str, Any]:
    recs = recorder.records
    end = max((r.finished for r in recs), default=time.perf_counter())
    elapsed = max(end - t0, 1e-9)
    ok = [r for r in recs if r.error is None]
    errors_by_kind: dict[str, int] = {}
    injected: dict[str, int] = {}
    for r in recs:
        if r.error is not None:
            errors_by_kind[r.error] = errors_by_kind.get(r.error, 0) + 1
        if r.injected is not None:
            injected[r.injected] = injected.get(r.injected, 0) + 1
    step = {
        "mode": kind, **extra,
        "duration_s": round(elapsed, 4),
        "sent": recorder.sent, "completed": len(recs), "ok": len(ok), "errors": recorder.errors,
        "errors_by_kind": dict(sorted(errors_by_kind.items())),
        "injected_bad": dict(sorted(injected.items())),
        "throughput_rps": round(len(ok) / elapsed, 4),
        "completed_rps": round(len(recs) / elapsed, 4),
        "max_in_flight": recorder.max_in_flight,
        "latency_ms": latency_summary([r.finished - (r.scheduled if r.scheduled is not None else r.started)
                                       for r in ok]),
        "interrupted": interrupted,
        "server": server_delta(before, after),
    }
    step["overload"] = overload_summary(recs, len(ok), step["server"])
    if kind == "rate":
        lags = [r.started - r.scheduled for r in recs if r.scheduled is not None]
        step["service_latency_ms"] = latency_summary([r.finished - r.started for r in ok])
        step["max_send_lag_ms"] = round(max(lags) * 1000, 3) if lags else None
        step["mean_send_lag_ms"] = round(sum(lags) / len(lags) * 1000, 3) if lags else None
    step["_records"] = [
        {"index": r.index,
         "scheduled_ms": round((r.scheduled - t0) * 1000, 3) if r.scheduled is not None else None,
         "start_ms": round((r.started - t0) * 1000, 3),
         "latency_ms": round((r.finished - (r.scheduled if r.scheduled is not None else r.started)) * 1000, 3),
         "service_ms": round((r.finished - r.started) * 1000, 3),
         "error": r.error, "injected": r.injected, "attempts": r.attempts}
        for r in sorted(recs, key=lambda r: r.index)]
    return step


def run_concurrency_step(transport: Transport, payloads: Callable[[int], Payload], concurrency: int, *,
                         duration_s: float, max_requests: int | None = None, first_index: int = 0,
                         stop: threading.Event | None = None, stats: Any = None,
                         recorder: Recorder | None = None, settle: Callable[[], dict] | None = None) -> dict[str, Any]:
    """Closed loop: `concurrency` workers send back to back until the duration or count is reached."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency {concurrency} must be within [1, {MAX_CONCURRENCY}]")
    stop = stop or threading.Event()
    recorder = recorder or Recorder()
    cap = min(max_requests or MAX_REQUESTS_PER_STEP, MAX_REQUESTS_PER_STEP)
    lock = threading.Lock()
    issued = [0]
    before = stats.snapshot() if stats else None
    t0 = recorder.started_at = time.perf_counter()
    deadline = t0 + duration_s

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if issued[0] >= cap or time.perf_counter() >= deadline:
                    return
                i = first_index + issued[0]
                issued[0] += 1
            _issue(transport, payloads(i), recorder, None)

    threads = [threading.Thread(target=worker, name=f"loadtest-{k}", daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue = queue_after(settle() if settle else None, time.perf_counter())
    after = stats.snapshot() if stats else None
    return _finish("concurrency", recorder, t0, {"concurrency": concurrency, "target_rps": None, "queue_after": queue},
                   stop.is_set(), before, after)


def run_rate_step(transport: Transport, payloads: Callable[[int], Payload], rate: float, *,
                  duration_s: float, max_requests: int | None = None, arrival: str = "constant",
                  seed: int = 0, max_workers: int = 128, first_index: int = 0,
                  stop: threading.Event | None = None, stats: Any = None,
                  recorder: Recorder | None = None, lead_s: float = 0.05,
                  settle: Callable[[], dict] | None = None) -> dict[str, Any]:
    """Open loop: requests are issued at scheduled times whatever the server's pace."""
    if not 1 <= max_workers <= 4096:
        raise ValueError(f"max_workers {max_workers} must be within [1, 4096]")
    offsets = arrival_offsets(rate, duration_s, max_requests, arrival, seed)
    stop = stop or threading.Event()
    recorder = recorder or Recorder()
    # Build payloads before the clock starts: encoding must not delay the schedule.
    prepared = [payloads(first_index + k) for k in range(len(offsets))]
    before = stats.snapshot() if stats else None
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="loadtest")
    t0 = recorder.started_at = time.perf_counter() + lead_s
    dispatched = 0
    try:
        for off, payload in zip(offsets, prepared):
            due = t0 + off
            while (wait := due - time.perf_counter()) > 0:
                if stop.wait(wait):
                    break
            if stop.is_set():
                break
            pool.submit(_issue, transport, payload, recorder, due)
            dispatched += 1
    finally:
        # Requests still queued for a free worker were never sent: drop them on a stop.
        pool.shutdown(wait=True, cancel_futures=stop.is_set())
    # The server may still hold work for callers who gave up: wait for its queue to drain (and
    # time it) before the statistics snapshot, so that work counts in this step.
    queue = queue_after(settle() if settle else None, t0 + (offsets[-1] if offsets else 0.0))
    after = stats.snapshot() if stats else None
    extra = {"concurrency": None, "target_rps": rate, "queue_after": queue, "arrival": arrival, "scheduled": len(offsets),
             "dispatched": dispatched, "not_sent": len(offsets) - recorder.sent,
             "schedule_span_s": round(offsets[-1], 4) if offsets else 0.0, "max_workers": max_workers}
    return _finish("rate", recorder, t0, extra, stop.is_set(), before, after)
