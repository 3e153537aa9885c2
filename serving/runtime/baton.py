"""One pipeline call at a time across the instances of one model on one device.

Why a model runs two instances that never compute together: Triton 2.51's dynamic batcher
turns batch prefetching off as soon as a model has a queue policy (our admission control,
serving/runtime/capacity/admission.py). It then learns that an instance is free only from a
request that enters the queue, or from its own 500 ms poll; a full queue refuses every arrival,
so with one instance the model sat idle up to 500 ms after every execution while admitted
requests waited (bench/results/overload-2026-12-03-j26-quiet.md: busy 51 %, gaps of 285 ms).
A second instance is the free one: the batcher hands it the next batch while the first one
computes, and it starts the moment the first one is done.

Computing together is what the baton prevents: two calls would split the cores (on a CPU,
two OpenMP pools on the same cores are many times slower than one) or hold two activation
sets at once (on a GPU, past the memory share the limits in serving/runtime/capacity assume).
The baton is an exclusive `flock` on a file named after the server process, the model and the
device, so it is shared by that model's instances in one tritonserver and by nothing else; the
kernel releases it when its holder dies, so a crashed instance never blocks the other one.
Decoding and validating inputs and encoding outputs run outside it, overlapped with the other
instance's call.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

#: Where the baton files live (one small empty file per model, device and server process).
DIR_ENV = "TRITON_BATON_DIR"


def baton_dir() -> Path:
    """Where this host's baton files are: $TRITON_BATON_DIR, else a per-user folder in the temp dir."""
    return Path(os.environ.get(DIR_ENV) or Path(tempfile.gettempdir()) / f"triton-baton-{os.getuid()}")


def instance_count(model_config: dict[str, Any]) -> int:
    """How many instances Triton runs of this model (on this host; KIND_AUTO: per device)."""
    groups = model_config.get("instance_group") or [{"count": 1}]
    return sum(int(g.get("count", 1) or 1) for g in groups)


class ComputeBaton:
    """Context manager: holds the model's compute baton for the duration of the block.

    `waited_s` is how long the latest acquisition waited for the other instance's call.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self.waited_s = 0.0

    @classmethod
    def for_instance(cls, served_name: str, device: str, model_config: dict[str, Any],
                     parameters: dict[str, str] | None = None) -> "ComputeBaton | None":
        """The baton of this model instance, or None when the instances may compute together
        (one instance, or config.pbtxt parameter `instances_compute_together: true`)."""
        together = str((parameters or {}).get("instances_compute_together", "false")).strip().lower()
        if together not in ("true", "false"):
            raise ValueError(f"config parameter 'instances_compute_together': {together!r} must be true or false")
        if instance_count(model_config) < 2 or together == "true":
            return None
        directory = baton_dir()
        # The stub's parent is the tritonserver that runs it: two servers on one host (tests,
        # an MME beside a local server) never share a baton.
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{os.getppid()}-{served_name}-{device}")
        return cls(directory / f"{name}.lock")

    def __enter__(self) -> "ComputeBaton":
        start = time.perf_counter()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.waited_s = time.perf_counter() - start
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
