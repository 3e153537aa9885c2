"""Tiny random-weight checkpoints built with the real classes, so everything runs offline.

The architectures are the real ones (CLIP text encoder, UNet2DConditionModel, AutoencoderKL,
DPT, ResNet) at a few kilobytes each; outputs are noise, but every code path, shape rule and
batching decision is the same as with stabilityai/stable-diffusion-2-* and microsoft/resnet-50.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

SEED = 0
_WORDS = ["a", "photo", "of", "cat", "dog", "the", "red", "blue", "house", "sky", "tree", "in", "on"]


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE (GPT-2, CLIP) uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def tiny_tokenizer(out: Path):
    """A CLIP BPE tokenizer from a hand-written vocabulary (byte-level symbols + a few words)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges = []
    for word in _WORDS:  # merge each word left to right, as BPE training would have
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merges.append(f"{parts[0]} {parts[1]}")
            merged = parts[0] + parts[1]
            if merged not in vocab_list:
                vocab_list.append(merged)
            parts = [merged] + parts[2:]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(out))
    return tok


def tiny_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, vocab_size=vocab_size,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    ))


def tiny_unet(in_channels: int, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=32, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **extra,
    )


def tiny_vae(upscaler: bool = False):
    from diffusers import AutoencoderKL

    blocks = (8, 8, 16) if upscaler else (8, 8, 16, 16)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        **({"scaling_factor": 0.08333} if upscaler else {}),
    )


def ddim(**extra):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, **extra)


def _text_parts(out: Path) -> dict:
    tok = tiny_tokenizer(out / "tokenizer")
    return {"tokenizer": tok, "text_encoder": tiny_text_encoder(len(tok))}


def build_sd(out: Path, kind: str) -> None:
    """kind: img2img | depth | inpaint | upscale."""
    import diffusers
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(SEED)
    parts = _text_parts(out)
    common = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if kind == "img2img":
        pipe = diffusers.StableDiffusionImg2ImgPipeline(
            unet=tiny_unet(4), vae=tiny_vae(), scheduler=ddim(), **parts, **common)
    elif kind == "inpaint":
        pipe = diffusers.StableDiffusionInpaintPipeline(
            unet=tiny_unet(9), vae=tiny_vae(), scheduler=ddim(), **parts, **common)
    elif kind == "depth":
        depth = DPTForDepthEstimation(DPTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=37, backbone_out_indices=(0, 1, 2, 3), neck_hidden_sizes=(8, 16, 32, 32),
            fusion_hidden_size=16, is_hybrid=False))
        pipe = diffusers.StableDiffusionDepth2ImgPipeline(
            unet=tiny_unet(5), vae=tiny_vae(), scheduler=ddim(), depth_estimator=depth,
            feature_extractor=DPTImageProcessor(size={"height": 32, "width": 32}), **parts)
    elif kind == "upscale":
        pipe = diffusers.StableDiffusionUpscalePipeline(
            unet=tiny_unet(7, num_class_embeds=1000), vae=tiny_vae(upscaler=True),
            scheduler=ddim(prediction_type="v_prediction"),
            low_res_scheduler=diffusers.DDPMScheduler(beta_start=1e-4, beta_end=0.02, beta_schedule="scaled_linear"),
            max_noise_level=350, **parts)
    else:
        raise ValueError(f"kind: {kind!r} is not one of img2img, depth, inpaint, upscale")
    pipe.save_pretrained(str(out), safe_serialization=True)


def build_classifier(out: Path, labels: list[str] | None = None) -> None:
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(SEED)
    labels = labels or [f"class_{i}" for i in range(10)]
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                          layer_type="basic", num_labels=len(labels),
                          id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    ResNetForImageClassification(config).save_pretrained(str(out), safe_serialization=True)
    # microsoft/resnet-50's processor: resize shortest edge to 256 (crop_pct 0.875), crop 224.
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(str(out))


BUILDERS = {
    "sd_img2img": lambda out: build_sd(out, "img2img"),
    "sd_depth": lambda out: build_sd(out, "depth"),
    "sd_inpaint": lambda out: build_sd(out, "inpaint"),
    "sd_upscale": lambda out: build_sd(out, "upscale"),
    "resnet_classifier": build_classifier,
}
