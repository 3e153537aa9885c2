"""Triton Python-backend entry point for `sd_img2img`; the logic lives in the `serving` package."""

from serving.runtime.triton_adapter import model_class

TritonPythonModel = model_class("sd_img2img")
