"""The rehearsal's own checks (`make rehearse` runs the real thing; these show the checks can fail)."""

from __future__ import annotations

import os

from bench import rehearse
from serving import MODEL_NAMES


def test_check_finds_missing_doubled_and_empty_records():
    tally = rehearse.Tally(ok={m: [f"{m}-1", f"{m}-2"] for m in MODEL_NAMES})
    stored = {m: [{"request_id": f"{m}-1", "dim": 8}, {"request_id": f"{m}-2", "dim": 8}] for m in MODEL_NAMES}
    assert rehearse.check(tally, stored) == []
    stored["sd_depth"] = [{"request_id": "sd_depth-1", "dim": 8}]  # one missing
    stored["sd_upscale"].append({"request_id": "sd_upscale-1", "dim": 8})  # one doubled
    stored["resnet_classifier"][0]["dim"] = 0  # no embedding
    tally.failed.append("sd_inpaint #3: boom")
    problems = rehearse.check(tally, stored)
    assert any("sd_depth: 1 of 2 requests with missing" in p for p in problems)
    assert any("sd_upscale: 1 of 2 requests with more than one record" in p for p in problems)
    assert any("resnet_classifier: 1 of 2 requests with no embedding" in p for p in problems)
    assert any("request failed: sd_inpaint #3" in p for p in problems)
    assert rehearse.check(rehearse.Tally(), {})[0].endswith("no successful request")


def test_check_matches_by_id_so_a_loss_and_a_duplicate_do_not_cancel_out():
    tally = rehearse.Tally(ok={m: [f"{m}-1", f"{m}-2"] for m in MODEL_NAMES})
    stored = {m: [{"request_id": f"{m}-1", "dim": 8}, {"request_id": f"{m}-2", "dim": 8}] for m in MODEL_NAMES}
    # Two records for two answers, but -1 twice and -2 never; and a record nobody was answered with.
    stored["sd_img2img"] = [{"request_id": "sd_img2img-1", "dim": 8}] * 2 + [{"request_id": "stray", "dim": 8}]
    problems = rehearse.check(tally, stored)
    assert problems == ["sd_img2img: 1 of 2 requests with missing: ['sd_img2img-2']",
                        "sd_img2img: 1 of 2 requests with more than one record: ['sd_img2img-1']",
                        "sd_img2img: 1 records of request ids never answered: ['stray']"], problems


def test_leak_check_sees_this_venv_in_this_process():
    """Positive control: pytest runs from the venv, so its own process must be reported."""
    import numpy  # noqa: F401 - maps numpy's shared libraries from the venv

    found = rehearse.leaks([os.getpid()])
    assert any("site-packages" in f for f in found)
    assert rehearse.leaks([]) == []


def test_stock_environ_hides_the_venv(tmp_path):
    env = rehearse.stock_environ(tmp_path, "http://127.0.0.1:1", {})
    assert ".venv" not in env["PATH"] and "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env
    assert env["CAPTURE_STORE"].startswith("s3://") and env["SAGEMAKER_MULTI_MODEL"] == "true"


def test_stock_container_tritonserver_is_locked(tmp_path):
    """tritonserver started exactly as the rehearsal starts it (stock environment, explicit
    control, cwd outside the checkout): a caller without the key can neither load code nor
    unload; with the key the repository API answers."""
    from serving.launch.server import TritonProcess, free_port

    home = tmp_path / "container"
    environ = rehearse.stock_environ(home, "http://127.0.0.1:1", {"HOST_SERVICES_DIR": str(home / "host-services")})
    (tmp_path / "repository").mkdir()
    server = TritonProcess(repo=tmp_path / "repository", http_port=free_port(), grpc_port=free_port(),
                           metrics_port=free_port(), log_path=tmp_path / "tritonserver.log", explicit=True,
                           environ=environ, cwd=home)
    server.start(wait_s=120)
    try:
        marker = tmp_path / "ran"
        assert rehearse.control_plane_problems(server.http_url, None, marker) == []
        assert not marker.exists()
        assert server.control().index() == []
        assert "TRITON_CONTROL_KEY" not in environ  # the caller's dict is left alone; the server's has it
        assert f"TRITON_CONTROL_KEY={server.control_key}".encode() in open(f"/proc/{server.proc.pid}/environ", "rb").read()
    finally:
        assert server.stop() == 0, server.log_tail()


def test_watch_phases_settings_and_darkened_traffic():
    import io

    import numpy as np
    from PIL import Image

    env = rehearse.watch_environ("http://127.0.0.1:1", 120)
    assert env["MONITORING_WATCH_EVERY"] == "120s" and env["AWS_ENDPOINT_URL_CLOUDWATCH"] == "http://127.0.0.1:1"
    from deploy.monitoring_env import every_seconds

    assert every_seconds(env) == 120  # the same setting deploy create validates
    clean = np.asarray(Image.open(io.BytesIO(rehearse._png(32, 1))), np.float32)
    dark = np.asarray(Image.open(io.BytesIO(rehearse.darken(rehearse._png(32, 1)))), np.float32)
    assert dark.mean() < 0.35 * clean.mean()
