"""Helpers shared by the deploy tests (a module with a unique name, so no clash with other conftests)."""

from __future__ import annotations

import json
from pathlib import Path

from serving.runtime.checkpoints import provenance

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
MODELS = ("resnet_classifier", "sd_depth")

CONFIG_PBTXT = """name: "{name}"
backend: "python"
max_batch_size: 8
input [
  {{ name: "prompt" data_type: TYPE_STRING dims: [ -1 ] }}
]
output [
  {{ name: "generated_image" data_type: TYPE_STRING dims: [ -1 ] }}
]
instance_group [ {{ kind: KIND_GPU }} ]
"""


def make_repo(root: Path, models=MODELS, checkpoint_bytes: dict[str, bytes] | None = None,
              provenance_kind: str | None = "tiny-random") -> Path:
    """A small model repository with the project's layout (config.pbtxt, 1/model.py, 1/checkpoint/).

    provenance_kind: what provenance.json says the weights are ("hub" stands in for real
    weights at a pinned revision; None writes none, as checkpoints built before it was kept).
    """
    for name in models:
        model = root / name
        (model / "1" / "checkpoint").mkdir(parents=True)
        (model / "config.pbtxt").write_text(CONFIG_PBTXT.format(name=name))
        (model / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
        (model / "1" / "checkpoint" / "config.json").write_text(json.dumps({"model": name}))
        data = (checkpoint_bytes or {}).get(name, f"weights of {name}".encode() * 100)
        (model / "1" / "checkpoint" / "model.safetensors").write_bytes(data)
        (model / "1" / "checkpoint" / ".done").write_text("")  # the Makefile's stamp: not shipped
        if provenance_kind:
            provenance.record(model / "1" / "checkpoint", provenance_kind, **(
                {"builder": "tests/deploy/deploy_testlib.py"} if provenance_kind == "tiny-random" else
                {"source": f"example/{name}", "revision": "0" * 40}))
        (model / "1" / "__pycache__").mkdir()
        (model / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\x00junk")
    return root
