"""The one place that talks to Triton's Python backend.

`model_repository/<name>/1/model.py` is two lines: it builds a `TritonModel` for its name.
`initialize` builds the runtime once; `execute` converts request tensors to numpy, hands the
whole batch to the runtime, and maps each result (or error) to its own response.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from monitoring.capture import Capturer
from serving.common import load_marker
from serving.runtime import host_services
from serving.runtime.baton import ComputeBaton
from serving.runtime.deadline import parse_deadline
from serving.runtime.errors import ServingError
from serving.runtime.response_encoding import encode_outputs, requested_encoding
from serving.runtime.runtime_metrics import RuntimeMetrics

log = logging.getLogger(__name__)


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


class CaptureMetrics:
    """Capture counters of this model process on Triton's own /metrics (:8002), as custom
    metrics: drops are visible even when no segment ever reaches the sidecar."""

    NAMES = {
        "dropped": ("capture_records_dropped_total", "Capture records dropped in the model process (queue full, spool unwritable)"),
        "submitted": ("capture_records_submitted_total", "Capture records handed to the capture queue"),
        "written": ("capture_records_spooled_total", "Capture records written to spool segments"),
        "spool_full": ("capture_records_spool_full_total", "Capture records dropped because the spool is at CAPTURE_SPOOL_MAX_MB (nothing drains it?)"),
    }

    def __init__(self, pb_utils: Any, model: str, version: str, capture: Any):
        self.capture = capture
        # Each increment is a round trip to the Triton core: publish at most once per interval
        # (measured: per-execute updates cost ~5 ms of a 90 ms ResNet-50 request on 2 cores).
        self.interval_s = float(os.environ.get("CAPTURE_METRICS_INTERVAL_S", "1.0"))
        self.next_update = 0.0
        self.metrics: dict[str, Any] = {}
        self.families: list[Any] = []  # Triton deletes a family's metrics with it: keep both alive
        self.last: dict[str, int] = {}
        if not capture.enabled or not hasattr(pb_utils, "MetricFamily"):
            return
        for key, (name, text) in self.NAMES.items():
            family = pb_utils.MetricFamily(name=name, description=text, kind=pb_utils.MetricFamily.COUNTER)
            self.families.append(family)
            self.metrics[key] = family.Metric(labels={"model": model, "version": str(version)})
            self.last[key] = 0

    def counts(self) -> dict[str, int]:
        c = self.capture.counters()  # one drop counter: the capturer's (serving/runtime/capture_hook.py)
        return {"dropped": c.get("dropped", 0), "submitted": c.get("submitted", 0),
                "written": c.get("written", 0), "spool_full": c.get("spool_full", 0)}

    def update(self) -> None:
        if not self.metrics or time.monotonic() < self.next_update:
            return
        self.next_update = time.monotonic() + self.interval_s
        try:
            for key, value in self.counts().items():
                if value > self.last[key]:
                    self.metrics[key].increment(value - self.last[key])
                    self.last[key] = value
        except Exception:  # monitoring must never fail a request
            log.exception("updating capture metrics failed")


class TritonModel:
    """A TritonPythonModel for one of the runtimes in `serving.runtime.models`."""

    model_name = ""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        quiet_libraries()
        from serving.runtime.device import DeviceSpec
        from serving.runtime.models import runtime_class

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
        # Two instances, one call at a time: the second one is what starts the next batch the
        # moment a call ends (serving/runtime/baton.py).
        self.runtime.baton = ComputeBaton.for_instance(args.get("model_name") or self.model_name, device.device,
                                                       config, params)
        # Records and metrics carry the name Triton serves the model under (an MME may load a
        # copy under another name); the runtime is chosen by the adapter's model_name.
        self.served_name = args.get("model_name") or self.model_name
        # Capture settings: config.pbtxt parameters named like the CAPTURE_* variables win over
        # the container environment (SageMaker sets env per endpoint, not per model).
        self.settings = host_services.merged_settings(params)
        self.capture = self.build_capture(args["model_version"])
        self.capture_metrics = CaptureMetrics(pb_utils, self.served_name, args["model_version"], self.capture)
        self.runtime_metrics = RuntimeMetrics(pb_utils, self.served_name, args["model_version"], self.runtime)
        # The per-host sidecar (and other host services) run wherever the models run: started
        # detached from here, re-checked from every model process (serving/runtime/host_services.py).
        self.host_services = host_services.start_for_model(params)
        log.info("%s ready on %s (%s), attention=%s", self.served_name, device.device, device.dtype,
                 getattr(self.runtime, "attention", "n/a"))
        # Last: the launcher tells a load that hung in the backend after this from a slow one
        # (serving/common/load_marker.py); stderr is tritonserver's log.
        print(load_marker.line(self.served_name, args.get("model_instance_name") or self.served_name, os.getpid()),
              file=sys.stderr, flush=True)

    def build_capture(self, model_version: str):
        """Monitoring capture, on when CAPTURE_SPOOL_DIR is set (see docs/monitoring.md)."""
        # Deferred like the runtime imports: torch must not load before quiet_libraries() ran.
        from serving.runtime.capture_hook import CaptureHook

        # The capture contract (monitoring.capture) is a leaf every runtime imports: no fallback.
        capturer = Capturer.from_env(self.served_name, model_version, environ=self.settings)
        return CaptureHook(self.runtime, model_version, capturer, served_name=self.served_name)

    def execute(self, requests: list) -> list:
        import numpy as np

        from serving.runtime.capture_hook import new_request_id
        from serving.runtime.models.base import RawRequest, RequestResult

        arrival_ms = int(time.time() * 1000)
        pb = self.pb_utils
        raw, ids, encodings, attributes = [], [], [], []
        for request in requests:
            deadline = None
            try:  # JSON clients get base64 images unless they ask for raw bytes (serving/runtime/response_encoding.py)
                parameters = request.parameters()
                encoding = requested_encoding(parameters)
                attrs = request_segment_attributes(parameters)
                deadline = parse_deadline(parameters)  # the caller's; the runtime drops it once passed
                encodings.append(encoding)
                attributes.append(attrs)
            except ServingError as exc:  # a bad `image_encoding`/`deadline_ms`/segment value: this request's error only
                encodings.append(exc)
                attributes.append(None)
            tensors = {}
            for name in self.input_names:
                tensor = pb.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    tensors[name] = tensor.as_numpy()
            # The caller's request id if it set one, else ours; returned as `request_id` so
            # ground truth can be joined to captured records later.
            ids.append(request.request_id() or new_request_id())
            raw.append(RawRequest(tensors, ids[-1], deadline))
        # A request refused for its parameters never reaches the runtime: it gets its own error
        # (recorded as the error its caller got) and its batch-mates are computed without it.
        valid = [i for i, enc in enumerate(encodings) if not isinstance(enc, ServingError)]
        computed = iter(self.runtime.handle([raw[i] for i in valid]) if valid else [])
        results = [next(computed) if not isinstance(enc, ServingError) else RequestResult(error=enc)
                   for enc in encodings]
        responses = []
        for rid, result, encoding in zip(ids, results, encodings):
            if isinstance(encoding, ServingError):
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(
                    str(encoding), error_code(pb, encoding))))
            elif result.error is not None:
                err = pb.TritonError(str(result.error), error_code(pb, result.error))
                responses.append(pb.InferenceResponse(output_tensors=[], error=err))
            else:
                rows = len(result.items)
                id_tensor = np.array([rid.encode() if rows == 1 else f"{rid}:{i}".encode() for i in range(rows)],
                                     dtype=np.object_).reshape(-1, 1)
                tensors = [pb.Tensor(name, value) for name, value in encode_outputs(result.outputs, encoding).items()]
                tensors.append(pb.Tensor("request_id", id_tensor))
                responses.append(pb.InferenceResponse(output_tensors=tensors))
        self.capture.observe(ids, results, arrival_ms, attributes)
        self.capture_metrics.update()
        self.runtime_metrics.update()
        return responses

    def finalize(self) -> None:
        """Graceful stop: every record already observed reaches the spool before we exit."""
        if getattr(self, "host_services", None) is not None:
            self.host_services.close()  # the services keep running for the other models
        if getattr(self, "capture", None) is not None:
            # Well inside Triton's 30 s exit timeout, so an unwritable spool cannot turn a
            # graceful stop into a forced one for the other models.
            self.capture.close(timeout=10.0)
        self.runtime = None


def request_segment_attributes(parameters: Any) -> dict[str, str]:
    """The request's ``segment.*`` parameters (monitoring/capture/attributes.py); a bad one is the caller's error."""
    from monitoring.capture.attributes import segment_attributes
    from serving.runtime.errors import InvalidInputError

    try:
        return segment_attributes(parameters)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def model_class(name: str) -> type:
    """Build the `TritonPythonModel` class a model.py exports."""
    return type("TritonPythonModel", (TritonModel,), {"model_name": name})
