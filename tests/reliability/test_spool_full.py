"""Fault: the spool disk is full (nothing drains it), then space frees up.

A real tritonserver (resnet_classifier, capture on) with a small spool bound
(``CAPTURE_SPOOL_MAX_MB``, what a full disk looks like to capture without needing root for a
tmpfs) and no sidecar. Requests keep succeeding while capture drops and counts records; when
a sidecar starts and drains the spool, capture resumes by itself, reports how long it was full,
and every successful request is either in the store (exactly once) or counted as dropped.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import tritonclient.http as httpclient

from monitoring.capture.capturer import spool_usage
from monitoring.ingest.store import read_records
from serving.runtime.capacity.admission import instance_count
from bench.loadtest.loss import match_ids
from serving.launch.server import TritonProcess
from tests.conftest import free_port
from tests.reliability.reliability_testlib import classify, wait_for

BOUND = 64 * 1024


def metric(text: str, name: str) -> float:
    m = re.search(rf'^{name}{{[^}}]*model="resnet_classifier"[^}}]*}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_spool_full_requests_succeed_drops_counted_capture_resumes(model_repo, tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp_path / "tritonserver.log", models=("resnet_classifier",),
                           extra_env={"CAPTURE_SPOOL_DIR": str(spool), "CAPTURE_SPOOL_MAX_MB": str(BOUND / 2**20),
                                      "CAPTURE_FLUSH_INTERVAL_S": "0.05", "CAPTURE_BATCH_SIZE": "4",
                                      "CAPTURE_METRICS_INTERVAL_S": "0", "OMP_NUM_THREADS": "1",
                                      "HOST_SERVICES_DIR": str(tmp_path / "host"), "HOST_SERVICES_SKIP": "watchdog"})
    server.start(wait_s=300)
    client = httpclient.InferenceServerClient(server.http_url)
    ok_ids: list[str] = []
    sidecar = None

    def send(tag: str, i: int) -> None:
        rid = f"{tag}-{i}"
        status, detail = classify(client, seed=i, request_id=rid)
        assert status == "ok", (rid, detail)  # a full spool never fails a request
        ok_ids.append(rid)

    try:
        # Fill the spool: requests go on succeeding, capture drops and counts (Triton's /metrics).
        n = 0

        def dropped_on_triton() -> bool:
            nonlocal n
            n += 1
            send("full", n)
            return metric(scrape(server.metrics_port), "capture_records_spool_full_total") > 0

        wait_for(dropped_on_triton, 120, "capture to drop records at the spool bound", step=0.0)
        for i in range(10):
            send("while-full", i)
        assert 0 < spool_usage(str(spool)) <= BOUND

        # Space frees up: a sidecar drains the spool into the store.
        sidecar_port = free_port()
        sidecar = subprocess.Popen([sys.executable, "-m", "monitoring.ingest.sidecar", "--spool", str(spool), "--store", str(store),
                                    "--metrics-port", str(sidecar_port), "--metrics-addr", "127.0.0.1",
                                    "--compact-every", "0", "--poll-interval", "0.05"],
                                   stdout=subprocess.DEVNULL, stderr=open(tmp_path / "sidecar.log", "wb"))
        wait_for(lambda: spool_usage(str(spool)) < BOUND // 4, 120, "the sidecar to drain the spool")
        freed_at = time.monotonic()
        for i in range(20):
            send("after", i)

        def stored() -> list[str]:
            table = read_records(str(store), "resnet_classifier", columns=["request_id"], dedup=False)
            return table["request_id"].to_pylist()

        after = {rid for rid in ok_ids if rid.startswith("after-")}

        def after_stored() -> list[str] | None:
            ids = stored()
            return ids if after <= set(ids) else None

        ids = wait_for(after_stored, 120, "capture to resume: every request after the spool freed up in the store",
                       step=0.25)
        print(f"spool freed -> all later requests stored: {time.monotonic() - freed_at:.1f} s")  # noisy machine

        # Nothing lost beyond what is counted, by id: each success is stored exactly once or
        # dropped, and only requests sent while the spool was full are missing.
        # The drops reach the sidecar in the producer's counters of the segments written after.
        match = match_ids(ok_ids, ids)
        assert match.duplicated == {} and match.unexpected == [], match.summary()
        assert all(rid.startswith(("full-", "while-full-")) for rid in match.missing), match.summary()
        dropped = metric(scrape(sidecar_port), "capture_records_dropped_total")
        assert dropped > 0 and len(match.missing) == dropped, (dropped, match.summary())

        # Capture reports the recovery (model process log -> tritonserver's log), per model
        # instance: each instance process has its own capturer and says which pid it is.
        # The spool can fill more than once before the sidecar starts (a smaller segment may still
        # fit after a larger one was dropped): one report per episode, each instance's last one's
        # total is all of that instance's drops; the instances' totals add up to every drop.
        instances = instance_count((model_repo / "resnet_classifier" / "config.pbtxt").read_text())
        pattern = (r"capture resnet_classifier \(pid (\d+)\): spool has room again, capture resumed ([\d.]+) s "
                   r"after it filled \((\d+) records dropped meanwhile, (\d+) in all\)")

        def reports() -> list[tuple[str, str, str, str]] | None:
            found = re.findall(pattern, server.log_path.read_text(errors="replace"))
            in_all = {pid: int(total) for pid, _, _, total in found}  # the last report of each pid
            return found if found and sum(in_all.values()) == dropped else None

        found = wait_for(reports, 60, "capture's recovery reports covering every drop")
        assert all(float(s) > 0 for _, s, _, _ in found), found
        assert sum(int(n) for _, _, n, _ in found) == dropped, found
        assert len({pid for pid, _, _, _ in found}) <= instances, found  # a report per instance at most
    finally:
        client.close()
        if sidecar is not None:
            sidecar.terminate()
            sidecar.wait(timeout=60)
        server.stop()
