"""bench/overload.py's accounting: CPU seconds per process during a step, and the instance's busy share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from serving.server import ROOT
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
    t = overload.where_the_time_went(step)
    assert t["instance_busy_fraction"] == 0.5 and t["idle_ms_per_execution"] == 200.0
    assert t["executions"] == 40 and t["mean_batch"] == 4.0
    assert overload.where_the_time_went({"server": None, "cpu": step["cpu"]})["idle_ms_per_execution"] is None
