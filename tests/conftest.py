"""Fixtures shared by every test package: images, tiny checkpoints, a real tritonserver."""

from __future__ import annotations

import io
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# One compute thread per test process: `make test` runs three workers on two cores, and each
# worker, and every server and subprocess it starts, would otherwise run thread pools as wide as
# the host (torch's intra-op pool, MKL, OpenBLAS; model processes get two from
# serving.launch.server), whose threads spin at every barrier on cores the other workers need.
# Set before numpy or torch is imported (they read it then); a value already set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# The sidecar yields the cores to inference (niceness 19 by default, monitoring/capture/priority.py).
# Tests run three workers on two cores, and many wait for a sidecar to drain: at 19 it would get
# ~1.5 % of a core while the others run. So the test session starts every sidecar at its own
# priority; tests/monitoring/ingest/sidecar/test_sidecar_process.py checks the renicing itself.
os.environ.setdefault("CAPTURE_NICENESS", "0")

from serving import MODEL_NAMES  # noqa: E402
from serving.launch.server import free_port  # noqa: E402,F401 (the one definition; tests import it from here)

#: Instances per model of the test servers whose tests are not about the instance count (`TritonProcess(
#: instances=TEST_INSTANCES)`, serving/launch/instances.py): every stub costs ~4 s of CPU to start, and the
#: shipped two per model doubled the suite's start-up work. The tests of what two instances change
#: (overload, baton, stub death and the watchdog, capture's drop counts, spool-full, the soak, MME and the
#: rehearsal) serve the shipped configs (docs/testing.md).
TEST_INSTANCES = 1


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", step: float = 0.02) -> Any:
    """Poll ``cond`` until truthy (returns its value) or fail after ``timeout`` seconds: a
    condition with a deadline, never a sleep used as synchronisation."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def baton_files(baton_dir: Path, server_pid: int, model: str) -> list[Path]:
    """The model's compute baton files of tritonserver `server_pid` (serving/runtime/baton.py
    names them ``<server pid>-<model>-<device>.lock``; one per device, made by its first call)."""
    return sorted(Path(baton_dir).glob(f"{server_pid}-{model}-*.lock"))


def baton_locks(baton_dir: Path, server_pid: int, model: str) -> tuple[int | None, int]:
    """The model's compute baton (serving/runtime/baton.py) in the kernel's lock table: the pid
    holding it (the stub computing a batch; None: nobody is computing) and how many instances
    wait for it, each holding a batch Triton counts as in execution."""
    inodes = {f.stat().st_ino for f in baton_files(baton_dir, server_pid, model)}
    holder, waiters = None, 0
    with open("/proc/locks") as fh:
        for line in fh:
            # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF", "1: -> FLOCK ..." for a waiter (proc(5)).
            fields = line.split()
            waiting = len(fields) > 1 and fields[1] == "->"
            f = fields[1:] if waiting else fields
            if len(f) > 5 and f[1] == "FLOCK" and int(f[5].rsplit(":", 1)[1]) in inodes:
                if waiting:
                    waiters += 1
                else:
                    holder = int(f[4])
    return holder, waiters


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def photo(size: int = 64, seed: int = 0) -> Image.Image:
    """A textured RGB image (noise + gradient), so pipelines and stats see real variation."""
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
    pixels = np.clip(0.6 * grad + rng.normal(60, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def png(size: int = 64, seed: int = 0) -> bytes:
    return encode(photo(size, seed))


def mask_png(size: int = 64) -> bytes:
    m = np.zeros((size, size), dtype=np.uint8)
    m[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return encode(Image.fromarray(m, mode="L"))


def tensor(*values) -> np.ndarray:
    return np.array(list(values), dtype=np.object_).reshape(-1, 1)


def gen_args(**kw) -> bytes:
    base = {"num_inference_steps": 2, "seed": 7}
    base.update(kw)
    return json.dumps(base).encode()


@pytest.fixture(scope="session")
def model_repo() -> Path:
    """The shipped model repository, with tiny checkpoints built if `make weights` has not run."""
    from filelock import FileLock

    repo = ROOT / "model_repository"
    # Under xdist every worker asks at once: one builds, the others wait and then find them.
    (ROOT / "build").mkdir(exist_ok=True)
    with FileLock(str(ROOT / "build" / ".tiny-checkpoints.lock")):
        missing = [m for m in MODEL_NAMES if not (repo / m / "1" / "checkpoint" / "model_index.json").exists()
                   and not (repo / m / "1" / "checkpoint" / "config.json").exists()]
        if missing:
            from serving.runtime.checkpoints.__main__ import main

            main(["tiny", "--repo", str(repo), "--models", *missing])
    return repo


@pytest.fixture(scope="session")
def checkpoint(model_repo):
    def path(model: str) -> str:
        return str(model_repo / model / "1" / "checkpoint")
    return path


@pytest.fixture(scope="session")
def spool_dir(tmp_path_factory) -> Path:
    """Where the session's tritonserver hands monitoring records (see tests/monitoring)."""
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="session")
def triton_server(model_repo, spool_dir, tmp_path_factory):
    """One real tritonserver for the whole session, all five models, on free loopback ports."""
    from serving.launch.server import TritonProcess

    server = TritonProcess(
        repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
        log_path=tmp_path_factory.mktemp("triton-log") / "tritonserver.log",
        # As shipped (two instances): the load tester's open-loop test counts the server's successes
        # over its step, and with one instance an earlier test's SD work still ran into that window
        # (18 successes for 16 requests in a fresh-clone run).
        extra_env={"CAPTURE_SPOOL_DIR": str(spool_dir), "OMP_NUM_THREADS": "1"},
    )
    server.start(wait_s=600)
    yield server
    code = server.stop()
    assert code == 0, f"tritonserver exited with {code}:\n{server.log_tail()}"


