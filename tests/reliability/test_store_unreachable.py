"""Fault: the S3 store is unreachable for a while under traffic, then comes back.

A real tritonserver (resnet_classifier, capture on) whose model process starts the capture
sidecar, writing to a moto S3 server on 127.0.0.1. The moto server is stopped under traffic and
started again on the same port (moto keeps its buckets in this process, like S3 keeps yours).
Requests keep succeeding meanwhile (the models only write the spool); once S3 is back every
successful request is in the store exactly once, and the sidecar reports the outage and the
time it took to catch up (log + Prometheus gauges).
"""

from __future__ import annotations

import collections
import re
import socket
import time
import urllib.request
import uuid

import boto3
import pytest
import tritonclient.http as httpclient

from monitoring.ingest.store import read_records
from bench.loadtest.loss import match_ids
from serving.launch.server import TritonProcess
from tests.conftest import TEST_INSTANCES, free_port
from tests.reliability.reliability_testlib import classify, served_env, wait_for

# moto keeps buckets in this process for the whole pytest run: a name no other test uses.
BUCKET = f"reliability-{uuid.uuid4().hex[:12]}"
STORE = f"s3://{BUCKET}/capture"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def start_moto(port: int):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


@pytest.fixture
def s3_served(model_repo, tmp_path, monkeypatch):
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    moto = {"server": start_moto(port)}
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    sidecar_port = free_port()
    env = served_env(tmp_path / "host", tmp_path / "spool", free_port())
    env.update(AWS_ENV)
    env.update({"CAPTURE_STORE": STORE, "CAPTURE_S3_ENDPOINT_URL": url, "CAPTURE_SIDECAR_METRICS_PORT": str(sidecar_port),
                "CAPTURE_SIDECAR_RETRY_MAX_S": "2", "CAPTURE_COMPACT_EVERY_S": "0", "HOST_SERVICES_SKIP": "watchdog"})
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp_path / "tritonserver.log", models=("resnet_classifier",), extra_env=env,
                           instances=TEST_INSTANCES)
    server.start(wait_s=300)
    try:
        yield server, moto, port, url, sidecar_port, tmp_path / "host" / "sidecar.log"
    finally:
        server.stop()
        if moto["server"] is not None:
            moto["server"].stop()


def test_store_unreachable_then_back_every_success_stored_once(s3_served):
    server, moto, port, url, sidecar_port, sidecar_log = s3_served
    client = httpclient.InferenceServerClient(server.http_url)
    ok_ids: list[str] = []

    def send(n: int, tag: str) -> None:
        for i in range(n):
            rid = f"{tag}-{i}"
            status, detail = classify(client, seed=i, request_id=rid)
            assert status == "ok", (rid, detail)  # the store being down never reaches the model
            ok_ids.append(rid)

    def stored_counts() -> collections.Counter:
        table = read_records(STORE, "resnet_classifier", columns=["request_id"], dedup=False, s3_endpoint_url=url)
        return collections.Counter(table["request_id"].to_pylist())

    send(10, "before")
    wait_for(lambda: set(ok_ids) <= set(stored_counts()), 120, "records in the store before the outage")

    # The outage: S3 refuses connections. Hold the port (bound, not listening) so that nothing
    # else takes it meanwhile and the sidecar sees "could not connect", as with S3 unreachable.
    moto["server"].stop()
    moto["server"] = None
    reserved = socket.socket()
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.bind(("127.0.0.1", port))
    try:
        send(20, "outage")
        wait_for(lambda: "write failed (2 in a row)" in sidecar_log.read_text(errors="replace"), 120,
                 "the sidecar failing to write to the unreachable store")
        send(10, "outage-late")
    finally:
        reserved.close()
    moto["server"] = start_moto(port)
    back_at = time.monotonic()

    def all_stored() -> collections.Counter | None:
        counts = stored_counts()
        return counts if set(ok_ids) <= set(counts) else None

    counts = wait_for(all_stored, 120, "every successful request in the store once S3 is back", step=0.25)
    catch_up_s = time.monotonic() - back_at
    print(f"store back -> every record stored: {catch_up_s:.1f} s")  # noisy, shared machine
    match = match_ids(ok_ids, counts.elements())  # by id: exactly one record per success, none other
    assert match.exact, match.summary()

    # The sidecar reports the outage and its catch-up (log + Prometheus).
    log_text = wait_for(lambda: (t := sidecar_log.read_text(errors="replace")) and "caught up" in t and t, 60,
                        "the sidecar's catch-up report")
    assert re.search(r"store writes recovered after \d+ failures, [\d.]+ s after the first one", log_text), log_text
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert metric(text, "capture_store_up") == 1.0
    assert metric(text, "capture_store_outages_total") == 1.0
    outage_s, catchup_s = metric(text, "capture_store_last_outage_seconds"), metric(text, "capture_store_last_catchup_seconds")
    assert outage_s is not None and outage_s > 0, text
    assert catchup_s is not None and 0 <= catchup_s <= catch_up_s + 1, (catchup_s, catch_up_s)
    client.close()
