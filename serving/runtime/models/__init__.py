"""One runtime per served model; `serving.RUNTIMES` maps the model name (the contract) to its class."""

from __future__ import annotations

import importlib

from serving import RUNTIMES
from serving.runtime.models.base import ModelRuntime


def runtime_class(name: str) -> type[ModelRuntime]:
    """The runtime class of model ``name``, imported on demand: each Triton model process
    needs only its own pipeline's modules."""
    try:
        module, cls = RUNTIMES[name].split(":")
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {sorted(RUNTIMES)}") from None
    return getattr(importlib.import_module(module), cls)
