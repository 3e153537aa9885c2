"""Serving runtime: the logic behind every Triton Python-backend model in model_repository/.

Everything here imports and runs without Triton; `serving.triton_adapter` is the only module
that talks to `triton_python_backend_utils`.
"""

MODEL_NAMES = ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale", "resnet_classifier")
