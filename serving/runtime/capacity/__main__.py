"""Print the memory/time tables of docs/gpu.md from `costs.json`: `python -m serving.runtime.capacity`.

(`python -m serving.runtime.capacity.profile` re-traces the models and rewrites `costs.json` first.)
"""

from __future__ import annotations

from serving.runtime.capacity.limits import (ALLOCATOR_OVERHEAD, DEFAULT_MAX_REQUEST_SECONDS, GIB, GPU_CLASSES, WORKSPACE_BYTES,
                                             CostModel, RequestLimits, Workload, load_costs)
from serving.runtime.capacity.realsize import MODELS, SD_MODELS

STEPS = (20, 50)


def gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def weights_table() -> list[str]:
    lines = ["| model | weights GiB (fp16; upscaler VAE fp32) | components |", "|---|---|---|"]
    total = 0
    for model in MODELS:
        w = load_costs()["models"][model]["weight_bytes"]
        total += sum(w.values())
        lines.append(f"| {model} | {gib(sum(w.values()))} | " + ", ".join(f"{k} {gib(v)}" for k, v in sorted(w.items())) + " |")
    lines.append(f"| all five | {gib(total)} | |")
    return lines


def activations_table() -> list[str]:
    lines = ["| model | side (px) | UNet step (CFG pair) GiB | VAE decode GiB | decode, math attention GiB | "
             "VAE encode GiB | UNet TFLOP/step | decode TFLOP |", "|---|---|---|---|---|---|---|---|"]
    for model in SD_MODELS:
        t = load_costs()["models"][model]
        st = t["stages"]
        for i, side in enumerate(t["sides"]):
            enc = gib(st["vae_encode"]["peak_bytes"][i]) if "vae_encode" in st else "-"
            label = f"{side} in -> {side * t['output_scale']} out" if t["output_scale"] > 1 else str(side)
            lines.append(f"| {model} | {label} | {gib(st['unet_step']['peak_bytes'][i])} | "
                         f"{gib(st['vae_decode']['peak_bytes'][i])} | {gib(st['vae_decode']['peak_bytes_math_attention'][i])} | "
                         f"{enc} | {st['unet_step']['flops'][i] / 1e12:.2f} | {st['vae_decode']['flops'][i] / 1e12:.2f} |")
    return lines


def limits_table() -> list[str]:
    lines = ["| GPU | model | share | limit GiB | side (px) | max batch @20 steps | max batch @50 steps | "
             "GiB (batch 1) | s @50 steps (batch 1) |", "|---|---|---|---|---|---|---|---|---|"]
    for gpu in GPU_CLASSES.values():
        for model in SD_MODELS:
            limits = RequestLimits(model, gpu, vae_slicing=True, vae_tiling=True)
            sides = (128, 256, 384, 512) if model == "sd_upscale" else (512, 768, 1024)
            for side in sides:
                n20, n50 = (limits.max_items(side * side, s) for s in STEPS)
                e = limits.estimate(Workload(side * side, 1, 50))
                lines.append(f"| {gpu.name} | {model} | {limits.memory_fraction:g} | {gib(limits.memory_limit)} | {side} | "
                             f"{n20} | {n50} | {gib(e.memory_bytes)} | {e.seconds:.1f} |")
        resnet = RequestLimits("resnet_classifier", gpu)
        lines.append(f"| {gpu.name} | resnet_classifier | {resnet.memory_fraction:g} | {gib(resnet.memory_limit)} | 224 | "
                     f"{resnet.max_items(0, 0, cap=1024)} | | | |")
    return lines


def upscaler_tiling_table() -> list[str]:
    lines = ["| x4 upscaler input (output) | batch | decode untiled GiB | decode tiled GiB |", "|---|---|---|---|"]
    for side in (256, 384, 512):
        for batch in (1, 4):
            w = Workload(side * side, batch, 1)
            untiled = CostModel("sd_upscale", vae_slicing=False, vae_tiling=False)._decode("peak_bytes", w.pixels, batch)
            tiled = CostModel("sd_upscale", vae_slicing=True, vae_tiling=True)._decode("peak_bytes", w.pixels, batch)
            lines.append(f"| {side} ({side * 4}) | {batch} | {gib(untiled)} | {gib(tiled)} |")
    return lines


def main() -> None:
    print(f"Assumptions: allocator overhead x{ALLOCATOR_OVERHEAD}, workspace {gib(WORKSPACE_BYTES)} GiB, "
          f"max_request_seconds {DEFAULT_MAX_REQUEST_SECONDS:g}, sustained TFLOP/s "
          + ", ".join(f"{g.name} {g.tflops:g}" for g in GPU_CLASSES.values()) + "\n")
    for table in (weights_table(), activations_table(), upscaler_tiling_table(), limits_table()):
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
