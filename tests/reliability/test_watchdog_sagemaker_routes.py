"""The watchdog healing through SageMaker's routes (a tritonserver with --allow-http=false on
SageMaker's stock container): the local MME endpoint implements the same routes
(GET /models, DELETE /models/<n>, POST /models), so a watchdog pointed at it with
`--sagemaker-url` reloads a model whose stub was killed with no Triton HTTP call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from deploy.mme import MMEConfig, MMEEndpoint
from deploy.package import package_repository
from deploy.payload import build_request, parse_response
from serving.runtime.watchdog import server_sagemaker_url
from tests.conftest import png
from tests.deploy.mme.mme_testlib import http, runtime_client
from tests.reliability.reliability_testlib import wait_for

TARGET = "resnet_classifier.tar.gz"


def classify(runtime) -> list:
    body, ctype = build_request({"image": [png(32, seed=4)]}, binary=True)
    r = runtime.invoke_endpoint(EndpointName="local", TargetModel=TARGET, ContentType=ctype, Body=body)
    return list(parse_response(r["Body"].read(), r["ContentType"])["label"].ravel())


def test_watchdog_heals_through_sagemaker_routes(model_repo, tmp_path):
    dist = tmp_path / "dist"
    package_repository(model_repo, dist, models=["resnet_classifier"])
    config = MMEConfig(model_data_url=str(dist), port=0, work_dir=tmp_path / "work", footprint="disk",
                       load_timeout_s=300, triton_env={"OMP_NUM_THREADS": "1", "HOST_SERVICES_DIR": str(tmp_path / "host"),
                                                       "HOST_SERVICES_SKIP": "watchdog"})
    ep = MMEEndpoint(config).start()
    events, log_path = tmp_path / "events.jsonl", tmp_path / "watchdog.log"
    watchdog = None
    try:
        runtime = runtime_client(ep.url)
        before = classify(runtime)
        stubs = ep.triton.stub_pids("resnet_classifier")
        assert len(stubs) == 2, stubs  # two instances: the watchdog heals when one of them dies
        stub = stubs[1]
        watchdog = subprocess.Popen([sys.executable, "-m", "serving.runtime.watchdog", "--server-pid", str(ep.process.proc.pid),
                                     "--sagemaker-url", ep.url.removeprefix("http://"), "--interval", "0.25",
                                     "--events", str(events)], stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"))
        wait_for(lambda: "watching tritonserver" in log_path.read_text(errors="replace"), 120, "the watchdog's first poll")
        assert "SageMaker's routes" in log_path.read_text()

        os.kill(stub, signal.SIGKILL)
        # The event is written once the reload through the front is done: two stubs importing torch
        # on a busy 2-core host took over 3 min in a fresh-clone run (2026-12-06); 120 s failed.
        wait_for(lambda: events.exists() and events.read_text().strip(), 600, "the watchdog's event")
        (event,) = [json.loads(line) for line in events.read_text().splitlines()]
        assert event["model"] == "resnet_classifier" and event["pid"] == stub and event["recovery_s"] > 0
        assert "ready again" in log_path.read_text()
        # Healed through the container routes: the endpoint unloaded and loaded it (DELETE + POST).
        stats = http("GET", f"{ep.url}/mme/stats")[1]
        assert stats["unloads"][TARGET] == 1 and stats["loads"][TARGET] == 2
        assert http("GET", f"{ep.url}/models/{TARGET}")[0] == 200
        assert classify(runtime) == before
        # Reloaded as a whole: two new stubs (idle model: Triton stops the old pair's other one).
        wait_for(lambda: not set(ep.triton.stub_pids("resnet_classifier")) & set(stubs), 60, "the old stubs to go")
        assert len(ep.triton.stub_pids("resnet_classifier")) == 2
        assert event["leftover_pids"] == [stubs[0]]
    finally:
        if watchdog is not None:
            watchdog.terminate()
            watchdog.wait(timeout=60)
        ep.stop()
    assert server_sagemaker_url(os.getpid()) is None  # pytest's own command line: no SageMaker routes


def test_sagemaker_routes_found_on_the_server_command_line():
    """A server with HTTP off and SageMaker routes on (the stock container) is healed through them."""
    from serving.runtime.watchdog import server_http_url

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "--allow-http=false",
                             "--allow-sagemaker=true", "--sagemaker-port=9090"], stdin=subprocess.PIPE)
    try:
        wait_for(lambda: b"--sagemaker-port=9090" in open(f"/proc/{proc.pid}/cmdline", "rb").read(), 30, "the exec")
        assert server_http_url(proc.pid) is None
        assert server_sagemaker_url(proc.pid) == "127.0.0.1:9090"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
