"""The compute baton: one pipeline call at a time across a model's instances (serving/runtime/baton.py)."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import signal
import time

import pytest

from serving.runtime.baton import DIR_ENV, ComputeBaton, instance_count

CTX = mp.get_context("fork")


def _hold_repeatedly(path: str, times: int, out) -> None:
    baton = ComputeBaton(path)
    for _ in range(times):
        with baton:
            start = time.monotonic()
            # Work that takes a while, so that the two processes' attempts really contend.
            x = 0
            for i in range(200_000):
                x += i
            out.put((os.getpid(), start, time.monotonic()))


def test_two_processes_never_hold_the_baton_together(tmp_path):
    path = str(tmp_path / "m.lock")
    out = CTX.Queue()
    procs = [CTX.Process(target=_hold_repeatedly, args=(path, 6, out)) for _ in range(2)]
    for p in procs:
        p.start()
    held = [out.get(timeout=120) for _ in range(12)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert {pid for pid, _, _ in held} == {p.pid for p in procs}
    held.sort(key=lambda h: h[1])
    for (_, _, end), (_, start, _) in zip(held, held[1:]):
        assert start >= end, "two calls held the baton at the same time"


def _hold_forever(path: str, ready) -> None:
    with ComputeBaton(path):
        ready.send("held")
        signal.pause()


def _try_lock(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_killed_holder_releases_the_baton(tmp_path):
    path = str(tmp_path / "m.lock")
    parent_end, child_end = CTX.Pipe()
    holder = CTX.Process(target=_hold_forever, args=(path, child_end))
    holder.start()
    try:
        assert parent_end.recv() == "held"
        assert not _try_lock(path)  # held: another instance would wait
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(60)
        assert holder.exitcode == -signal.SIGKILL
        assert _try_lock(path)  # the kernel let go with the process: the other instance goes on
    finally:
        if holder.is_alive():
            holder.kill()


def test_the_baton_is_per_server_model_and_device(tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path))
    two = {"instance_group": [{"count": 2, "kind": "KIND_AUTO"}]}
    a = ComputeBaton.for_instance("sd_img2img", "cpu", two)
    assert a is not None and a.path.parent == tmp_path
    assert str(os.getppid()) in a.path.name  # the tritonserver running the stub
    assert ComputeBaton.for_instance("sd_img2img", "cpu", two).path == a.path
    assert ComputeBaton.for_instance("sd_depth", "cpu", two).path != a.path
    assert ComputeBaton.for_instance("sd_img2img", "cuda:1", two).path != a.path
    # One instance, or instances allowed to compute together: no baton at all.
    assert ComputeBaton.for_instance("sd_img2img", "cpu", {"instance_group": [{"count": 1}]}) is None
    assert ComputeBaton.for_instance("sd_img2img", "cpu", two, {"instances_compute_together": "true"}) is None
    with pytest.raises(ValueError, match="instances_compute_together.*'maybe'"):
        ComputeBaton.for_instance("sd_img2img", "cpu", two, {"instances_compute_together": "maybe"})


def test_instance_count_sums_the_groups():
    assert instance_count({}) == 1
    assert instance_count({"instance_group": [{"count": 2}, {"count": 1, "kind": "KIND_CPU"}]}) == 3


def test_the_shipped_models_run_two_instances():
    """Every shipped model has the second instance the queue policy needs (see the baton's docstring)."""
    import json
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3] / "model_repository"
    configs = sorted(repo.glob("*/config.pbtxt"))
    assert len(configs) == 5
    for config in configs:
        counts = re.findall(r"count:\s*(\d+)", config.read_text())
        assert counts == ["2"], f"{config}: instance counts {json.dumps(counts)}"