# ---- parallel runs (pytest-xdist; `make test` runs `-n 3 --dist loadfile`, see docs/testing.md) ----
#
# A unit of work is a test file, so its module-scoped fixtures (a server, a store) are built once,
# on one worker. The files below that share a session fixture form one unit, so it is built once
# per run and not once per worker. (xdist's own `--dist loadgroup` does not group with pytest 9.2:
# it renames `item._nodeid`, which pytest 9 no longer reads; so the units are drawn here, by file.)

#: file -> unit: files whose tests share a session fixture.
SHARED_FILES: dict[str, str] = {
    # triton_server (this file): one tritonserver with all five models, nothing unloads or kills it
    "tests/serving/launch/test_triton_server.py": "triton_server",
    "tests/serving/runtime/test_response_encoding.py": "triton_server",
    "tests/bench/loadtest/test_against_server.py": "triton_server",
    # generative_scored (tests/monitoring/workflow/conftest.py): the sd_img2img store, built in-process
    "tests/monitoring/workflow/test_generative_spaces.py": "generative_store",
    "tests/monitoring/workflow/test_generative_report_browser.py": "generative_store",
}

#: Session fixtures of those units (a test file using one must be listed in SHARED_FILES).
SHARED_FIXTURES: dict[str, str] = {"triton_server": "triton_server", "generative_scored": "generative_store"}

#: Units that take longest, longest first, as measured on 2 cores (docs/testing.md). Workers get
#: them first so that a long one never starts last and holds the run open while the others idle.
SLOW_FIRST: tuple[str, ...] = (
    "tests/monitoring/workflow/test_demo_e2e.py",
    "generative_store",
    "tests/monitoring/workflow/test_explore.py",
    "tests/monitoring/capture/test_capture_through_triton.py",
    "tests/deploy/mme/test_mme_endpoint.py",
    "tests/reliability/test_soak_short.py",
    "tests/monitoring/workflow/test_exports_spaces.py",
    "tests/monitoring/workflow/test_report_browser.py",
    "tests/monitoring/analysis/drift/test_drift_defaults.py",
    "tests/reliability/test_stub_killed.py",
    "triton_server",
    "tests/monitoring/test_monitoring_cli.py",
    "tests/monitoring/ingest/sidecar/test_sidecar_process.py",
    "tests/env/test_env_build.py",
    "tests/monitoring/workflow/test_segments_served.py",
    "tests/monitoring/workflow/test_exports.py",
    "tests/reliability/test_mme_evicted_while_queued.py",
    "tests/monitoring/workflow/test_served_equals_baseline.py",
    "tests/monitoring/analysis/scoring/test_one_engine.py",
    "tests/deploy/test_entrypoint.py",
    "tests/deploy/mme/test_mme_capture.py",
    "tests/deploy/mme/test_mme_versions.py",
    "tests/deploy/mme/test_mme_stub_killed.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work of a test id: its file, or the shared unit its file belongs to."""
    path = nodeid.split("::", 1)[0]
    return SHARED_FILES.get(path, path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, unit in SHARED_FIXTURES.items():
            if fixture in item.fixturenames and unit_of(item.nodeid) != unit:
                # it still passes, but builds the fixture again on another worker
                warnings.warn(f"{item.nodeid} uses the session fixture {fixture}: add its file to SHARED_FILES "
                              f"in tests/conftest.py so that it runs in the {unit!r} unit", stacklevel=1)
    # The slow units first (the scheduler below keeps this order); the rest keep theirs (stable
    # sort), and a unit's tests stay together and in order, so a run without xdist is unchanged
    # but for the order of the files.
    rank = {unit: i for i, unit in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile` with the shared units above and the collection's order (slow first)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    config.option.loadscopereorder = False  # keep the collection's order, not "most tests first"
    return UnitScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist), before any worker
        # Assemble build/triton/backends once here: workers starting tritonservers at the same
        # time would otherwise copy the stub over a file another server is loading.
        from serving.launch.server import backend_dir

        try:
            backend_dir()
        except RuntimeError:
            pass  # no tritonserver installed: the tests that start one say so themselves
