"""The one place that talks to Triton's Python backend.

`model_repository/<name>/1/model.py` is two lines: it builds a `TritonModel` for its name.
`initialize` builds the runtime once; `execute` converts request tensors to numpy, hands the
whole batch to the runtime, and maps each result (or error) to its own response.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from serving.errors import ServingError

log = logging.getLogger("serving")


def quiet_libraries() -> None:
    """Progress bars and advisory warnings would flood Triton's log on every load."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore", message=".*Autocast.*")
    try:
        from diffusers.utils import logging as dlog

        dlog.disable_progress_bar()
        dlog.set_verbosity_error()
    except ImportError:
        pass


def error_code(pb_utils: Any, exc: ServingError) -> Any:
    """Map our exception tree to Triton status codes (INVALID_ARG -> HTTP 400)."""
    return getattr(pb_utils.TritonError, exc.code, pb_utils.TritonError.INTERNAL)


def config_parameters(model_config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


class TritonModel:
    """A TritonPythonModel for one of the runtimes in `serving.runtimes`."""

    model_name = ""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        quiet_libraries()
        from serving.device import DeviceSpec
        from serving.runtimes import runtime_class

        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        params = config_parameters(config)
        default_ckpt = Path(args["model_repository"]) / args["model_version"] / "checkpoint"
        checkpoint = params.get("checkpoint_dir") or os.environ.get(f"CHECKPOINT_DIR_{self.model_name.upper()}") or str(default_ckpt)
        device = DeviceSpec.for_instance(args.get("model_instance_kind"), args.get("model_instance_device_id"))
        max_batch = int(params.get("max_pipeline_batch") or config.get("max_batch_size") or 1)
        self.input_names = [i["name"] for i in config["input"]]
        self.runtime = runtime_class(self.model_name)(checkpoint, device, max_pipeline_batch=max_batch, parameters=params)
        self.runtime.load()
        log.info("%s ready on %s (%s), attention=%s", self.model_name, device.device, device.dtype,
                 getattr(self.runtime, "attention", "n/a"))

    def execute(self, requests: list) -> list:
        from serving.runtimes.base import RawRequest

        pb = self.pb_utils
        raw = []
        for request in requests:
            tensors = {}
            for name in self.input_names:
                tensor = pb.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    tensors[name] = tensor.as_numpy()
            raw.append(RawRequest(tensors, request.request_id()))
        responses = []
        for result in self.runtime.handle(raw):
            if result.error is not None:
                err = pb.TritonError(str(result.error), error_code(pb, result.error))
                responses.append(pb.InferenceResponse(output_tensors=[], error=err))
            else:
                tensors = [pb.Tensor(name, value) for name, value in result.outputs.items()]
                responses.append(pb.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.runtime = None


def model_class(name: str) -> type:
    """Build the `TritonPythonModel` class a model.py exports."""
    return type("TritonPythonModel", (TritonModel,), {"model_name": name})
