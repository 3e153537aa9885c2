"""Triton Python-backend entry point for `resnet_classifier`; the logic lives in the `serving` package."""

from serving.runtime.triton_adapter import model_class

TritonPythonModel = model_class("resnet_classifier")
