"""The serving platform's code, one folder per layer (docs/architecture.md):

* :mod:`serving.common` -- stdlib-only leaves every layer may import (/proc, the retry policy).
* :mod:`serving.runtime` -- the logic behind every Triton Python-backend model in model_repository/
  (the adapter, the per-model runtimes, checkpoints, capacity, the capture hook, the watchdog).
  It imports and runs without Triton; `serving.runtime.triton_adapter` is the only module that
  talks to `triton_python_backend_utils`.
* :mod:`serving.launch` -- starting a Triton server with these models, and the clients.

This file holds only the model registry, which every layer may import (it imports nothing).
"""

#: The runtime registry: served model name -> "module:class" of its runtime (imported on demand).
RUNTIMES = {
    "sd_img2img": "serving.runtime.models.sd_img2img:SDImg2ImgRuntime",
    "sd_depth": "serving.runtime.models.sd_depth:SDDepthRuntime",
    "sd_inpaint": "serving.runtime.models.sd_inpaint:SDInpaintRuntime",
    "sd_upscale": "serving.runtime.models.sd_upscale:SDUpscaleRuntime",
    "resnet_classifier": "serving.runtime.models.resnet_classifier:ResNetClassifierRuntime",
}
MODEL_NAMES = tuple(RUNTIMES)
