"""bench/gpu_check.py runs end to end on CPU in its tiny mode, and its real-size builder works."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from serving.launch.server import ROOT, server_env


def test_tiny_gpu_check_writes_a_complete_report(tmp_path):
    out = tmp_path / "report"
    subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--models", "sd_img2img,resnet_classifier",
                    "--out", str(out)], check=True, cwd=ROOT, env=server_env(), capture_output=True, timeout=900)
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["mode"] == "tiny" and report["device"] == "cpu"
    assert set(report["models"]) == {"sd_img2img", "resnet_classifier"}
    sd = report["models"]["sd_img2img"]
    labels = [r["label"] for r in sd["runs"]]
    assert labels == ["standard, capture off", "standard, capture on", "seed 7 alone", "seed 7 in a batch of 3"]
    assert all(r["error"] is None and r["finite"] and r["latency_s"] > 0 for r in sd["runs"])
    assert sd["attention"] == "sdpa" and any("scaled_dot_product" in k for k in sd["attention_kernels"])
    assert sd["determinism"]["max_abs_pixel_diff"] <= 1  # fp32 CPU: batched and alone agree to rounding
    assert sd["counters"] == {"out_of_memory": 0, "nonfinite_outputs": 0, "memory_releases": 0, "expired": 0,
                              "finished_late": 0}
    assert report["models"]["resnet_classifier"]["runs"][0]["error"] is None
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# GPU check: cpu (tiny)") and "| sd_img2img | standard, capture on | 64 | 1 | 2 |" in md


def test_real_size_builder_gives_a_loadable_checkpoint(tmp_path):
    """The builder the GPU run uses, on the one model small enough for a CPU test (ResNet-50)."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    gpu_check.build_realsize("resnet_classifier", tmp_path, "cpu", torch.float32)
    from serving.runtime.device import DeviceSpec
    from serving.runtime.models import runtime_class

    rt = runtime_class("resnet_classifier")(str(tmp_path), DeviceSpec.for_instance("CPU"))
    rt.load()
    (result,) = rt.handle([gpu_check.request("resnet_classifier", 64, 1, 0)])
    assert result.error is None
    probs = result.outputs["probabilities"]
    assert probs.shape == (1, 1000) and np.isclose(probs.sum(), 1.0, atol=1e-4)
