"""Shared setup for the served overload tests (test_overload_served.py, test_request_parameters_served.py):
a real tritonserver with sd_img2img alone, and what the tests read from it (/metrics) and send it.

Each test file gets its own server (module scope: the tests fill its queue and read its counters),
so the files stay separate units for xdist (tests/conftest.py: nothing to add to SHARED_FILES)."""

from __future__ import annotations

import json
import os
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient

from bench.loadtest.stats import pending_from_metrics
from serving.launch.server import TritonProcess
from serving.runtime.baton import ComputeBaton, baton_dir
from tests.conftest import baton_files, baton_locks, free_port, png

MODEL = "sd_img2img"


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Environment the module's server gets beside OMP_NUM_THREADS=1; a test file overrides it."""
    return {}


@pytest.fixture(scope="module")
def server(model_repo, server_env, tmp_path_factory, request):
    """One tritonserver for the test file, with only sd_img2img, on free loopback ports."""
    log_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    s = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                      models=(MODEL,), log_path=log_dir / "tritonserver.log",
                      extra_env={"OMP_NUM_THREADS": "1", **server_env}).start(wait_s=600)
    yield s
    assert s.stop() == 0, s.log_tail()


def metrics(server: TritonProcess) -> str:
    """The server's /metrics page."""
    return urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()


def counter(text: str, name: str) -> float:
    """The value of counter ``name`` for MODEL on a /metrics page."""
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {MODEL} not on /metrics")


def inputs(tc: Any, steps: int, seed: int, rows: int = 1, image_seed: int | None = None) -> list:
    """An img2img request's inputs for client module ``tc`` (tritonclient.http or .grpc): ``rows``
    copies of one prompt, image and gen_args; the image is png(64, image_seed), by default the seed's."""
    args = json.dumps({"num_inference_steps": steps, "seed": seed}).encode()
    image = png(64, seed if image_seed is None else image_seed)
    out = []
    for name, value in (("prompt", b"a red house"), ("image", image), ("gen_args", args)):
        t = tc.InferInput(name, [rows, 1], "BYTES")
        t.set_data_from_numpy(np.array([[value]] * rows, dtype=np.object_))
        out.append(t)
    return out


def baton_paths(server: TritonProcess) -> list[Path]:
    """MODEL's compute baton files in `server` (one per device). A baton file is made by its first
    pipeline call, so one short call is sent first if none has run yet."""
    def found() -> list[Path]:
        return baton_files(baton_dir(), server.proc.pid, MODEL)
    if not found():
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            client.infer(MODEL, inputs(httpclient, 2, 0))
        finally:
            client.close()
    paths = found()
    assert paths, f"no compute baton for {MODEL} in {baton_dir()} after a call"
    return paths


@contextmanager
def baton_held(server: TritonProcess) -> Iterator[None]:
    """The test holds MODEL's compute baton (the runtime's own ComputeBaton, the same flock):
    every instance that takes a batch holds it in execution and waits, so 'every instance busy'
    lasts exactly until the block ends, however slow or loaded the host (a long call would end
    after a time that depends on the host: the burst test failed in CI when one did)."""
    with ExitStack() as stack:
        for path in baton_paths(server):
            stack.enter_context(ComputeBaton(path))
        yield


def all_waiting_one_queued(server: TritonProcess, instances: int) -> bool:
    """While the test holds the baton (baton_held): every instance holds a batch in execution and
    waits for it, and one request is queued (one queued request alone can also be a request the
    batcher holds back to fill a batch while an instance is still free)."""
    holder, waiters = baton_locks(baton_dir(), server.proc.pid, MODEL)
    return holder == os.getpid() and waiters == instances and pending_from_metrics(metrics(server), MODEL) == 1
