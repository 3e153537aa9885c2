"""One runtime per served model; `RUNTIMES` maps the model name (the contract) to its class."""

from __future__ import annotations

from serving.runtimes.base import ModelRuntime


def runtime_class(name: str) -> type[ModelRuntime]:
    # Imported lazily: each Triton model process needs only its own pipeline's modules.
    if name == "sd_img2img":
        from serving.runtimes.sd_img2img import SDImg2ImgRuntime as cls
    elif name == "sd_depth":
        from serving.runtimes.sd_depth import SDDepthRuntime as cls
    elif name == "sd_inpaint":
        from serving.runtimes.sd_inpaint import SDInpaintRuntime as cls
    elif name == "sd_upscale":
        from serving.runtimes.sd_upscale import SDUpscaleRuntime as cls
    elif name == "resnet_classifier":
        from serving.runtimes.resnet_classifier import ResNetClassifierRuntime as cls
    else:
        raise KeyError(f"unknown model {name!r}")
    return cls
