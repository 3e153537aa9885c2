"""The runtime's failure counters appear on the real Triton /metrics endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

from serving.launch.server import TritonProcess
from tests.conftest import TEST_INSTANCES, free_port, wait_for


def _metrics(port: int) -> str | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    except urllib.error.URLError:  # Triton's metrics server may bind a moment after HTTP is ready
        return None


def test_failure_counters_are_published_per_model(model_repo, tmp_path):
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp_path / "tritonserver.log", models=("resnet_classifier",),
                           instances=TEST_INSTANCES).start(wait_s=600)
    try:
        text = wait_for(lambda: _metrics(server.metrics_port), timeout=120, what="Triton's /metrics answering")
    finally:
        assert server.stop() == 0
    for name in ("pipeline_nonfinite_outputs_total", "pipeline_out_of_memory_total", "pipeline_memory_releases_total",
                 "pipeline_expired_requests_total", "pipeline_late_results_total"):
        assert f'{name}{{model="resnet_classifier",version="1"}} 0' in text, name
