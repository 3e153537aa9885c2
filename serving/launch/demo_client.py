"""Call every served model once and write the results to `var/demo/` (`make client-demo`).

Uses a real photograph shipped with scikit-learn, resized to `--size` (64 suits the tiny CPU
checkpoints; use 512 with real weights on a GPU host).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from serving.launch.client import build_inputs, infer


def sample_photo(size: int) -> bytes:
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).resize((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def center_mask(size: int) -> bytes:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=255)
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.launch.demo_client", description=__doc__)
    p.add_argument("--url", default="127.0.0.1:8000")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("var/demo"))
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    photo, mask = sample_photo(a.size), center_mask(a.size)
    small = sample_photo(max(16, a.size // 4))
    gen = {"num_inference_steps": a.steps, "seed": 42}
    calls = {
        "sd_img2img (text2img)": ("sd_img2img", dict(prompt="a red house under a blue sky", gen_args=gen)),
        "sd_img2img": ("sd_img2img", dict(prompt="a watercolor painting", image=photo, gen_args=gen)),
        "sd_depth": ("sd_depth", dict(prompt="a temple made of ice", image=photo, gen_args=gen)),
        "sd_inpaint": ("sd_inpaint", dict(prompt="a golden statue", image=photo, mask_image=mask, gen_args=gen)),
        "sd_upscale": ("sd_upscale", dict(prompt="a temple", image=small, gen_args=gen)),
    }
    for label, (model, kwargs) in calls.items():
        data = infer(model, build_inputs(model, **kwargs), url=a.url)["generated_image"][0][0]
        path = a.out / f"{label.replace(' ', '_').replace('(', '').replace(')', '')}.png"
        path.write_bytes(data)
        print(f"{label:24s} -> {path} {Image.open(io.BytesIO(data)).size}")
    out = infer("resnet_classifier", build_inputs("resnet_classifier", image=photo), url=a.url)
    print(f"{'resnet_classifier':24s} -> label {out['label'][0][0].decode()!r}, "
          f"top probability {out['probabilities'][0].max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
