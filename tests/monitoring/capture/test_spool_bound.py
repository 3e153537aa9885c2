"""The spool is bounded by default: with nothing draining it, capture drops and counts records
instead of filling the disk, and serving goes on (unit + a real tritonserver)."""

from __future__ import annotations

import re
import statistics
import time
import urllib.request

from capture_testlib import make_record

from monitoring.capture import Capturer
from monitoring.capture.capturer import DEFAULT_SPOOL_MAX_MB, spool_usage

BOUND = 64 * 1024


def test_default_bound_is_on(tmp_path):
    cap = Capturer.from_env("m1", environ={"CAPTURE_SPOOL_DIR": str(tmp_path)})
    assert cap.max_spool_bytes == int(DEFAULT_SPOOL_MAX_MB * 2**20) > 0
    cap.close()
    cap = Capturer.from_env("m1", environ={"CAPTURE_SPOOL_DIR": str(tmp_path), "CAPTURE_SPOOL_MAX_MB": "0"})
    assert cap.max_spool_bytes == 0  # 0: unbounded, as documented
    cap.close()


def test_full_spool_drops_and_counts_without_retrying(tmp_path):
    (tmp_path / "other_model").mkdir()
    (tmp_path / "other_model" / "old.jsonl").write_bytes(b"x" * (BOUND // 2))  # the bound is per spool, all models
    cap = Capturer(tmp_path, "m1", batch_size=20, flush_interval_s=0.01, max_spool_bytes=BOUND)
    n = 400
    for i in range(n):
        cap.submit(make_record(i, model="m1"))
    assert cap.close(timeout=30)
    c = cap.counters()
    assert c["spool_full"] > 0 and c["dropped"] == c["spool_full"]
    assert c["written"] + c["dropped"] == n  # every record is either in the spool or counted
    assert c["write_errors"] == 0  # a full spool is a drop, not an error retried forever
    assert 0 < spool_usage(str(tmp_path)) <= BOUND
    assert "CAPTURE_SPOOL_MAX_MB" in cap.last_error


def _metric(text: str, name: str, model: str) -> float:
    m = re.search(rf'^{name}{{[^}}]*model="{model}"[^}}]*}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_no_sidecar_small_bound_through_triton(model_repo, tmp_path):
    """Done-when of issue 9: requests keep succeeding, drops are counted on Triton's /metrics,
    the spool stays under its bound."""
    from serving.launch.client import infer
    from serving.launch.server import TritonProcess
    from tests.conftest import free_port, png, tensor

    spool = tmp_path / "spool"
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp_path / "tritonserver.log", models=("resnet_classifier",),
                           extra_env={"CAPTURE_SPOOL_DIR": str(spool), "CAPTURE_SPOOL_MAX_MB": str(BOUND / 2**20),
                                      "CAPTURE_FLUSH_INTERVAL_S": "0.05", "CAPTURE_BATCH_SIZE": "4",
                                      "CAPTURE_METRICS_INTERVAL_S": "0", "OMP_NUM_THREADS": "1"})
    server.start(wait_s=600)
    latencies = []
    try:
        for i in range(120):
            t0 = time.perf_counter()
            out = infer("resnet_classifier", {"image": tensor(png(32, seed=i))}, url=server.http_url)
            latencies.append(time.perf_counter() - t0)
            assert out["label"].shape[0] == 1
        deadline = time.monotonic() + 60
        dropped = 0.0
        while time.monotonic() < deadline and dropped == 0:
            infer("resnet_classifier", {"image": tensor(png(32))}, url=server.http_url)  # publishes the counters
            with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as r:
                text = r.read().decode()
            dropped = _metric(text, "capture_records_dropped_total", "resnet_classifier")
        assert dropped > 0, text
        assert _metric(text, "capture_records_spool_full_total", "resnet_classifier") == dropped
        assert _metric(text, "capture_records_spooled_total", "resnet_classifier") > 0
    finally:
        assert server.stop() == 0, server.log_tail()
    assert 0 < spool_usage(str(spool)) <= BOUND
    assert "CAPTURE_SPOOL_MAX_MB" in server.log_path.read_text()  # and logged
    first, last = statistics.median(latencies[:20]), statistics.median(latencies[-20:])
    print(f"p50 before the spool filled {first * 1000:.1f} ms, after {last * 1000:.1f} ms (not asserted: shared CPU)")
