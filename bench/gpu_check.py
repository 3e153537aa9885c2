"""One-shot GPU check: every model at real size, in-process, with no network and no hub.

    python bench/gpu_check.py                  # on one H100/H200 (about 5 minutes), real size
    python bench/gpu_check.py --tiny           # on CPU: tiny checkpoints, tiny sizes (CI runs this)
    python bench/gpu_check.py --max-batch 64 --steps 5 --corners every-side --large-only
                                               # the largest batch the limits admit at every size

Real-size checkpoints are built on the fly from `serving/runtime/capacity/configs` with random fp16
weights (outputs are noise; kernels, memory and time are the real ones), saved as safetensors
and loaded through the runtimes' normal load path. Per model it records:

- peak GPU memory (allocated and reserved) and latency at the standard size and at the largest
  request the validator admits on an H100 and on an A10G (at the largest size, or with
  `--corners every-side` at every size of the grid; batch capped by `--max-batch`), next to the
  model's estimate (`serving.runtime.capacity.limits`) and whether the call ran out of memory; the A10G
  is simulated by bounding the process to its share of an A10G's memory with
  `set_per_process_memory_fraction`;
- latency with capture (embedding taps) on and off;
- the attention kernels that actually ran (profiler), whether outputs were finite, and
  whether a seed gives the same image alone and inside a batch.

It writes `<out>.json` and `<out>.md` (default bench/results/gpu-check-<device>-<date>).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile
from transformers import ConvNextImageProcessor, DPTImageProcessor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from serving.runtime.capacity.limits import GIB, GPU_CLASSES, RequestLimits, Workload  # noqa: E402
from serving.runtime.capacity.realsize import MODELS, build_component, components  # noqa: E402
from serving.runtime.checkpoints import tiny  # noqa: E402
from serving.runtime.device import DeviceSpec  # noqa: E402
from serving.runtime.models import runtime_class  # noqa: E402
from serving.runtime.models.base import RawRequest  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ATTENTION_MARKERS = ("flash", "fmha", "efficient_attention", "scaled_dot_product", "attention_math", "xformers")


# -- checkpoints ------------------------------------------------------------------------------
def build_realsize(model: str, out: Path, device: str, dtype: torch.dtype) -> None:
    """Random-weight real-size checkpoint with the serving layout (tiny offline tokenizer)."""
    torch.manual_seed(0)
    if model == "resnet_classifier":
        with torch.device(device):
            net = build_component(model, "model").to(dtype)
        net.save_pretrained(str(out), safe_serialization=True)
        ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(str(out))
        return
    tok = tiny.tiny_tokenizer(out / "tokenizer")
    with torch.device(device):
        parts = {c: build_component(model, c, eos_token_id=tok.eos_token_id).to(dtype) for c in components(model)}
    common = dict(tokenizer=tok, text_encoder=parts["text_encoder"], unet=parts["unet"], vae=parts["vae"])
    if model == "sd_upscale":
        pipe = diffusers.StableDiffusionUpscalePipeline(
            **common, scheduler=tiny.ddim(prediction_type="v_prediction"), max_noise_level=350,
            low_res_scheduler=diffusers.DDPMScheduler(beta_start=1e-4, beta_end=0.02, beta_schedule="scaled_linear"))
    elif model == "sd_depth":
        pipe = diffusers.StableDiffusionDepth2ImgPipeline(
            **common, scheduler=tiny.ddim(), depth_estimator=parts["depth_estimator"],
            feature_extractor=DPTImageProcessor(size={"height": 384, "width": 384}))
    else:
        cls = diffusers.StableDiffusionInpaintPipeline if model == "sd_inpaint" else diffusers.StableDiffusionImg2ImgPipeline
        pipe = cls(**common, scheduler=tiny.ddim(), safety_checker=None, feature_extractor=None,
                   requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    del pipe, parts


def build_tiny(model: str, out: Path) -> None:
    tiny.BUILDERS[model](out)


# -- requests ---------------------------------------------------------------------------------
def image_bytes(side: int, seed: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    if mode == "L":  # a mask: repaint the centre
        img = Image.new("L", (side, side), 0)
        img.paste(255, (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def request(model: str, side: int, rows: int, steps: int, seed: int = 0) -> RawRequest:
    def col(values: list[bytes]) -> np.ndarray:
        return np.array(values, dtype=np.object_).reshape(-1, 1)

    if model == "resnet_classifier":
        return RawRequest({"image": col([image_bytes(side, seed + r) for r in range(rows)])})
    args = {"num_inference_steps": steps, "seed": seed}
    if model in ("sd_img2img", "sd_depth", "sd_inpaint"):
        args["strength"] = 1.0  # every requested step runs: latency per step is comparable
    inputs = {"prompt": col([b"a photo of a red house"] * rows), "gen_args": col([json.dumps(args).encode()] * rows),
              "image": col([image_bytes(side, seed + r) for r in range(rows)])}
    if model == "sd_inpaint":
        inputs["mask_image"] = col([image_bytes(side, 0, "L")] * rows)
    return RawRequest(inputs)


# -- measurement ------------------------------------------------------------------------------
def synchronize(spec: DeviceSpec) -> None:
    if spec.is_gpu:
        torch.cuda.synchronize(spec.index)


def run(rt, spec: DeviceSpec, req: RawRequest, label: str, capture: bool = False,
        limits: RequestLimits | None = None, workload: Workload | None = None) -> dict[str, Any]:
    rt.capture_embeddings = capture
    if spec.is_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(spec.index)
    synchronize(spec)
    before = dict(rt.counters)
    start = time.perf_counter()
    (result,) = rt.handle([req])
    synchronize(spec)
    row: dict[str, Any] = {"label": label, "capture": capture, "latency_s": round(time.perf_counter() - start, 3),
                           "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}"}
    # An out-of-memory call is retried once after a release: a success can still hide one.
    row["out_of_memory"] = rt.counters["out_of_memory"] - before.get("out_of_memory", 0)
    if workload is not None:
        row.update(pixels=workload.pixels, batch=workload.items, steps=workload.steps)
    if spec.is_gpu:
        row["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(spec.index) / GIB, 2)
        row["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(spec.index) / GIB, 2)
    if limits is not None and workload is not None:
        est = limits.estimate(workload)
        row.update(estimate_gib=round(est.memory_bytes / GIB, 2), estimate_s=round(est.seconds, 2),
                   limit_gib=round(limits.memory_limit / GIB, 2))
    row["outputs"] = result.outputs
    return row


def attention_kernels(rt, spec: DeviceSpec, req: RawRequest) -> list[str]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if spec.is_gpu else [])
    with profile(activities=activities) as prof:
        rt.handle([req])
        synchronize(spec)
    names = {e.name for e in prof.events()}
    return sorted(n for n in names if any(m in n.lower() for m in ATTENTION_MARKERS))[:12]


def decoded(row: dict[str, Any]) -> list[np.ndarray]:
    outputs = row.pop("outputs", None) or {}
    images = outputs.get("generated_image")
    if images is None:
        return [np.asarray(outputs["probabilities"])] if "probabilities" in outputs else []
    return [np.asarray(Image.open(io.BytesIO(b))).astype(np.int16) for b in images.reshape(-1)]


def admitted_corners(limits: RequestLimits, sides: tuple[int, ...], steps: int, max_batch: int,
                     every_side: bool = False) -> list[tuple[int, int]]:
    """(side, batch) of the largest batch admitted per size, largest size first: only the
    largest size that admits one item, or every size that does."""
    corners = []
    for side in sorted(sides, reverse=True):
        n = min(max_batch, limits.max_items(side * side, steps, cap=max(64, max_batch)))
        if n >= 1:
            corners.append((side, n))
            if not every_side:
                break
    return corners


def check_model(model: str, ckpt: Path, spec: DeviceSpec, tiny_mode: bool, deadline: float,
                max_batch: int | None = None, steps: int | None = None, every_side: bool = False,
                large_only: bool = False) -> dict[str, Any]:
    sd = model != "resnet_classifier"
    max_batch = max_batch or (4 if sd else 32)
    start = time.perf_counter()
    rt = runtime_class(model)(str(ckpt), spec, max_pipeline_batch=max_batch,
                              parameters={"gpu_class": "none"} if tiny_mode else {"gpu_class": "h100"})
    rt.load()
    report: dict[str, Any] = {"load_s": round(time.perf_counter() - start, 2),
                              "attention": getattr(rt, "attention", None), "runs": []}
    steps = (steps or (2 if tiny_mode else 20)) if sd else 0  # the classifier has no steps
    standard = (32 if model == "sd_upscale" else 64) if tiny_mode else (128 if model == "sd_upscale" else 512)
    if model == "resnet_classifier":
        standard = 64 if tiny_mode else 224

    def one(label, side, rows, capture=False, limits=None, seed=0):
        w = Workload(side * side, rows, steps, encodes_image=True)
        row = run(rt, spec, request(model, side, rows, steps, seed), label, capture, limits, w)
        images = decoded(row)
        row["finite"] = row["error"] is None or "non-finite" not in row["error"]
        report["runs"].append(row)
        return images

    one("warm-up", standard, 1)
    report["runs"].pop()
    if not large_only:
        one("standard, capture off", standard, 1, limits=rt.limits)
        one("standard, capture on", standard, 1, capture=True, limits=rt.limits)
        alone = one("seed 7 alone", standard, 1, seed=7)
        if sd:  # the same seed as the first row of a batch of three
            batched = one("seed 7 in a batch of 3", standard, 3, seed=7)
            if alone and batched:
                diff = int(np.abs(alone[0] - batched[0]).max())
                report["determinism"] = {"max_abs_pixel_diff": diff, "identical": diff == 0}
        report["attention_kernels"] = attention_kernels(rt, spec, request(model, standard, 1, 1))
    else:
        report["attention_kernels"] = []
    if not tiny_mode and sd:
        sides = (128, 256, 384, 512) if model == "sd_upscale" else (512, 768, 1024)
        for gpu_name in ("h100", "a10g"):
            gpu = GPU_CLASSES[gpu_name]
            share = gpu.fractions[model] * gpu.memory_bytes  # this model's share of that GPU
            total = spec.total_memory()
            limits = RequestLimits(model, gpu, memory_fraction=share / total, memory_bytes=total,
                                   vae_slicing=rt.vae_slicing, vae_tiling=rt.vae_tiling)
            corners = admitted_corners(limits, sides, steps, max_batch, every_side)
            if not corners:
                report["runs"].append({"label": f"largest on {gpu_name}", "error": "nothing admitted"})
            for side, batch in corners:
                at = f" at {side}" if every_side else ""
                if time.perf_counter() > deadline:
                    report["runs"].append({"label": f"largest{at} on {gpu_name}", "error": "skipped: time budget spent"})
                    continue
                torch.cuda.set_per_process_memory_fraction(min(1.0, share / total), spec.index)
                try:
                    one(f"largest admitted{at} on {gpu_name} ({gpu_name} memory share enforced)", side, batch,
                        limits=limits)
                finally:
                    torch.cuda.set_per_process_memory_fraction(1.0, spec.index)
    report["counters"] = dict(rt.counters)
    del rt
    if spec.is_gpu:
        torch.cuda.empty_cache()
    return report


# -- report -----------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check: {report['device']} ({report['mode']})", "",
             f"{report['date']}, torch {report['versions']['torch']}, diffusers {report['versions']['diffusers']}, "
             f"{report['elapsed_s']} s in all. Weights are random (outputs are noise); sizes are real unless "
             f"mode is tiny. Estimates come from serving/runtime/capacity (docs/gpu.md). Options: {report['options']}.", "",
             "| model | run | px | batch | steps | latency s | est. s | peak alloc GiB | peak reserved GiB | est. GiB | limit GiB | finite | OOM | error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, m in report["models"].items():
        if "error" in m:
            lines.append(f"| {model} | load | | | | | | | | | | | | {m['error'][:120]} |")
            continue
        for r in m["runs"]:
            side = int(r["pixels"] ** 0.5) if "pixels" in r else ""
            cells = [model, r["label"], side, r.get("batch", ""), r.get("steps", ""), r.get("latency_s", ""),
                     r.get("estimate_s", ""), r.get("peak_allocated_gib", ""), r.get("peak_reserved_gib", ""),
                     r.get("estimate_gib", ""), r.get("limit_gib", ""), r.get("finite", ""), r.get("out_of_memory", ""),
                     (r.get("error") or "")[:120]]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| model | attention setting | kernels seen | same seed alone vs batch | counters |", "|---|---|---|---|---|"]
    for model, m in report["models"].items():
        if "error" in m:
            continue
        det = m.get("determinism")
        det_text = "" if det is None else ("identical" if det["identical"] else f"max pixel diff {det['max_abs_pixel_diff']}")
        lines.append(f"| {model} | {m['attention']} | {', '.join(m['attention_kernels'][:4])} | {det_text} | {m['counters']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One-shot GPU check of all five models")
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoints and sizes (CPU CI)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, help="report path without extension")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="skip the large runs, and the models not yet started, after this")
    parser.add_argument("--max-batch", type=int, help="largest batch tried (default 4 for SD, 32 for the classifier)")
    parser.add_argument("--steps", type=int, help="denoising steps of every SD run (default 20, tiny 2); "
                        "memory does not depend on it, time and the time limit do")
    parser.add_argument("--corners", choices=("largest", "every-side"), default="largest",
                        help="the largest admitted batch at the largest admitted size, or at every size")
    parser.add_argument("--large-only", action="store_true",
                        help="only the admitted corners (after a warm-up): no standard, capture, seed or profiler runs")
    args = parser.parse_args(argv)
    for name in ("max_batch", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')}: {value} must be >= 1")
    started = time.perf_counter()
    deadline = started + args.budget_s
    spec = DeviceSpec.auto()
    if not args.tiny and not spec.is_gpu:
        parser.error("real-size checks need a GPU; use --tiny on CPU")
    device_name = torch.cuda.get_device_name(spec.index) if spec.is_gpu else "cpu"

    report: dict[str, Any] = {
        "device": device_name, "mode": "tiny" if args.tiny else "real-size random fp16 weights",
        "date": dt.date.today().isoformat(),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "total_memory_gib": round(spec.total_memory() / GIB, 1) if spec.is_gpu else None,
        "options": {"max_batch": args.max_batch, "steps": args.steps, "corners": args.corners,
                    "large_only": args.large_only, "budget_s": args.budget_s},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            ckpt = Path(tmp) / model
            if time.perf_counter() > deadline:
                report["models"][model] = {"error": "skipped: time budget spent"}
                continue
            if spec.is_gpu:  # the previous model's runtime bounded this process to its share
                torch.cuda.set_per_process_memory_fraction(1.0, spec.index)
            try:
                if args.tiny:
                    build_tiny(model, ckpt)
                else:
                    build_realsize(model, ckpt, spec.device, spec.dtype)
                report["models"][model] = check_model(model, ckpt, spec, args.tiny, deadline, args.max_batch,
                                                      args.steps, args.corners == "every-side", args.large_only)
            except Exception as exc:  # one model's failure is a finding, not the end of the check
                traceback.print_exc()
                report["models"][model] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{model}: done at {time.perf_counter() - started:.0f} s", flush=True)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    slug = device_name.lower().replace(" ", "-")
    out = args.out or RESULTS / f"gpu-check-{slug}-{report['date']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out}.json and {out}.md")
    return 0 if all("error" not in m for m in report["models"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
