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
from tests.conftest import TEST_INSTANCES, png
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
    package_repository(model_repo, dist, models=[A], instances=TEST_INSTANCES)  # not about the instance count
    renamed_tarball(dist / f"{A}.tar.gz", B, dist / f"{B}.tar.gz")
    return dist


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with these labels in Prometheus text, None if absent."""
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return None


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
        # Which model is loaded now depends on the order the last requests finished in: each
        # release enforces the budget, and the least recently used idle model goes (legal LRU). A
        # may be evicted a second time by B's release if B's request (waiting on B's slower load)
        # finishes after A's. So check what holds in every order, then look at A once it is loaded.
        stats = http("GET", f"{ep.url}/mme/stats")[1]
        loads, unloads = stats["loads"][f"{A}.tar.gz"], stats["unloads"].get(f"{A}.tar.gz", 0)
        assert stats["evictions"].get(f"{A}.tar.gz", 0) >= 1
        assert loads >= 2  # the eviction, then a load on the queued requests
        a_state = next((m["state"] for m in stats["models"] if m["modelName"] == f"{A}.tar.gz"), None)
        print(f"{A} after the queued requests: loads {loads}, evictions {stats['evictions'].get(f'{A}.tar.gz', 0)}, "
              f"state {a_state}")
        assert loads - unloads == (1 if a_state == "READY" else 0), stats  # each load is loaded or unloaded
        # The recovery (the reload) is reported: cold-start timings per load, /metrics too.
        a_colds = [c["timings"] for c in stats["coldstarts"] if c["model"] == f"{A}.tar.gz"]
        assert len(a_colds) == loads and all(t["load_s"] > 0 for t in a_colds), stats["coldstarts"]
        text = scrape(ep.url)
        assert metric(text, "mme_model_loads_total", model=f"{A}.tar.gz") == loads
        for key, phase in (("fetch_s", "fetch"), ("extract_s", "extract"), ("load_s", "load")):
            total = metric(text, "mme_model_coldstart_seconds_total", model=f"{A}.tar.gz", phase=phase)
            assert total == pytest.approx(sum(t[key] for t in a_colds), abs=1e-3), (phase, text)

        # And the next request for A is served (whatever is loaded now): A is then loaded and the
        # most recently used, so its last cold start is on /metrics and is the latest in /mme/stats.
        status, rid = invoke(runtime, A, 99)
        assert status == "ok"
        ok[A].append(rid)
        assert state_of(A) == "READY"  # the release ran before the response: nothing evicts it now
        latest = [c for c in http("GET", f"{ep.url}/mme/stats")[1]["coldstarts"] if c["model"] == f"{A}.tar.gz"][-1]
        last = metric(scrape(ep.url), "mme_model_last_coldstart_seconds", model=f"{A}.tar.gz", phase="load")
        assert last is not None and last == pytest.approx(latest["timings"]["load_s"], abs=1e-3)
    finally:
        assert ep.stop() == 0  # graceful: the sidecar drains the spool

    # Capture: every success, across the eviction, is in the store exactly once.
    for model, ids in ok.items():
        table = read_records(str(store), model, columns=["request_id"], dedup=False)
        match = match_ids(ids, table["request_id"].to_pylist())
        assert not match.missing and not match.duplicated, (model, match.summary())
