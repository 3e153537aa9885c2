"""Real checkpoints: a hub id at a pinned revision, a local folder, or one `.safetensors` file.

`fetch()` loads with `from_pretrained` / `from_single_file` (safetensors only, fp16 where
asked) and re-saves into the model's checkpoint directory, so serving always loads a local
directory; then it verifies the result holds no pickle file and records where the weights
came from (`provenance.json`, see `serving.runtime.checkpoints.provenance`).
"""

from __future__ import annotations

from pathlib import Path

from serving.runtime.checkpoints import provenance
from serving.runtime.checkpoints.safety import PICKLE_SUFFIXES, check_checkpoint
from serving.runtime.errors import CheckpointError

HUB_IDS = {
    "sd_img2img": "stabilityai/stable-diffusion-2-1-base",
    "sd_depth": "stabilityai/stable-diffusion-2-depth",
    "sd_inpaint": "stabilityai/stable-diffusion-2-inpainting",
    "sd_upscale": "stabilityai/stable-diffusion-x4-upscaler",
    "resnet_classifier": "microsoft/resnet-50",
}
# The revision fetched per model (docs/deploy.md#real-weights). A commit sha pins the bytes;
# "main" is resolved at fetch time and the resolved commit is what provenance.json records and
# `fetch` prints (paste it here to pin). Override with `--revision MODEL=REV` / `make
# weights-real REVISIONS="MODEL=REV ..."`. No commit could be verified (safetensors present)
# from the offline machine this table was written on, so every entry starts at "main".
REVISIONS = {
    "sd_img2img": "main",
    "sd_depth": "main",
    "sd_inpaint": "main",
    "sd_upscale": "main",
    "resnet_classifier": "main",
}
SD_PIPELINES = {
    "sd_img2img": "StableDiffusionImg2ImgPipeline",
    "sd_depth": "StableDiffusionDepth2ImgPipeline",
    "sd_inpaint": "StableDiffusionInpaintPipeline",
    "sd_upscale": "StableDiffusionUpscalePipeline",
}


def source_kind(source: str | None) -> str:
    """hub | local-folder | single-file for a --source value; refuses pickle checkpoints."""
    if source is None:
        return "hub"
    path = Path(source)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(f"--source {source}: {path.suffix} files are pickles (they can execute code); "
                              "only .safetensors single files or safetensors folders are accepted")
    if path.is_dir():
        return "local-folder"
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"--source {source}: no such file")
        return "single-file"
    if path.exists() or source.startswith((".", "/")):
        raise CheckpointError(f"--source {source}: expected a hub id, a folder or a .safetensors file")
    return "hub"


def variant_ignores(files: list[str], fp16: bool) -> list[str]:
    """Weight files of the other precision, so a fetch downloads one copy of each weight:
    with fp16, the fp32 file that has an `.fp16.` sibling; without, every `.fp16.` file."""
    present = set(files)
    weights = [f for f in files if f.endswith(".safetensors")]
    if fp16:
        return [f for f in weights if ".fp16." not in f and f[: -len(".safetensors")] + ".fp16.safetensors" in present]
    return [f for f in weights if ".fp16." in f]


def _resolve_hub(repo_id: str, revision: str, fp16: bool) -> tuple[str, str]:
    """(local snapshot folder, resolved commit sha) of `repo_id` at `revision`; weights as safetensors only."""
    from huggingface_hub import list_repo_files, snapshot_download

    ignore = [f"*{s}" for s in PICKLE_SUFFIXES] + ["*.msgpack", "*.h5", "*.onnx"]
    ignore += variant_ignores(list_repo_files(repo_id, revision=revision), fp16)
    local = snapshot_download(repo_id, revision=revision, ignore_patterns=ignore)
    return local, Path(local).name  # the hub cache names each snapshot after its commit


def _load_sd(model: str, source: str, kind: str, dtype, fp16: bool, config: str | None):
    import diffusers
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    cls = getattr(diffusers, SD_PIPELINES[model])
    extra = {}
    if model == "sd_depth":  # its model_index.json names DPTFeatureExtractor (gone in transformers 5)
        parts = config if kind == "single-file" else source
        if parts is None:
            raise CheckpointError("sd_depth from a single file needs --config DIR (a diffusers sd_depth folder "
                                  "for the depth estimator and component configs)")
        extra["feature_extractor"] = DPTImageProcessor.from_pretrained(parts, subfolder="feature_extractor")
        extra["depth_estimator"] = DPTForDepthEstimation.from_pretrained(
            parts, subfolder="depth_estimator", use_safetensors=True, dtype=dtype)
    if kind == "single-file":
        if config is None:
            raise CheckpointError(f"{model} from a single file needs --config DIR or a hub id: a diffusers folder "
                                  "of the same architecture, which holds the component configs and tokenizer")
        return cls.from_single_file(source, config=config, torch_dtype=dtype,
                                    local_files_only=Path(config).is_dir(), **extra)
    # A local folder may hold only fp32 files: the fp16 *variant* is a hub naming convention.
    variant = {"variant": "fp16"} if fp16 and kind == "hub" else {}
    return cls.from_pretrained(source, use_safetensors=True, dtype=dtype, **variant, **extra)


def fetch(model: str, out: Path, source: str | None = None, fp16: bool = False,
          revision: str | None = None, config: str | None = None) -> dict:
    """Save `model`'s real weights as a safetensors folder at `out`; return its provenance.

    source: None (HUB_IDS[model] at `revision` or REVISIONS[model]), a hub id, a local
    diffusers/transformers folder, or a single `.safetensors` file (SD models; `config` names
    the diffusers folder or hub id that holds the component configs).
    """
    import torch

    kind = source_kind(source)
    dtype = torch.float16 if fp16 else torch.float32
    record: dict = {"dtype": "float16" if fp16 else "float32"}
    load_from = source or HUB_IDS[model]
    if kind == "hub":
        wanted = revision or (REVISIONS[model] if source is None else "main")
        load_from, resolved = _resolve_hub(load_from, wanted, fp16)
        record.update(source=source or HUB_IDS[model], revision=resolved, requested_revision=wanted)
    elif kind == "local-folder":
        record["source"] = str(Path(source).resolve())
    else:
        if model == "resnet_classifier":
            raise CheckpointError("resnet_classifier: single-file checkpoints are for the SD models; "
                                  "give a transformers folder or a hub id")
        record.update(source=str(Path(source).resolve()),
                      source_sha256=provenance.sha256_path(Path(source)), config=config)
    if model == "resnet_classifier":
        from transformers import AutoImageProcessor, ResNetForImageClassification

        ResNetForImageClassification.from_pretrained(load_from, use_safetensors=True, dtype=dtype).save_pretrained(out)
        AutoImageProcessor.from_pretrained(load_from).save_pretrained(out)
    else:
        pipe = _load_sd(model, load_from, kind, dtype, fp16, config)
        if fp16:
            pipe = pipe.to(torch.float16)  # a single file or folder may hold fp32: store what was asked
        pipe.save_pretrained(out, safe_serialization=True)
    check_checkpoint(out)  # safetensors only, nothing pickled slipped through
    return provenance.record(out, kind, **record)
