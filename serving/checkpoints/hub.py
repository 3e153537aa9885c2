"""Real checkpoints from the Hugging Face hub, for networked machines.

`fetch()` downloads with `from_pretrained` (safetensors only, fp16 variant for GPU hosts) and
re-saves into the model's checkpoint directory, so serving always loads a local directory.
"""

from __future__ import annotations

from pathlib import Path

HUB_IDS = {
    "sd_img2img": "stabilityai/stable-diffusion-2-1-base",
    "sd_depth": "stabilityai/stable-diffusion-2-depth",
    "sd_inpaint": "stabilityai/stable-diffusion-2-inpainting",
    "sd_upscale": "stabilityai/stable-diffusion-x4-upscaler",
    "resnet_classifier": "microsoft/resnet-50",
}


def fetch(model: str, out: Path, source: str | None = None, fp16: bool = False) -> None:
    """Download `source` (default: HUB_IDS[model]) and save it as a safetensors directory at `out`."""
    import torch

    source = source or HUB_IDS[model]
    dtype = torch.float16 if fp16 else torch.float32
    variant = {"variant": "fp16"} if fp16 else {}
    if model == "resnet_classifier":
        from transformers import AutoImageProcessor, ResNetForImageClassification

        ResNetForImageClassification.from_pretrained(source, use_safetensors=True, dtype=dtype).save_pretrained(out)
        AutoImageProcessor.from_pretrained(source).save_pretrained(out)
        return
    import diffusers
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    cls = {
        "sd_img2img": diffusers.StableDiffusionImg2ImgPipeline,
        "sd_depth": diffusers.StableDiffusionDepth2ImgPipeline,
        "sd_inpaint": diffusers.StableDiffusionInpaintPipeline,
        "sd_upscale": diffusers.StableDiffusionUpscalePipeline,
    }[model]
    extra = {}
    if model == "sd_depth":  # its model_index.json names DPTFeatureExtractor (gone in transformers 5)
        extra["feature_extractor"] = DPTImageProcessor.from_pretrained(source, subfolder="feature_extractor")
        extra["depth_estimator"] = DPTForDepthEstimation.from_pretrained(
            source, subfolder="depth_estimator", use_safetensors=True, dtype=dtype)
    pipe = cls.from_pretrained(source, use_safetensors=True, dtype=dtype, **variant, **extra)
    pipe.save_pretrained(out, safe_serialization=True)
