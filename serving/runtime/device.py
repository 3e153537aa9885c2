"""Where a model instance runs, in which precision, and how it uses the GPU's memory.

GPU instances (Triton KIND_GPU) run fp16, CPU instances fp32. Each GPU instance binds its
process to the instance's GPU and bounds its share of that GPU's memory (docs/gpu.md).
"""

from __future__ import annotations

import gc
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

    @property
    def index(self) -> int:
        return torch.device(self.device).index or 0

    @classmethod
    def for_instance(cls, kind: str | None, device_id: int | str | None = 0) -> "DeviceSpec":
        """Map Triton's `model_instance_kind` ("GPU"/"CPU") to a device, fp16 on GPU."""
        if (kind or "").upper() == "GPU" and torch.cuda.is_available():
            return cls(device=f"cuda:{int(device_id or 0)}", dtype=torch.float16)
        return cls(device="cpu", dtype=torch.float32)

    @classmethod
    def auto(cls) -> "DeviceSpec":
        return cls.for_instance("GPU" if torch.cuda.is_available() else "CPU")

    def total_memory(self) -> int | None:
        """Bytes of GPU memory, None on CPU."""
        return torch.cuda.get_device_properties(self.index).total_memory if self.is_gpu else None


def prepare_device(spec: DeviceSpec, memory_fraction: float | None) -> None:
    """Bind this process to the instance's GPU and bound its caching allocator.

    Without `set_device`, kernels and the allocator's default stream land on GPU 0 whatever
    `model_instance_device_id` says. The memory fraction makes an oversized request fail with
    OutOfMemoryError in this process instead of starving the models sharing the GPU.
    """
    if not spec.is_gpu:
        return
    torch.cuda.set_device(spec.index)
    if memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(memory_fraction, spec.index)


def release_memory(spec: DeviceSpec) -> None:
    """Give cached blocks back to the driver (after an OOM or a request far above the usual size)."""
    gc.collect()
    if spec.is_gpu:
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError))
