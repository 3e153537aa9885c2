"""Unit checks of the watchdog's parsing; the behaviour is tested against a real tritonserver in
tests/reliability/test_stub_killed.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from serving.runtime.watchdog import config_instance_names, config_instances, hold_lock, list_stubs, model_of, server_http_url


def test_model_of_handles_underscores_in_model_names():
    models = {"sd_img2img", "sd", "resnet_classifier"}
    assert model_of("sd_img2img_0_0", models) == "sd_img2img"
    assert model_of("resnet_classifier_1_3", models) == "resnet_classifier"
    assert model_of("sd_0_0", models) == "sd"
    assert model_of("other_0_0", models) is None


def started(proc: subprocess.Popen, marker: str) -> subprocess.Popen:
    """Until the child has exec'd (its cmdline shows `marker`)."""
    deadline = time.monotonic() + 30
    while marker.encode() not in open(f"/proc/{proc.pid}/cmdline", "rb").read():
        assert time.monotonic() < deadline, "child never exec'd"
        time.sleep(0.01)
    return proc


def test_server_http_url_from_the_command_line():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--http-port=18123",
                             "--http-address=0.0.0.0"])
    started(proc, "--http-port")
    try:
        assert server_http_url(proc.pid) == "127.0.0.1:18123"
    finally:
        proc.kill()
        proc.wait()
    off = started(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--allow-http=false"]),
                  "--allow-http")
    try:
        assert server_http_url(off.pid) is None  # HTTP disabled: nothing to heal through
    finally:
        off.kill()
        off.wait()


def test_list_stubs_only_sees_children_of_the_server():
    assert list_stubs(os.getpid()) == {}  # pytest has no stub children


def test_one_watchdog_per_lock(tmp_path):
    first = hold_lock(str(tmp_path / "w.lock"))
    assert first is not None and (tmp_path / "w.lock").read_text() == str(os.getpid())
    probe = subprocess.run([sys.executable, "-c", "import sys; from serving.runtime.watchdog import hold_lock; "
                            f"sys.exit(0 if hold_lock({str(tmp_path / 'w.lock')!r}) is None else 1)"],
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert probe.returncode == 0  # a second watchdog finds the lock taken
    first.close()


def test_config_instances_counts_every_stub_of_a_loaded_model():
    """Triton's config of a loaded model: CPU groups run `count` stubs, GPU groups `count` per GPU
    (no GPU here to load one on: the GPU config is written as Triton returns it)."""
    assert config_instances({"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}) == 2
    assert config_instances({"instance_group": [{"count": 2, "kind": "KIND_GPU", "gpus": [0, 1]}]}) == 4
    assert config_instances({"instance_group": [{"count": 2, "kind": "KIND_GPU", "gpus": [0]},
                                                {"count": 1, "kind": "KIND_CPU"}]}) == 3
    assert config_instances({}) == 1  # no group: Triton's default, one instance


def test_config_instance_names_are_the_stubs_instance_names():
    """Triton core names an instance `<group name>_<k>` (the stub's argv; not by device)."""
    assert config_instance_names({"name": "m", "instance_group": [{"name": "m_0", "count": 2, "kind": "KIND_CPU"}]}) \
        == ["m_0_0", "m_0_1"]
    assert config_instance_names({"name": "m", "instance_group": [{"name": "m_0", "count": 1, "kind": "KIND_GPU",
                                                                   "gpus": [0, 1]}]}) == ["m_0_0", "m_0_0"]
    assert config_instance_names({"name": "m"}) == ["m_0_0"]  # no group: one instance in group m_0
