"""Request parameters against the real tritonserver: a batch-mate refused for a bad parameter is
not computed, and the deadline header form reaches the model over HTTP and gRPC."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from monitoring.capture.segments import SEGMENT_SUFFIX, read_segment
from serving.runtime.capacity.admission import instance_count
from serving.runtime.deadline import HEADER, now_ms
from bench.loadtest.stats import pending_from_metrics
from tests.conftest import wait_for
from tests.serving.overload.conftest import MODEL, all_waiting_one_queued, baton_held, counter, inputs, metrics

IMAGE_SEED = 3  # every request here sends the same image: png(64, 3)


@pytest.fixture(scope="module")
def spool(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("params-spool")


@pytest.fixture(scope="module")
def server_env(spool) -> dict[str, str]:
    """This file's server (`server`, tests/serving/overload/conftest.py) captures into `spool`."""
    return {"CAPTURE_SPOOL_DIR": str(spool), "CAPTURE_FLUSH_INTERVAL_S": "0.2"}


def call(server, results: dict, key: str, steps: int, rows: int = 1, **kw) -> None:
    client = httpclient.InferenceServerClient(url=server.http_url)
    try:
        out = client.infer(MODEL, inputs(httpclient, steps, 7, rows, image_seed=IMAGE_SEED), request_id=key, **kw)
        results[key] = ("ok", out.as_numpy("generated_image"))
    except InferenceServerException as exc:
        results[key] = (str(exc.status()), exc.message())
    finally:
        client.close()


def captured(spool: Path) -> dict[str, dict]:
    out = {}
    for path in spool.rglob(f"*{SEGMENT_SUFFIX}"):
        for rec in read_segment(str(path)).records:
            out[rec["request_id"]] = rec
    return out


def batch_count(client, size: int) -> int:
    stats = client.get_inference_statistics(MODEL)["model_stats"][0]
    return sum(int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", []) if int(b["batch_size"]) == size)


def test_batch_mate_with_a_bad_parameter_gets_its_error_and_is_not_computed(server, spool, model_repo):
    client = httpclient.InferenceServerClient(url=server.http_url)
    try:  # an open connection would hold the server's stop for its whole exit timeout
        check_batch_mates(server, spool, client, instance_count((model_repo / MODEL / "config.pbtxt").read_text()))
    finally:
        client.close()


def check_batch_mates(server, spool: Path, client, n: int) -> None:
    pairs0, singles0 = batch_count(client, 2), batch_count(client, 1)
    results: dict = {}
    # 1. While the test holds the compute baton, occupy every one of the n instances with a full
    #    batch (each held in execution while it waits for the baton) and queue one more full batch.
    #    The next two requests queue behind it; no full batch has room for them, so they leave the
    #    queue together: one execute() call.
    keys = ["busy", *(f"filler-{i}" for i in range(n))]
    long = [threading.Thread(target=call, args=(server, results, key, 2), kwargs={"rows": 4}) for key in keys]
    with baton_held(server):
        for t in long:
            t.start()
        wait_for(lambda: all_waiting_one_queued(server, n), 120, "a batch in execution on every instance, one queued")
        # 2. Two requests with the same inputs (they would share one pipeline call), one of them
        #    with an image_encoding the server does not know.
        mates = [threading.Thread(target=call, args=(server, results, "good", 2)),
                 threading.Thread(target=call, args=(server, results, "bad", 2),
                                  kwargs={"parameters": {"image_encoding": "bogus"}})]
        for t in mates:
            t.start()
        wait_for(lambda: pending_from_metrics(metrics(server), MODEL) == 3, 120, "both requests queued behind the batches")
        assert not results, "a request left the queue while the baton was held"
    for t in (*long, *mates):
        t.join(timeout=300)
        assert not t.is_alive(), "a request was never answered"

    assert [results[key][0] for key in keys] == ["ok"] * (n + 1)
    assert results["good"][0] == "ok" and results["good"][1].shape == (1, 1)
    status, message = results["bad"]
    assert status == "400" and "image_encoding" in message and "bogus" in message, results["bad"]
    # The backend reports an execution's batch statistics after its responses are sent: a
    # client can hold both answers before the server counts the batch. Wait until it is counted,
    # as one batch of two or as two of one.
    wait_for(lambda: batch_count(client, 2) > pairs0 or batch_count(client, 1) >= singles0 + 2, 30,
             "the statistics of the two requests' execution")
    assert batch_count(client, 2) == pairs0 + 1, "the two requests were not one batch"

    # Not computed: its record has no compute time and no pipeline call; its batch-mate's
    # pipeline call held only the good request's one item.
    records = wait_for(lambda: (c := captured(spool)) and {"good", "bad"} <= c.keys() and c, 30, "capture records")
    bad, good = records["bad"], records["good"]
    assert bad["outcome"] == "error" and bad["error_code"] == "INVALID_ARG" and "image_encoding" in bad["error_message"]
    assert bad["compute_ms"] == 0 and bad["batch_size"] == 0
    assert good["outcome"] == "ok" and good["batch_size"] == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_deadline_header_reaches_the_model(server, protocol):
    tc = grpcclient if protocol == "grpc" else httpclient
    client = tc.InferenceServerClient(url=server.grpc_url if protocol == "grpc" else server.http_url)
    name = HEADER.lower() if protocol == "grpc" else HEADER  # gRPC metadata keys are lower case
    try:
        # A malformed value is the caller's error, named as the header it came in.
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, inputs(tc, 2, 1, image_seed=IMAGE_SEED), headers={name: "soon"})
        assert HEADER.lower() in e.value.message().lower() and "'soon'" in e.value.message(), e.value.message()

        # A deadline that has passed: dropped by the runtime before its pipeline call.
        expired0 = counter(metrics(server), "pipeline_expired_requests_total")
        with pytest.raises(InferenceServerException) as e:
            client.infer(MODEL, inputs(tc, 2, 1, image_seed=IMAGE_SEED), headers={name: str(now_ms() - 1000)})
        assert "request expired" in e.value.message(), e.value.message()
        assert counter(metrics(server), "pipeline_expired_requests_total") == expired0 + 1

        # A deadline in the future: served.
        out = client.infer(MODEL, inputs(tc, 2, 1, image_seed=IMAGE_SEED), headers={name: str(now_ms() + 120_000)})
        assert out.as_numpy("generated_image").shape == (1, 1)
    finally:
        client.close()
