"""bench/overload.py's accounting: CPU seconds per process during a step, and the instance's busy share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from serving.launch.server import ROOT
from tests.conftest import wait_for

sys.path.insert(0, str(ROOT / "bench"))
import overload  # noqa: E402


def test_cpu_meter_counts_the_server_trees_children_as_model_processes():
    # A "tritonserver" that only waits, with a child that burns 0.5 s of CPU then idles.
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ntime.sleep(60)"
    server = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"],
                              start_new_session=True)
    try:
        meter = overload.CpuMeter(server.pid)
        first = meter.sample()
        assert set(first) == {"load_generator", "tritonserver", "model_stubs"}
        wait_for(lambda: meter.sample()["model_stubs"] - first["model_stubs"] >= 0.45, 60, "the child's CPU seconds")
        d = overload.CpuMeter.delta(first, meter.sample(), 2.0)
        assert d["cpu_s"]["model_stubs"] >= 0.45 and d["cpu_s"]["tritonserver"] < 0.3
        assert d["cores_used"]["model_stubs"] == round(d["cpu_s"]["model_stubs"] / 2.0, 2)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_where_the_time_went_is_busy_share_and_idle_per_execution():
    step = {"server": {"execution_count": 40, "compute_infer_ms": 200.0, "avg_batch_size": 4.0},
            "cpu": {"wall_s": 16.0, "cores_used": {"load_generator": 0.1, "tritonserver": 0.05, "model_stubs": 1.0}}}
    t = overload.where_the_time_went(step, 1)
    assert t["instance_busy_fraction"] == 0.5 and t["idle_ms_per_execution"] == 200.0
    assert t["executions"] == 40 and t["mean_batch"] == 4.0
    assert overload.where_the_time_went({"server": None, "cpu": step["cpu"]}, 1)["idle_ms_per_execution"] is None
    # Two instances: execute() time is shared out, and includes waiting for the baton, so no idle per execution.
    two = overload.where_the_time_went(step, 2)
    assert two["instance_busy_fraction"] == 0.25 and two["idle_ms_per_execution"] is None and two["instances"] == 2


def test_execution_gaps_separate_idle_time_with_waiting_requests_from_idle_time_without():
    ms = 1_000_000
    # Three executions of model m: [0,100], [150,250] (gap 50 ms; request 3 waited through it),
    # [400,500] (gap 150 ms, nobody waiting: request 4 arrived during it). Another model's and an
    # execution outside the window are ignored.
    reqs = [
        {"model": "m", "QUEUE_START": 0, "COMPUTE_START": 0, "COMPUTE_END": 100 * ms},
        {"model": "m", "QUEUE_START": 1 * ms, "COMPUTE_START": 0, "COMPUTE_END": 100 * ms},
        {"model": "m", "QUEUE_START": 90 * ms, "COMPUTE_START": 150 * ms, "COMPUTE_END": 250 * ms},
        {"model": "m", "QUEUE_START": 390 * ms, "COMPUTE_START": 400 * ms, "COMPUTE_END": 500 * ms},
        {"model": "other", "QUEUE_START": 260 * ms, "COMPUTE_START": 260 * ms, "COMPUTE_END": 390 * ms},
        {"model": "m", "QUEUE_START": 900 * ms, "COMPUTE_START": 900 * ms, "COMPUTE_END": 950 * ms},
        {"model": "m", "QUEUE_START": 600 * ms},  # refused or still queued: never computed
    ]
    g = overload.execution_gaps(reqs, "m", 0, 800 * ms)
    assert g["executions"] == 3 and g["compute_ms_per_execution"] == 100.0
    assert g["idle_s"] == 0.2 and g["idle_s_while_requests_waited"] == 0.05
    assert g["busy_fraction"] == 0.6 and g["gap_ms_p50"] == 150.0
    assert overload.execution_gaps(reqs, "m", 890 * ms, 1000 * ms) is None  # one execution: no gap


def test_execution_gaps_merge_the_instances_overlapping_executions():
    ms = 1_000_000
    # Two instances: [0,100] and [50,180] overlap (one waited for the baton inside execute()),
    # then [200,300]: the model was idle only 20 ms, with request 3 waiting through it.
    reqs = [
        {"model": "m", "QUEUE_START": 0, "COMPUTE_START": 0, "COMPUTE_END": 100 * ms},
        {"model": "m", "QUEUE_START": 10 * ms, "COMPUTE_START": 50 * ms, "COMPUTE_END": 180 * ms},
        {"model": "m", "QUEUE_START": 170 * ms, "COMPUTE_START": 200 * ms, "COMPUTE_END": 300 * ms},
    ]
    g = overload.execution_gaps(reqs, "m", 0, 400 * ms)
    assert g["executions"] == 3 and g["idle_s"] == 0.02 and g["idle_s_while_requests_waited"] == 0.02
    assert g["busy_fraction"] == round(280 / 300, 3) and g["gap_ms_p50"] == 20.0


def test_read_trace_merges_a_requests_entries_across_files(tmp_path):
    prefix = tmp_path / "trace.json"
    (tmp_path / "trace.json.0").write_text(
        '[{"id":1,"timestamps":[{"name":"QUEUE_START","ns":5}]},{"id":1,"model_name":"m","model_version":1}]')
    (tmp_path / "trace.json.1").write_text('[{"id":1,"timestamps":[{"name":"COMPUTE_START","ns":9}]}]')
    (tmp_path / "trace.json.2").write_text('[{"id":2,"timest')  # cut short by a forced stop
    assert overload.read_trace(prefix) == [{"QUEUE_START": 5, "model": "m", "COMPUTE_START": 9}]
