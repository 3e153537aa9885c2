"""A burst far above capacity against the real tritonserver: fast refusals, nothing computed
for a caller who has gone, and a server that is ready and idle right after."""

from __future__ import annotations

import threading

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.runtime.capacity.admission import instance_count, max_batch_size, read_policy
from serving.runtime.deadline import now_ms
from bench.loadtest.stats import pending_from_metrics
from serving.common.retry import is_refusal
from tests.conftest import png, wait_for
from tests.serving.overload.conftest import MODEL, all_waiting_one_queued, baton_held, counter, inputs, metrics

# `server` (tests/serving/overload/conftest.py): this file's own tritonserver, sd_img2img alone.


def call(server, protocol: str, steps: int, seed: int, results: list, rows: int = 1, **kw) -> None:
    tc = grpcclient if protocol == "grpc" else httpclient
    client = tc.InferenceServerClient(url=server.grpc_url if protocol == "grpc" else server.http_url)
    try:
        client.infer(MODEL, inputs(tc, steps, seed, rows), **kw)
        results.append((protocol, "ok", None))
    except InferenceServerException as exc:
        results.append((protocol, str(exc.status()), exc.message()))
    finally:
        client.close()


def test_burst_is_refused_fast_expired_work_is_dropped_and_the_server_recovers(server, model_repo):
    config = (model_repo / MODEL / "config.pbtxt").read_text()
    queue_size = int(read_policy(config)["max_queue_size"])
    batch, n = max_batch_size(config), instance_count(config)
    before = metrics(server)
    expired0 = counter(before, "pipeline_expired_requests_total")
    late0 = counter(before, "pipeline_late_results_total")

    # 1. Occupy every instance while the test holds the compute baton: a full batch (one request
    #    of max_batch_size rows) per instance, each held in execution (for Triton, not queued)
    #    while it waits for the baton, and one more request in the queue; every later request
    #    waits until the test lets go, however long the host takes to send them.
    long, short, burst, threads = [], [], [], []
    with baton_held(server):
        for i, rows in enumerate([batch] * n + [1]):
            threads.append(threading.Thread(target=call, args=(server, "http", 2, i, long), kwargs={"rows": rows}))
            threads[-1].start()
        wait_for(lambda: all_waiting_one_queued(server, n), 120, "a batch in execution on every instance, one queued")

        # 2. Fill the queue with callers who give up in 200 ms and only say so with deadline_ms (no
        #    Triton timeout): they are still queued when the baton is let go, so the runtime must drop them.
        deadline_ms = now_ms() + 200
        for i in range(queue_size - 1):
            threads.append(threading.Thread(target=call, args=(server, "http", 20, 100 + i, short),
                                            kwargs={"parameters": {"deadline_ms": deadline_ms}}))
            threads[-1].start()
        wait_for(lambda: pending_from_metrics(metrics(server), MODEL) == queue_size, 60, "the queue to be full")

        # 3. The burst, far above what the queue holds, over both protocols: every one answered
        #    while nothing can leave the queue.
        for i in range(40):
            protocol = "grpc" if i % 2 else "http"
            threads.append(threading.Thread(target=call, args=(server, protocol, 20, 200 + i, burst)))
            threads[-1].start()
        for t in threads[n + queue_size:]:
            t.join(timeout=300)
            assert not t.is_alive(), "a refusal never came"
        assert not long and not short, "a request left the queue while the baton was held"
        wait_for(lambda: now_ms() > deadline_ms, 10, "the queued callers' deadline to pass")
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a request was never answered"

    assert [r[1] for r in long] == ["ok"] * (n + 1)
    # Refusals: UNAVAILABLE over gRPC, 503 over HTTP, each a recognised refusal, all of the burst.
    assert len(burst) == 40
    for protocol, status, message in burst:
        assert status == ("StatusCode.UNAVAILABLE" if protocol == "grpc" else "503"), (protocol, status, message)
        assert is_refusal(status, message), message
    # The expired ones: refused by the runtime before computing anything for them.
    for protocol, status, message in short:
        assert status == "503" and "request expired" in message, message
    after = wait_for(lambda: (m := metrics(server)) and pending_from_metrics(m, MODEL) == 0 and m, 60,
                     "the queue to drain")
    assert len(short) == queue_size - 1
    assert counter(after, "pipeline_expired_requests_total") - expired0 == queue_size - 1
    # Nothing was computed for a caller who had gone: no call finished after its caller's deadline.
    assert counter(after, "pipeline_late_results_total") - late0 == 0

    # Ready and idle right after: empty queue, and a new request is served at once.
    client = httpclient.InferenceServerClient(server.http_url)
    try:  # an open connection would hold the server's stop for its whole exit timeout
        assert client.is_server_ready() and client.is_model_ready(MODEL)
        fresh = []
        call(server, "http", 2, 999, fresh)
        assert fresh == [("http", "ok", None)]
    finally:
        client.close()


def test_client_retries_refusals_within_its_deadline_then_gets_through(server, model_repo):
    from serving.launch.client import build_inputs, infer
    from serving.common.retry import Attempts, RetryPolicy

    config = (model_repo / MODEL / "config.pbtxt").read_text()
    queue_size, batch, n = int(read_policy(config)["max_queue_size"]), max_batch_size(config), instance_count(config)
    busy, threads = [], []
    # While the test holds the compute baton: a batch in execution on each instance (each waiting
    # for the baton), the queue full behind them. n full batches and one single first: one request
    # waits only once every instance holds a batch, whichever of them arrived first (the single
    # cannot join a full batch); then the rest.
    with baton_held(server):
        for i, rows in enumerate([batch] * n + [1] * queue_size):
            threads.append(threading.Thread(target=call, args=(server, "http", 2, 300 + i, busy), kwargs={"rows": rows}))
            threads[-1].start()
            if i == n:
                wait_for(lambda: all_waiting_one_queued(server, n), 120,
                         "a batch in execution on every instance and one request queued")
        wait_for(lambda: pending_from_metrics(metrics(server), MODEL) == queue_size, 60, "the queue to be full")

        inputs = build_inputs(MODEL, prompt="a boat", image=png(64, 7), gen_args={"num_inference_steps": 2, "seed": 1})
        short = Attempts()
        with pytest.raises(InferenceServerException) as e:
            infer(MODEL, inputs, url=server.http_url, deadline_s=0.3, attempts=short)
        assert is_refusal(e.value.status(), e.value.message()), e.value.message()
        assert short.refusals >= 1 and short.count == short.refusals  # refused each time, retried within 0.3 s
        assert not busy, "a request left the queue while the baton was held"

        # A patient caller (as many attempts as its deadline allows) is refused while the queue
        # stays full, and gets through once the instances can compute again.
        patient, answer = Attempts(), {}
        def patient_call() -> None:
            answer["out"] = infer(MODEL, inputs, url=server.http_url, deadline_s=120, attempts=patient,
                                  policy=RetryPolicy(max_attempts=1000, cap_s=0.5))
        threads.append(threading.Thread(target=patient_call))
        threads[-1].start()
        wait_for(lambda: patient.refusals >= 2, 60, "the patient caller to be refused twice")
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a request was never answered"
    assert answer["out"]["generated_image"].shape == (1, 1)
    assert patient.count == patient.refusals + 1  # refusals, then one success
    assert [r[1] for r in busy] == ["ok"] * (queue_size + n)
