"""Fault on the local MME endpoint: a model is evicted (LRU, memory budget) while requests for
it are queued.

Two models, a budget that holds one (footprint = extracted size: deterministic). Loading the
second evicts the first; requests for the first sent while it is being unloaded wait in the
endpoint, none hangs, each gets a success or an error naming the model, the model loads again on
those requests (its cold start is reported in /mme/stats and /metrics), and every success is
captured in the store exactly once (eviction unloads the model gracefully: its capture queue is
flushed, docs/reliability.md).
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.mme import MMEConfig, MMEEndpoint
from deploy.package import package_repository
from deploy.payload import build_request, parse_response
from monitoring.ingest.store import read_records
from bench.loadtest.loss import match_ids
from tests.deploy.mme.mme_testlib import extracted_size, http, runtime_client
from tests.conftest import png
from tests.reliability.reliability_testlib import wait_for

A, B = "resnet_classifier", "resnet_b"  # B: the same model under another name (a second tarball)


def renamed_tarball(src: Path, name: str, dest: Path) -> None:
    """`src`'s model as Triton model `name`: top folder and config name renamed."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w:gz") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read() if member.isfile() else None
            old_top = member.name.split("/", 1)[0]
            member.name = name + member.name[len(old_top):]
            if data is not None and member.name == f"{name}/config.pbtxt":
                data = re.sub(rb'^(\s*name\s*:\s*)"[^"]*"', rb'\1"' + name.encode() + b'"', data, flags=re.M)
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)


@pytest.fixture
def two_models(model_repo, tmp_path) -> Path:
    dist = tmp_path / "dist"
    package_repository(model_repo, dist, models=[A])
    renamed_tarball(dist / f"{A}.tar.gz", B, dist / f"{B}.tar.gz")
    return dist


def invoke(runtime, model: str, seed: int) -> tuple[str, object]:
    body, ctype = build_request({"image": [png(32, seed=seed)]}, binary=True)
    try:
        r = runtime.invoke_endpoint(EndpointName="local", TargetModel=f"{model}.tar.gz", ContentType=ctype, Body=body)
    except runtime.exceptions.ClientError as exc:
        return "error", str(exc)
    out = parse_response(r["Body"].read(), r["ContentType"])
    return "ok", out["request_id"][0, 0].decode()


def test_model_evicted_while_requests_are_queued(two_models, tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    budget = extracted_size(two_models / f"{A}.tar.gz") * 1.5  # one model fits, two do not
    config = MMEConfig(model_data_url=str(two_models), port=0, work_dir=tmp_path / "work", footprint="disk",
                       memory_budget_mb=budget / 2**20, load_timeout_s=300,
                       triton_env={"OMP_NUM_THREADS": "1", "CAPTURE_FLUSH_INTERVAL_S": "0.2",
                                   "HOST_SERVICES_DIR": str(tmp_path / "host"), "HOST_SERVICES_SKIP": "watchdog"},
                       capture_store=str(store), capture_spool=spool, sidecar_metrics_port=-1)
    ep = MMEEndpoint(config).start()
    ok: dict[str, list[str]] = {A: [], B: []}  # model -> request ids of its successes
    try:
        runtime = runtime_client(ep.url)
        status, rid = invoke(runtime, A, 0)
        assert status == "ok"
        ok[A].append(rid)

        def state_of(model: str) -> str | None:
            stats = http("GET", f"{ep.url}/mme/stats")[1]
            return next((m["state"] for m in stats["models"] if m["modelName"] == f"{model}.tar.gz"), None)

        # Loading B evicts A (idle, least recently used); requests for A arrive while it unloads.
        with ThreadPoolExecutor(7) as pool:
            b_future = pool.submit(invoke, runtime, B, 1)
            seen = wait_for(lambda: state_of(A) != "READY" and (state_of(A) or "gone"), 120, f"{A} to be evicted",
                            step=0.01)
            queued_at = time.monotonic()
            a_futures = [pool.submit(invoke, runtime, A, 10 + k) for k in range(6)]
            results = [(A, f.result(timeout=300)) for f in a_futures] + [(B, b_future.result(timeout=300))]
        print(f"{A} {seen} -> queued requests answered: {time.monotonic() - queued_at:.1f} s (noisy machine)")
        for model, (status, detail) in results:
            if status == "ok":
                ok[model].append(detail)
            else:  # a clear error naming the model
                assert model in detail, detail
        assert len(ok[A]) == 7, results  # the queued ones succeed: the model loads again on them
        stats = http("GET", f"{ep.url}/mme/stats")[1]
        assert stats["evictions"].get(f"{A}.tar.gz", 0) >= 1
        assert stats["loads"][f"{A}.tar.gz"] == 2
        # The recovery (the reload) is reported: cold-start timings per load, /metrics too.
        reload = [c for c in stats["coldstarts"] if c["model"] == f"{A}.tar.gz"][-1]
        assert reload["timings"]["load_s"] > 0
        with urllib.request.urlopen(f"{ep.url}/metrics", timeout=30) as r:
            text = r.read().decode()
        m = re.search(rf'^mme_model_last_coldstart_seconds{{model="{A}\.tar\.gz",phase="load"}} (\S+)$', text, re.M)
        assert m and float(m.group(1)) == pytest.approx(reload["timings"]["load_s"], abs=1e-3), text

        # And the next request for A is served (whatever is loaded now).
        status, rid = invoke(runtime, A, 99)
        assert status == "ok"
        ok[A].append(rid)
    finally:
        assert ep.stop() == 0  # graceful: the sidecar drains the spool

    # Capture: every success, across the eviction, is in the store exactly once.
    for model, ids in ok.items():
        table = read_records(str(store), model, columns=["request_id"], dedup=False)
        match = match_ids(ids, table["request_id"].to_pylist())
        assert not match.missing and not match.duplicated, (model, match.summary())
