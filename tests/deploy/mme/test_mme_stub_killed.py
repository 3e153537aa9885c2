"""Fault on the local MME endpoint: a loaded model's stub is killed.

`/ping` turns unhealthy while the model is down (so SageMaker would stop routing to the
instance), the watchdog its model process started reloads it, and the same TargetModel answers
again with nobody calling POST /models. Every model runs two instances: ONE stub dying is the
fault (the other lives on, yet Triton keeps handing the dead one requests), and `/ping` is
unhealthy from then on, before the watchdog has even unloaded the model.
"""

from __future__ import annotations

import os
import signal
import time

from deploy.payload import build_request, parse_response
from deploy.mme import MMEConfig, MMEEndpoint
from mme_testlib import http, runtime_client
from tests.conftest import free_port, png
from tests.reliability.reliability_testlib import HostWatchdog, wait_for


def classify(runtime) -> tuple[int, object]:
    body, content_type = build_request({"image": [png(64, 5)]}, binary=True)
    try:
        r = runtime.invoke_endpoint(EndpointName="local", TargetModel="resnet_classifier.tar.gz",
                                    ContentType=content_type, Body=body)
    except runtime.exceptions.ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"], str(exc)
    return 200, parse_response(r["Body"].read(), r["ContentType"])


def test_mme_ping_unhealthy_while_a_killed_model_reloads(mme_dist_shipped, tmp_path):
    host = tmp_path / "host"
    config = MMEConfig(model_data_url=str(mme_dist_shipped), port=0, work_dir=tmp_path / "work", footprint="disk",
                       load_timeout_s=300, triton_env={"OMP_NUM_THREADS": "1", "HOST_SERVICES_DIR": str(host),
                                                       "HOST_SERVICES_WATCHDOG_METRICS_PORT": str(free_port())})
    ep = MMEEndpoint(config).start()
    try:
        runtime = runtime_client(ep.url)
        status, before = classify(runtime)
        assert status == 200
        record = ep.cache.get("resnet_classifier.tar.gz")
        stubs = ep.triton.stub_pids(record.triton_name)
        assert len(stubs) == 2, stubs  # config.pbtxt: two instances
        stub = stubs[0]
        server_pid = ep.process.proc.pid
        watchdog = HostWatchdog(host, server_pid)
        watchdog.wait_watching()
        assert http("GET", f"{ep.url}/ping") == (200, {"status": "Healthy"})

        os.kill(stub, signal.SIGKILL)
        wait_for(lambda: http("GET", f"{ep.url}/ping")[0] == 503, 30, "/ping unhealthy")
        unhealthy_at = time.time()
        assert http("GET", f"{ep.url}/ping")[1]["down"] in ([record.key], [])
        wait_for(lambda: http("GET", f"{ep.url}/ping")[0] == 200, 120, "/ping healthy again")
        status, after = classify(runtime)
        assert status == 200 and list(after["label"].ravel()) == list(before["label"].ravel())
        (event,) = watchdog.read_events()
        assert event["model"] == record.triton_name and event["recovery_s"] > 0 and event["pid"] == stub
        # Unhealthy from the dead stub itself, not only once the watchdog unloaded the model
        # (it waits settle_s = 3 s after detection first, while Triton still says READY).
        assert unhealthy_at < event["unloaded_at"], (unhealthy_at, event)
        assert len(ep.triton.stub_pids(record.triton_name)) >= 2  # both instances back (+ the old one, drain_s)
    finally:
        assert ep.stop() in (0, 1)  # 1: Triton's exit timeout if a request reached the dead stub
