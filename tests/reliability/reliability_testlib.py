"""Helpers for the fault tests: a real tritonserver + watchdog, a client, the stubs of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.runtime.watchdog import list_stubs
from tests.conftest import baton_locks, png, tensor, wait_for  # noqa: F401 (tests import it from here)




def classify(client: Any, seed: int = 0, request_id: str = "") -> tuple[str, Any]:
    """One resnet_classifier request over HTTP or gRPC (thread-safe: use it from many threads):
    ('ok', probabilities) or ('error', (status, message))."""
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    image = module.InferInput("image", [1, 1], "BYTES")
    image.set_data_from_numpy(tensor(png(64, seed)))
    try:
        result = client.infer("resnet_classifier", [image], request_id=request_id)
        return "ok", result.as_numpy("probabilities")
    except InferenceServerException as exc:
        return "error", (exc.status(), exc.message())


def live_stubs(server_pid: int, model: str) -> list[int]:
    """The model's live stub pids, in instance-name order (every model runs two instances)."""
    stubs = [s for s in list_stubs(server_pid).values() if not s.zombie and s.instance.startswith(model + "_")]
    return [s.pid for s in sorted(stubs, key=lambda s: s.instance)]


def instance_of(server_pid: int, pid: int) -> str:
    """The instance name (e.g. resnet_classifier_0_1) of a live stub."""
    return list_stubs(server_pid)[pid].instance


def baton_holder(baton_dir: Path, server_pid: int, model: str) -> int | None:
    """The pid holding the model's compute baton now (the stub that is computing a batch)."""
    return baton_locks(baton_dir, server_pid, model)[0]


class HostWatchdog:
    """The watchdog the model processes started for `server_pid` (serving/runtime/host_services.py),
    seen through its log and events file under the host-services state directory."""

    def __init__(self, state_dir: Path, server_pid: int) -> None:
        self.events = state_dir / f"watchdog-{server_pid}.events.jsonl"
        self.log = state_dir / "watchdog.log"
        self.server_pid = server_pid

    def wait_watching(self, timeout: float = 120.0) -> None:
        """Until the watchdog's first poll is done (it knows the stubs alive now)."""
        wait_for(lambda: f"watching tritonserver pid {self.server_pid}" in self.output(), timeout,
                 "the watchdog's first poll")

    def read_events(self) -> list[dict]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def served_env(state_dir: Path, spool: Path, metrics_port: int) -> dict[str, str]:
    """Environment of a test tritonserver whose models start their own watchdog."""
    return {"CAPTURE_SPOOL_DIR": str(spool), "OMP_NUM_THREADS": "1", "CAPTURE_FLUSH_INTERVAL_S": "0.5",
            "HOST_SERVICES_DIR": str(state_dir), "HOST_SERVICES_WATCHDOG_METRICS_PORT": str(metrics_port),
            "TRITON_BATON_DIR": str(state_dir / "baton"),
            # 5 s instead of 30 for a reloaded model's old stubs: the tests wait it out
            "HOST_SERVICES_WATCHDOG_DRAIN_S": "5"}


def probabilities_close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, atol=1e-5))
