"""`python -m serving.runtime.checkpoints fetch` from a local folder and from a single `.safetensors`
file (diffusers' `from_single_file`), offline: the single file is made here from the tiny
img2img weights in the original Stable Diffusion (LDM) layout, and converting it back must
give the same tensors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from serving.runtime.checkpoints.__main__ import main
from serving.runtime.checkpoints.hub import source_kind, variant_ignores
from serving.runtime.checkpoints.provenance import sha256_path
from serving.runtime.checkpoints.tiny import BUILDERS
from serving.runtime.errors import CheckpointError

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_to_ldm(sd: dict, layers: int) -> dict:
    """Diffusers UNet2DConditionModel keys -> the original `model.diffusion_model.*` layout."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    has_attn = {int(m.group(1)) for k in sd if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, value in sd.items():
        if key in top:
            new = top[key]
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.*)", key):
            b, j = int(m.group(1)), int(m.group(2))
            new = f"input_blocks.{b * (layers + 1) + j + 1}.0.{_RESNET[m.group(3)]}.{m.group(4)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            new = f"input_blocks.{int(m.group(1)) * (layers + 1) + int(m.group(2)) + 1}.1.{m.group(3)}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{(int(m.group(1)) + 1) * (layers + 1)}.0.op.{m.group(2)}"
        elif m := re.match(r"mid_block\.resnets\.(\d)\.(\w+)\.(.*)", key):
            new = f"middle_block.{2 * int(m.group(1))}.{_RESNET[m.group(2)]}.{m.group(3)}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m.group(1)}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(.*)", key):
            new = f"output_blocks.{int(m.group(1)) * (layers + 1) + int(m.group(2))}.0.{_RESNET[m.group(3)]}.{m.group(4)}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            new = f"output_blocks.{int(m.group(1)) * (layers + 1) + int(m.group(2))}.1.{m.group(3)}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m.group(1))
            new = f"output_blocks.{b * (layers + 1) + layers}.{2 if b in has_attn else 1}.conv.{m.group(2)}"
        else:
            raise AssertionError(f"no LDM name for UNet key {key}")
        out[f"model.diffusion_model.{new}"] = value
    return out


def _vae_to_ldm(sd: dict, n_blocks: int) -> dict:
    """Diffusers AutoencoderKL keys -> the original `first_stage_model.*` layout."""
    out = {}
    for key, value in sd.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.block.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m.group(1)) + 1}", new)
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)$", new):
            new = f"{m.group(1)}.mid.attn_1.{_VAE_ATTN[m.group(2)]}.{m.group(3)}"
            if m.group(3) == "weight" and m.group(2) != "group_norm":
                value = value[:, :, None, None]  # the original uses 1x1 convolutions
        out[f"first_stage_model.{new}"] = value
    return out


def _single_file(pipe_dir: Path, out: Path) -> None:
    unet_cfg = json.loads((pipe_dir / "unet/config.json").read_text())
    vae_cfg = json.loads((pipe_dir / "vae/config.json").read_text())
    sd = _unet_to_ldm(load_file(pipe_dir / "unet/diffusion_pytorch_model.safetensors"), unet_cfg["layers_per_block"])
    sd |= _vae_to_ldm(load_file(pipe_dir / "vae/diffusion_pytorch_model.safetensors"), len(vae_cfg["block_out_channels"]))
    # transformers 5 saves CLIPTextModel without its `text_model.` prefix; the original layout has it.
    sd |= {f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v
           for k, v in load_file(pipe_dir / "text_encoder/model.safetensors").items()}
    save_file({k: v.contiguous() for k, v in sd.items()}, out)


@pytest.fixture(scope="module")
def tiny_img2img(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "sd_img2img"
    BUILDERS["sd_img2img"](out)
    return out


def _components(ckpt: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {part: load_file(next((ckpt / part).glob("*.safetensors"))) for part in ("unet", "vae", "text_encoder")}


def test_single_file_checkpoint_is_converted_with_provenance(tiny_img2img, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything comes from here: the file and the config folder
    single = tmp_path / "tiny-sd.safetensors"
    _single_file(tiny_img2img, single)
    repo = tmp_path / "repo"
    assert main(["fetch", "--repo", str(repo), "--models", "sd_img2img", "--source", str(single),
                 "--config", str(tiny_img2img)]) == 0
    ckpt = repo / "sd_img2img/1/checkpoint"
    got, want = _components(ckpt), _components(tiny_img2img)
    for part in want:
        assert set(got[part]) >= set(want[part]), part
        for key, tensor in want[part].items():
            torch.testing.assert_close(got[part][key], tensor, msg=f"{part}.{key}")
    assert not [p for p in ckpt.rglob("*") if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]
    prov = json.loads((ckpt / "provenance.json").read_text())
    assert prov["kind"] == "single-file" and prov["source"] == str(single.resolve())
    assert prov["source_sha256"] == sha256_path(single) and prov["dtype"] == "float32"
    assert prov["weights"]["unet/diffusion_pytorch_model.safetensors"] == \
        sha256_path(ckpt / "unet/diffusion_pytorch_model.safetensors")


def test_local_folder_in_fp16(tiny_img2img, tmp_path):
    repo = tmp_path / "repo"
    assert main(["fetch", "--repo", str(repo), "--models", "sd_img2img", "--source", str(tiny_img2img), "--fp16"]) == 0
    ckpt = repo / "sd_img2img/1/checkpoint"
    unet = load_file(ckpt / "unet/diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in unet.values()} == {torch.float16}
    prov = json.loads((ckpt / "provenance.json").read_text())
    assert (prov["kind"], prov["source"], prov["dtype"]) == ("local-folder", str(tiny_img2img.resolve()), "float16")


def test_pickle_and_unknown_sources_are_refused(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match=r"\.ckpt files are pickles"):
        source_kind(str(tmp_path / "model.ckpt"))
    with pytest.raises(CheckpointError, match="no such file"):
        source_kind(str(tmp_path / "missing.safetensors"))
    assert source_kind("stabilityai/stable-diffusion-2-depth") == "hub" and source_kind(None) == "hub"
    assert source_kind(str(tmp_path)) == "local-folder"


def test_hub_fetch_downloads_one_precision():
    files = ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
             "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/model.safetensors",
             "feature_extractor/preprocessor_config.json", "depth_estimator/model.safetensors"]
    assert variant_ignores(files, fp16=True) == ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"]
    assert variant_ignores(files, fp16=False) == ["unet/diffusion_pytorch_model.fp16.safetensors",
                                                  "text_encoder/model.fp16.safetensors"]
