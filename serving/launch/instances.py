"""A model repository that runs another number of instances per model: the shipped repository
with each model's config.pbtxt rewritten and everything else linked, not copied.

Every shipped model runs two instances that take turns computing (docs/gpu.md "Two instances":
the batcher hands the idle one the next batch at once). The second instance is a second copy of
the weights and a second stub process. A host that cannot hold that (an A10G with all five
models resident, a small laptop) serves one instance per model:
``python -m serving.launch.server start --instances 1`` (``make serve INSTANCES=1``). The test
suite does the same where the instance count is not what a test is about (docs/testing.md):
each stub costs seconds of start-up CPU.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from deploy.pbtxt import with_instance_count

CONFIG = "config.pbtxt"


def instance_repository(repo: Path, count: int, out: Path, models: Iterable[str]) -> Path:
    """``out``: a repository serving ``models`` of ``repo`` with ``count`` instances each. Their
    version folders and other files are symbolic links into ``repo`` (weights are not copied);
    ``out`` is rebuilt from scratch, so it never serves a stale config."""
    repo, out = Path(repo).resolve(), Path(out)
    if out.resolve() == repo:
        raise ValueError(f"the instance repository {out} must not be the repository it derives from")
    shutil.rmtree(out, ignore_errors=True)
    for model in models:
        src = repo / model
        if not (src / CONFIG).is_file():
            raise FileNotFoundError(f"model {model!r}: no {CONFIG} in {src}")
        dst = out / model
        dst.mkdir(parents=True)
        for entry in src.iterdir():
            if entry.name == CONFIG:
                (dst / CONFIG).write_text(with_instance_count(entry.read_text(), count))
            else:
                os.symlink(entry, dst / entry.name, target_is_directory=entry.is_dir())
    return out
