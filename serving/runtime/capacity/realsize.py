"""Real-size model components built from the committed configs, without any weights download.

`configs/<model>/<component>/config.json` are the architectures of the checkpoints in
`serving.runtime.checkpoints.hub.HUB_IDS` (stable-diffusion-2-1-base, -2-depth, -2-inpainting,
x4-upscaler, microsoft/resnet-50). Built on the meta device they cost nothing and give exact
parameter counts and activation shapes (`serving.runtime.capacity.profile`); built on a GPU with random
weights they give real kernels, memory and time (`bench/gpu_check.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from transformers import AutoConfig, CLIPTextModel, DPTForDepthEstimation, ResNetForImageClassification

CONFIG_DIR = Path(__file__).parent / "configs"
SD_MODELS = ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale")
MODELS = SD_MODELS + ("resnet_classifier",)


def config_path(model: str, component: str) -> Path:
    path = CONFIG_DIR / model / component / "config.json"
    if not path.is_file():
        raise KeyError(f"no real-size config for {model}/{component} (looked for {path})")
    return path


def components(model: str) -> list[str]:
    """The components of `model` that hold weights, in load order."""
    if model not in MODELS:
        raise KeyError(f"model {model!r} is not one of {list(MODELS)}")
    return sorted(p.name for p in (CONFIG_DIR / model).iterdir() if (p / "config.json").is_file())


def build_component(model: str, component: str, eos_token_id: int | None = None) -> torch.nn.Module:
    """Instantiate one component with random weights on the current default device and dtype.

    Wrap the call in `torch.device("meta")` to build it without allocating anything.
    """
    path = config_path(model, component)
    if component in ("unet", "vae"):
        config = json.loads(path.read_text())
        cls = getattr(diffusers, config["_class_name"])
        return cls.from_config(config)
    config = AutoConfig.from_pretrained(str(path.parent))
    if component == "text_encoder":
        if eos_token_id is not None:  # pooling finds the EOS token by id: match the tokenizer
            config.eos_token_id = config.pad_token_id = eos_token_id
        return CLIPTextModel(config)
    if component == "depth_estimator":
        return DPTForDepthEstimation(config)
    if component == "model":
        return ResNetForImageClassification(config)
    raise KeyError(f"unknown component {component!r} of {model}")


def parameter_count(model: str) -> dict[str, int]:
    """Exact parameter count per component, from a meta-device build (no memory used)."""
    counts = {}
    with torch.device("meta"):
        for component in components(model):
            counts[component] = sum(p.numel() for p in build_component(model, component).parameters())
    return counts
