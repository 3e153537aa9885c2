"""Helpers for the fault tests: a real tritonserver + watchdog, a client, the stubs of a model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.server import ROOT, server_env
from serving.watchdog import list_stubs
from tests.conftest import png, tensor


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll `cond` until truthy (a condition with a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


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
    return [s.pid for s in list_stubs(server_pid).values() if not s.zombie and s.instance.startswith(model + "_")]


class WatchdogProc:
    """`python -m serving.watchdog` as its own process, as every serving shape runs it."""

    def __init__(self, url: str, server_pid: int, events: Path, log: Path, spool: Path | None = None,
                 metrics_port: int = 0) -> None:
        self.events = events
        self.log = log
        cmd = [sys.executable, "-m", "serving.watchdog", "--url", url, "--server-pid", str(server_pid),
               "--events", str(events), "--interval", "0.25", "--metrics-port", str(metrics_port)]
        if spool is not None:
            cmd += ["--spool", str(spool)]
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=server_env())

    def wait_watching(self, timeout: float = 60.0) -> None:
        """Until the watchdog's first poll is done (it knows the stubs alive now)."""
        wait_for(lambda: "watching tritonserver" in self.output() or self.proc.poll() is not None, timeout,
                 "the watchdog's first poll")
        assert self.proc.poll() is None, self.output()

    def read_events(self) -> list[dict]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.strip()]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        return self.proc.returncode


def probabilities_close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, atol=1e-5))
