"""`make mme` with nothing else started: the models start the sidecar, records reach the store,
and the endpoint's /metrics has per-model cold-start and cache figures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

from mme_testlib import http, runtime_client

from deploy.mme import MMEConfig, MMEEndpoint
from deploy.payload import build_request, parse_response
from monitoring.ingest.store import read_records
from serving.runtime import host_services
from bench.loadtest.loss import match_ids
from serving.launch.server import ROOT, sidecar_of
from tests.conftest import png


def metric(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_mme_captures_into_the_store_and_exports_cache_metrics(mme_dist, tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    config = MMEConfig(model_data_url=str(mme_dist), port=0, work_dir=tmp_path / "work", footprint="disk",
                       triton_env={"OMP_NUM_THREADS": "1", "CAPTURE_FLUSH_INTERVAL_S": "0.2"}, load_timeout_s=300,
                       capture_store=str(store), capture_spool=spool, sidecar_metrics_port=-1)
    endpoint = MMEEndpoint(config).start()
    ids = []
    try:
        runtime = runtime_client(endpoint.url)
        for i in range(4):
            body, ctype = build_request({"image": [png(32, seed=i)]}, binary=True)
            r = runtime.invoke_endpoint(EndpointName="local", TargetModel="resnet_classifier.tar.gz",
                                        ContentType=ctype, Body=body)
            ids.append(parse_response(r["Body"].read(), r["ContentType"])["request_id"][0, 0].decode())
        assert host_services.wait_running(sidecar_of(spool), 60)  # started by the model, nobody else
        assert http("DELETE", f"{endpoint.url}/models/resnet_classifier.tar.gz")[0] == 200
        assert host_services.running(sidecar_of(spool))  # survives the unload of the model that started it
        body, ctype = build_request({"image": [png(32, seed=9)]}, binary=True)
        r = runtime.invoke_endpoint(EndpointName="local", TargetModel="resnet_classifier.tar.gz",
                                    ContentType=ctype, Body=body)  # reloads it
        ids.append(parse_response(r["Body"].read(), r["ContentType"])["request_id"][0, 0].decode())
        with urllib.request.urlopen(f"{endpoint.url}/metrics", timeout=30) as resp:
            text = resp.read().decode()
    finally:
        assert endpoint.stop() == 0
    assert not host_services.running(sidecar_of(spool))  # drained and gone with tritonserver
    model = "resnet_classifier.tar.gz"
    assert metric(text, "mme_model_loads_total", model=model) == 2
    assert metric(text, "mme_model_unloads_total", model=model) == 1
    assert metric(text, "mme_model_evictions_total", model=model) in (None, 0.0)
    assert metric(text, "mme_models_loaded") == 1
    for phase in ("fetch", "extract", "load"):
        last = metric(text, "mme_model_last_coldstart_seconds", model=model, phase=phase)
        total = metric(text, "mme_model_coldstart_seconds_total", model=model, phase=phase)
        assert last is not None and total is not None and total >= last >= 0
    assert metric(text, "mme_model_coldstart_seconds_total", model=model, phase="load") > 0
    out = subprocess.run([sys.executable, "-m", "monitoring", "records", "--model", "resnet_classifier",
                          "--store", str(store), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["count"] == len(ids)
    # By id too (a lost record and a duplicate would cancel out in the count above).
    match = match_ids(ids, read_records(str(store), "resnet_classifier", columns=["request_id"],
                                        dedup=False)["request_id"].to_pylist())
    assert match.exact, match.summary()
