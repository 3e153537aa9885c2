"""Where a model instance runs and in which precision.

GPU instances (Triton KIND_GPU) run fp16 with xformers attention when it imports, PyTorch SDPA
otherwise; CPU instances run fp32 with SDPA. Nothing else in the runtime branches on device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSpec:
    device: str
    dtype: torch.dtype

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @classmethod
    def for_instance(cls, kind: str | None, device_id: int | str | None = 0) -> "DeviceSpec":
        """Map Triton's `model_instance_kind` ("GPU"/"CPU") to a device, fp16 on GPU."""
        if (kind or "").upper() == "GPU" and torch.cuda.is_available():
            return cls(device=f"cuda:{int(device_id or 0)}", dtype=torch.float16)
        return cls(device="cpu", dtype=torch.float32)

    @classmethod
    def auto(cls) -> "DeviceSpec":
        return cls.for_instance("GPU" if torch.cuda.is_available() else "CPU")


def configure_attention(pipe, spec: DeviceSpec) -> str:
    """Pick the attention kernel for a diffusers pipeline; returns its name for logs and tests."""
    if spec.is_gpu:
        try:
            import xformers  # noqa: F401

            pipe.enable_xformers_memory_efficient_attention()
            return "xformers"
        except Exception as exc:  # not installed, or built for another CUDA
            log.info("xformers unavailable (%s); using PyTorch SDPA", exc)
    # diffusers defaults to AttnProcessor2_0 (scaled_dot_product_attention) on torch >= 2.
    return "sdpa"
