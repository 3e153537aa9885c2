"""The local MME under a burst far above a model's queue: 503 ServiceUnavailable + Retry-After,
naming the model and its queue state, counted on /metrics; `deploy invoke`'s retries see it."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

from deploy.invoke import refusal_of
from serving.runtime.capacity.admission import read_policy
from tests.conftest import ROOT
from deploy.payload import build_request
from mme_testlib import http, start_endpoint
from tests.conftest import gen_args, png

TARGET = "sd_img2img.tar.gz"


@pytest.fixture(scope="module")
def endpoint(mme_dist, tmp_path_factory):
    ep = start_endpoint(tmp_path_factory.mktemp("mme-overload"), str(mme_dist))
    yield ep
    assert ep.stop() == 0


def test_burst_is_refused_with_503_retry_after_and_counted(endpoint):
    import boto3
    from botocore.config import Config

    # No botocore retries: every refusal the endpoint counts is one this test sees.
    runtime = boto3.client("sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x",
                           config=Config(retries={"total_max_attempts": 1}, read_timeout=600,
                                         max_pool_connections=32))
    # Long calls (120 steps), all sent at once: the one instance runs a batch of 4 for seconds,
    # the queue holds 8 more, and the rest find it full.
    body, ctype = build_request({"prompt": [b"a red house"], "image": [png(64)],
                                 "gen_args": [gen_args(num_inference_steps=120)]}, binary=True)
    warm, wtype = build_request({"prompt": [b"warm"], "image": [png(64)], "gen_args": [gen_args()]}, binary=True)
    runtime.invoke_endpoint(EndpointName="local", TargetModel=TARGET, ContentType=wtype, Body=warm)  # loads it
    results: list = []

    def one() -> None:
        try:
            runtime.invoke_endpoint(EndpointName="local", TargetModel=TARGET, ContentType=ctype, Body=body)
            results.append("ok")
        except ClientError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive()

    refused = [r for r in results if r != "ok"]
    queue_size = read_policy((ROOT / "model_repository" / "sd_img2img" / "config.pbtxt").read_text())["max_queue_size"]
    assert refused and len(results) == 32
    for exc in refused:
        err, meta = exc.response["Error"], exc.response["ResponseMetadata"]
        assert err["Code"] == "ServiceUnavailable" and meta["HTTPStatusCode"] == 503, exc.response
        assert meta["HTTPHeaders"]["retry-after"] == "1"
        assert TARGET in err["Message"] and f"queue limit {queue_size}" in err["Message"], err["Message"]
        assert "Exceeds maximum queue size" in err["Message"] or "timeout expired" in err["Message"]
        r = refusal_of(exc)  # what `deploy invoke` retries on
        assert r is not None and r.retry_after_s == 1.0
    status, text = http("GET", f"{endpoint.url}/metrics")
    line = next(ln for ln in text.decode().splitlines() if ln.startswith("mme_model_refusals_total{"))
    assert f'model="{TARGET}"' in line and float(line.rsplit(" ", 1)[1]) == len(refused)


def test_deadline_header_travels_through_the_front_to_the_model(endpoint):
    from serving.runtime.deadline import HEADER, now_ms

    body, ctype = build_request({"prompt": [b"a red house"], "image": [png(64)],
                                 "gen_args": [gen_args(num_inference_steps=2)]}, binary=True)
    url = f"{endpoint.url}/endpoints/local/invocations"
    base = {"Content-Type": ctype, "X-Amzn-SageMaker-Target-Model": TARGET}

    status, doc = http("POST", url, body=body, headers={**base, HEADER: "soon"})
    # SageMaker's form of the model's 400: 424 ModelError naming it
    assert status == 424 and "client error (400)" in str(doc), (status, doc)
    assert HEADER in doc["OriginalMessage"] and "'soon'" in doc["OriginalMessage"], doc

    status, doc = http("POST", url, body=body, headers={**base, HEADER: str(now_ms() - 1000)})
    assert status == 503 and "request expired" in str(doc), (status, doc)  # dropped before its pipeline call

    status, out = http("POST", url, body=body, headers={**base, HEADER: str(now_ms() + 120_000)})
    assert status == 200, (status, out)
