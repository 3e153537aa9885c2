"""A load that hangs in tritonserver's Python backend after the model's initialize() returned
(serving/common/load_marker.py): the launcher names it, stops that server with its stubs, and
starts it again; any other failed start leaves nothing running either.

The real hang (the backend waiting for a stub that waits for it) cannot be caused at will; a model
that prints the marker and then never returns from initialize() looks the same from the log, which
is all the launcher reads, and it runs on the real tritonserver."""

from __future__ import annotations

import os

import pytest

from serving.common import load_marker
from serving.common.load_marker import LoadWatch
from serving.launch.server import LoadHang, TritonProcess
from tests.conftest import free_port

MODEL = "hangs_once"
CONFIG = ('backend: "python"\nmax_batch_size: 0\n'
          'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\noutput [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]\n'
          'instance_group [{ count: 1, kind: KIND_CPU }]\n')
CODE = """import os, sys, threading
import triton_python_backend_utils as pb_utils
from serving.common import load_marker

FLAG = {flag!r}

class TritonPythonModel:
    def initialize(self, args):
        print(load_marker.line(args["model_name"], args["model_instance_name"], os.getpid()), file=sys.stderr, flush=True)
        if os.path.exists(FLAG):  # hang this once: the next start finds no flag
            os.unlink(FLAG)
            threading.Event().wait()

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""


def server(tmp_path, hang: bool) -> TritonProcess:
    repo, flag = tmp_path / "repo", tmp_path / "hang-once"
    (repo / MODEL / "1").mkdir(parents=True)
    (repo / MODEL / "config.pbtxt").write_text(CONFIG)
    (repo / MODEL / "1" / "model.py").write_text(CODE.format(flag=str(flag)))
    if hang:
        flag.write_text("")
    return TritonProcess(repo=repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         log_path=tmp_path / "log" / "tritonserver.log", models=(MODEL,),
                         extra_env={"OMP_NUM_THREADS": "1"}, hang_s=3.0)


def stub_pids(repo) -> list[int]:
    from serving.common import procfs

    return [pid for pid in procfs.pids() if str(repo).encode() in b" ".join(procfs.cmdline(pid) or [])]


def test_a_hung_load_is_named_and_the_server_started_again(tmp_path, capsys):
    proc = server(tmp_path, hang=True)
    proc.start(wait_s=300, hang_restarts=1)
    try:
        assert proc._get(f"/v2/models/{MODEL}/ready") == 200
        log = proc.log_path.read_text()
        # two starts, in one log: the instance began twice and returned twice
        assert log.count(f"TRITONBACKEND_ModelInstanceInitialize: {MODEL}_0_0") == 2
        assert log.count(f"{load_marker.PREFIX} model={MODEL} instance={MODEL}_0_0") == 2
        assert log.count(f"successfully loaded '{MODEL}'") == 1
        err = capsys.readouterr().err
        assert f"initialize(): {MODEL} (" in err and "starting tritonserver again (1 of 1 restarts)" in err
    finally:
        assert proc.stop() == 0, proc.log_tail()
    assert stub_pids(tmp_path / "repo") == []


def test_out_of_restarts_it_raises_and_leaves_nothing_running(tmp_path):
    proc = server(tmp_path, hang=True)
    with pytest.raises(LoadHang, match=rf"every instance returned from initialize\(\): {MODEL} \(\d+ s ago\)") as exc:
        proc.start(wait_s=300, hang_restarts=0)
    assert exc.value.models == [MODEL]
    assert proc.proc.poll() is not None  # the server, stopped
    assert stub_pids(tmp_path / "repo") == []  # and its stub, blocked in initialize(), with it


def test_a_start_that_times_out_stops_the_server(tmp_path):
    # Before 2026-12-06 a start that timed out left tritonserver and its stubs running: a CI run's
    # hung server outlived its test by the whole session.
    proc = server(tmp_path, hang=True)
    proc.hang_s = 3600.0  # not recognised as a hang: only the time limit ends the wait
    with pytest.raises(TimeoutError, match=f"models not ready after 10s: \\['{MODEL}'\\]"):
        proc.start(wait_s=10, hang_restarts=1)
    assert proc.proc.poll() is not None
    assert stub_pids(tmp_path / "repo") == []


# -- reading the log (no server) ----------------------------------------------------------------

def test_the_watch_names_a_model_only_when_every_begun_instance_returned_and_time_passed(tmp_path):
    log = tmp_path / "tritonserver.log"
    log.write_text("I1206 model_lifecycle.cc:472] \"loading: m_a:1\"\n"
                   "I1206 python_be.cc:2249] \"TRITONBACKEND_ModelInstanceInitialize: m_a_0_0 (CPU device 0)\"\n"
                   "I1206 python_be.cc:2249] \"TRITONBACKEND_ModelInstanceInitialize: m_a_0_1 (CPU device 0)\"\n"
                   f"{load_marker.line('m_a', 'm_a_0_0', 11)}\n")
    watch = LoadWatch(log, hang_s=60)
    watch.poll(now=0.0)
    assert watch.hung(now=1000.0) == {}  # m_a_0_1 is still in its initialize()
    with open(log, "a") as f:
        f.write(f"{load_marker.line('m_a', 'm_a_0_1', 12)}\n{load_marker.line('other', 'other_0_0', 13)}")  # no newline yet
    watch.poll(now=10.0)
    assert watch.hung(now=69.0) == {}  # not yet hang_s since the last one returned
    assert watch.hung(now=70.0) == {"m_a": 60.0}  # the unfinished line is not read yet: "other" unseen
    with open(log, "a") as f:
        f.write("\nI1206 model_lifecycle.cc:839] \"successfully loaded 'm_a'\"\n")
    watch.poll(now=71.0)
    assert watch.hung(now=200.0) == {"other": 129.0}  # m_a loaded; other's line complete from 71 s


def test_a_model_with_a_warmup_is_never_named(tmp_path):
    # Triton runs model_warmup between the instances' return and "successfully loaded".
    log = tmp_path / "tritonserver.log"
    log.write_text("\"TRITONBACKEND_ModelInstanceInitialize: w_0_0 (CPU device 0)\"\n"
                   f"{load_marker.line('w', 'w_0_0', 1)}\n")
    watch = LoadWatch(log, hang_s=1, ignore=frozenset({"w"}))
    watch.poll(now=0.0)
    assert watch.hung(now=100.0) == {}
    plain = LoadWatch(log, hang_s=1)  # the same log, no warm-up: named
    plain.poll(now=0.0)
    assert plain.hung(now=100.0) == {"w": 100.0}


def test_the_watch_reads_from_its_offset_only(tmp_path):
    # A restart appends to the same log: the first start's lines must not count for the second.
    log = tmp_path / "tritonserver.log"
    log.write_text("\"TRITONBACKEND_ModelInstanceInitialize: m_0_0 (CPU device 0)\"\n"
                   f"{load_marker.line('m', 'm_0_0', 1)}\n")
    watch = LoadWatch(log, hang_s=1, offset=os.path.getsize(log))
    watch.poll(now=0.0)
    assert watch.hung(now=100.0) == {}


def test_marker_names_must_be_one_word():
    assert load_marker.line("m", "m_0_0", 7) == f"{load_marker.PREFIX} model=m instance=m_0_0 pid=7"
    with pytest.raises(ValueError, match="without spaces: 'a b', 'x'"):
        load_marker.line("a b", "x", 1)
