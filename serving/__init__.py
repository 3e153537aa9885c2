"""Serving runtime: the logic behind every Triton Python-backend model in model_repository/.

Everything here imports and runs without Triton; `serving.triton_adapter` is the only module
that talks to `triton_python_backend_utils`.
"""

#: The runtime registry: served model name -> "module:class" of its runtime (imported on demand).
RUNTIMES = {
    "sd_img2img": "serving.runtimes.sd_img2img:SDImg2ImgRuntime",
    "sd_depth": "serving.runtimes.sd_depth:SDDepthRuntime",
    "sd_inpaint": "serving.runtimes.sd_inpaint:SDInpaintRuntime",
    "sd_upscale": "serving.runtimes.sd_upscale:SDUpscaleRuntime",
    "resnet_classifier": "serving.runtimes.resnet_classifier:ResNetClassifierRuntime",
}
MODEL_NAMES = tuple(RUNTIMES)
