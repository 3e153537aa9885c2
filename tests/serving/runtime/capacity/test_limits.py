"""The memory/time model of the real-size models and the request limits derived from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.runtime.capacity.limits import (GIB, GPU_CLASSES, CostModel, RequestLimits, Workload, interpolate,
                                             load_costs)
from serving.runtime.capacity.realsize import MODELS, parameter_count
from serving.runtime.errors import InvalidInputError

A10G, H100 = GPU_CLASSES["a10g"], GPU_CLASSES["h100"]
RESULTS = Path(__file__).resolve().parents[4] / "bench" / "results"
# The H200 run (docs/gpu.md): all five models, then sd_depth again after the flat-depth fix.
H200_RUNS = ("gpu-check-nvidia-h200-2026-11-27.json", "gpu-check-nvidia-h200-2026-11-27-sd_depth.json")
# The largest batches the limits admit at every size (bench/gpu_check.py --corners every-side).
H200_LARGE_RUN = "gpu-check-nvidia-h200-2026-11-27-large.json"
# The one run on an H100: the largest calls the H100 limits admit at 50 steps.
H100_RUN = "gpu-check-nvidia-h100-2026-11-27-50steps.json"


def test_real_size_configs_have_the_published_parameter_counts():
    millions = {m: {c: round(n / 1e6, 1) for c, n in parameter_count(m).items()} for m in MODELS}
    sd2 = {"text_encoder": 340.4, "unet": 865.9, "vae": 83.7}  # OpenCLIP-H, SD 2 UNet, SD VAE
    assert millions["sd_img2img"] == sd2 and millions["sd_inpaint"] == sd2
    assert millions["sd_depth"] == dict(sd2, depth_estimator=122.4)  # DPT-hybrid MiDaS
    assert millions["sd_upscale"] == {"text_encoder": 340.4, "unet": 473.4, "vae": 55.3}
    assert millions["resnet_classifier"] == {"model": 25.6}


def test_committed_cost_table_matches_a_fresh_trace():
    from serving.runtime.capacity.profile import profile_model

    assert profile_model("sd_upscale") == load_costs()["models"]["sd_upscale"]


def test_cost_table_shows_the_upscaler_decode_risk():
    """2048x2048 output through the x4 upscaler's fp32 VAE: gigabytes with fused attention,
    hundreds of gigabytes if SDPA fell back to its math kernel."""
    decode = load_costs()["models"]["sd_upscale"]["stages"]["vae_decode"]
    sides = load_costs()["models"]["sd_upscale"]["sides"]
    at_512 = sides.index(512)
    assert decode["peak_bytes"][at_512] > 8 * GIB
    assert decode["peak_bytes_math_attention"][at_512] > 256 * GIB
    tiled = CostModel("sd_upscale", vae_tiling=True).activation_bytes(Workload(512 * 512, 1, 1))
    untiled = CostModel("sd_upscale", vae_tiling=False).activation_bytes(Workload(512 * 512, 1, 1))
    assert tiled < untiled / 2


def test_interpolation_is_linear_in_pixels_and_flat_below_the_grid():
    assert interpolate(50, [100, 200], [10, 30]) == 10
    assert interpolate(150, [100, 200], [10, 30]) == 20
    assert interpolate(300, [100, 200], [10, 30]) == 50


def test_all_five_models_share_one_gpu_of_each_class():
    context = 0.4 * GIB  # per process, outside the allocator (docs/gpu.md)
    for gpu in (A10G, H100):
        assert set(gpu.fractions) == set(MODELS)
        assert sum(gpu.fractions.values()) * gpu.memory_bytes + len(MODELS) * context <= gpu.memory_bytes
        for model in MODELS:  # every model still serves its standard size, alone
            limits = RequestLimits(model, gpu, vae_tiling=True)
            pixels = 0 if model == "resnet_classifier" else 128 * 128 if model == "sd_upscale" else 512 * 512
            assert limits.max_items(pixels, 50) >= 1, (gpu.name, model)


def test_over_memory_request_names_the_limit():
    limits = RequestLimits("sd_upscale", A10G, vae_tiling=True)
    with pytest.raises(InvalidInputError) as err:
        limits.check(Workload(512 * 512, 1, 20))
    text = str(err.value)
    assert "input 512x512 x batch 1 x 20 steps" in text and "sd_upscale" in text and "a10g" in text
    assert "over the limit of 5.6 GiB (gpu_memory_fraction 0.25 of 22.5 GiB)" in text
    assert "reduce the image size" in text
    assert RequestLimits("sd_upscale", H100, vae_tiling=True).max_items(512 * 512, 20) >= 1


def test_over_time_request_names_the_limit():
    limits = RequestLimits("sd_img2img", H100, max_seconds=10.0, vae_tiling=True)
    with pytest.raises(InvalidInputError, match=r"needs about \d+ s .* over the limit of max_request_seconds 10 s; "
                                                r"at most batch \d+ fits"):
        limits.check(Workload(512 * 512, 8, 150))
    limits.check(Workload(512 * 512, 1, 10))


def test_limits_grow_with_the_gpu_and_shrink_with_size_and_steps():
    small, big = RequestLimits("sd_img2img", A10G, vae_tiling=True), RequestLimits("sd_img2img", H100, vae_tiling=True)
    assert big.max_items(1024 * 1024, 50) > small.max_items(1024 * 1024, 50) >= 1
    assert small.max_items(512 * 512, 50) > small.max_items(1024 * 1024, 50)
    slow = RequestLimits("sd_img2img", A10G, max_seconds=10.0, vae_tiling=True)
    assert slow.max_items(512 * 512, 150) < slow.max_items(512 * 512, 20)


def test_limits_from_config_parameters():
    assert RequestLimits.from_parameters("sd_img2img", {}) is None  # auto on CPU: no GPU limits
    assert RequestLimits.from_parameters("sd_img2img", {"gpu_class": "none"}, device_memory=24 * GIB) is None
    auto = RequestLimits.from_parameters("sd_img2img", {}, device_memory=80 * GIB)
    assert auto.gpu.name == "h100" and auto.device_memory == 80 * GIB
    tuned = RequestLimits.from_parameters("sd_depth", {"gpu_class": "a10g", "gpu_memory_fraction": "0.5",
                                                       "max_request_seconds": "20"})
    assert (tuned.memory_fraction, tuned.max_seconds, tuned.memory_limit) == (0.5, 20.0, A10G.memory_bytes // 2)
    with pytest.raises(ValueError, match="gpu_class: 'v100' is not one of"):
        RequestLimits.from_parameters("sd_depth", {"gpu_class": "v100"})
    with pytest.raises(ValueError, match="parameter max_request_seconds: 'soon' is not a number"):
        RequestLimits.from_parameters("sd_depth", {"gpu_class": "a10g", "max_request_seconds": "soon"})
    with pytest.raises(ValueError, match=r"gpu_memory_fraction: 1.5 must be in \(0, 1\]"):
        RequestLimits.from_parameters("sd_depth", {"gpu_class": "a10g", "gpu_memory_fraction": "1.5"})


def measured_large_calls() -> list[tuple[str, dict]]:
    models: dict = {}
    for name in H200_RUNS:  # the later file's sd_depth replaces the first run's NaN one
        models.update(json.loads((RESULTS / name).read_text())["models"])
    return [(m, r) for m, v in models.items() for r in v["runs"] if r["label"].startswith("largest admitted")]


def test_h100_time_estimate_is_not_below_what_the_h200_measured_for_large_calls():
    calls = measured_large_calls()
    assert len(calls) == 8  # four SD models x (H100 corner, A10G corner)
    for model, run in calls:
        assert run["finite"] and run["error"] is None, (model, run["label"])
        limits = RequestLimits(model, H100, vae_slicing=True, vae_tiling=True)  # as a GPU instance loads
        estimate = limits.estimate(Workload(run["pixels"], run["batch"], run["steps"]))
        assert estimate.seconds >= run["latency_s"], (model, run["label"], estimate.seconds)
        assert estimate.seconds < 3 * run["latency_s"]  # and no longer 2-3x too pessimistic at 60


def test_largest_batches_the_limits_admit_fit_their_memory_share_on_the_h200():
    """Every size's largest admitted batch (up to 63 items), run with the H100's or A10G's share
    enforced: no out-of-memory, the estimate covers the peak allocated memory, and the batches
    run are still the ones the limits admit (a limit that admits more needs a new GPU run)."""
    report = json.loads((RESULTS / H200_LARGE_RUN).read_text())
    runs = [(m, r) for m, v in report["models"].items() for r in v["runs"]]
    assert len(runs) == 19  # img2img and inpaint 2 x 3 sizes, upscaler 4 + 3 sizes
    for model, run in runs:
        gpu = H100 if " on h100 " in run["label"] else A10G
        limits = RequestLimits(model, gpu, vae_slicing=True, vae_tiling=True)  # as a GPU instance loads
        where = (model, run["label"])
        assert run["error"] is None and run["finite"] and run["out_of_memory"] == 0, where
        assert limits.max_items(run["pixels"], run["steps"]) == run["batch"], where
        estimate = limits.estimate(Workload(run["pixels"], run["batch"], run["steps"])).memory_bytes / GIB
        assert run["peak_allocated_gib"] <= estimate, where
        assert run["peak_reserved_gib"] <= limits.memory_limit / GIB, where


def test_h100_time_estimate_covers_what_an_h100_measured_and_stays_under_the_limit():
    """On a real H100 the largest admitted 50-step calls finished within their estimates, so
    within max_request_seconds (SageMaker ends an invocation at 60 s)."""
    report = json.loads((RESULTS / H100_RUN).read_text())
    assert report["device"].startswith("NVIDIA H100")
    runs = [(m, r) for m, v in report["models"].items() for r in v["runs"] if " on h100 " in r["label"]]
    assert {m for m, _ in runs} == {"sd_img2img", "sd_upscale"}
    for model, run in runs:
        limits = RequestLimits(model, H100, vae_slicing=True, vae_tiling=True)  # as a GPU instance loads
        estimate = limits.estimate(Workload(run["pixels"], run["batch"], run["steps"]))
        assert run["error"] is None and run["finite"] and run["out_of_memory"] == 0, (model, run["label"])
        assert estimate.seconds >= run["latency_s"], (model, estimate.seconds, run["latency_s"])
        # The upscaler's call that took 50.9 s there is no longer admitted at that size.
        assert limits.fits(Workload(run["pixels"], run["batch"], run["steps"])) == (run["latency_s"] <= limits.max_seconds)
