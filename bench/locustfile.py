r"""Locust scenario for teams that use Locust: the same payloads as `python -m bench.loadtest`.

    pip install locust   # not part of this project's environment
    LOADTEST_MODEL=sd_img2img LOADTEST_INFERENCE_STEPS=10 \
        locust -f bench/locustfile.py --host http://127.0.0.1:8000 --users 8 --spawn-rate 8 \
               --run-time 2m --headless --csv var/locust/img2img

Each simulated user sends back-to-back requests to Triton's HTTP API
(`POST /v2/models/<model>/infer`, binary tensor extension: images travel as raw bytes). Failed
requests are reported under the same error kinds as the load tester ("invalid_arg:image", ...).
Locust is a closed-loop tool: for open-loop arrivals use `python -m bench.loadtest --rate`.

Settings (environment): LOADTEST_MODEL (default resnet_classifier), LOADTEST_INFERENCE_STEPS
(4), LOADTEST_IMAGE_SIZE (model default), LOADTEST_BAD_FRACTION (0), LOADTEST_SEED (0),
LOADTEST_TEXT2IMG (0/1), LOADTEST_TIMEOUT (120 s).

Locust is imported only when it is installed (i.e. when Locust runs this file); the request
building below is plain Python so it can be checked without Locust.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `locust -f bench/locustfile.py` from the repository root
    sys.path.insert(0, str(_ROOT))

from bench.loadtest.payloads import Payload, PayloadFactory  # noqa: E402
from bench.loadtest.transports import DEFAULT_OUTPUTS, OUTPUTS, RAW_IMAGES, classify_error  # noqa: E402


def settings(env: dict[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    size = env.get("LOADTEST_IMAGE_SIZE")
    return {
        "model": env.get("LOADTEST_MODEL", "resnet_classifier"),
        "inference_steps": int(env.get("LOADTEST_INFERENCE_STEPS", "4")),
        "image_size": int(size) if size else None,
        "bad_fraction": float(env.get("LOADTEST_BAD_FRACTION", "0")),
        "seed": int(env.get("LOADTEST_SEED", "0")),
        "text2img": env.get("LOADTEST_TEXT2IMG", "0") in ("1", "true", "yes"),
        "timeout": float(env.get("LOADTEST_TIMEOUT", "120")),
    }


def triton_http_request(model: str, payload: Payload) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one KServe v2 HTTP request with binary tensors."""
    import numpy as np
    import tritonclient.http as httpclient

    tensors = []
    for name, value in payload.inputs.items():
        t = httpclient.InferInput(name, [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[value]], dtype=np.object_), binary_data=True)
        tensors.append(t)
    outputs = [httpclient.InferRequestedOutput(o, binary_data=True) for o in OUTPUTS.get(model, DEFAULT_OUTPUTS)]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        tensors, outputs=outputs, parameters=RAW_IMAGES)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return f"/v2/models/{model}/infer", body, headers


def failure_kind(status: int, body: bytes) -> str:
    """The error kind of a non-200 answer, from Triton's `{"error": "..."}` body."""
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = body[:200].decode("utf-8", "replace")
    return classify_error(status, message)


try:
    from locust import HttpUser, constant, task
except ImportError:  # Locust not installed: the helpers above stay importable
    HttpUser = None

if HttpUser is not None:
    _CONFIG = settings()
    _FACTORY = PayloadFactory(_CONFIG["model"], image_size=_CONFIG["image_size"],
                              inference_steps=_CONFIG["inference_steps"], bad_fraction=_CONFIG["bad_fraction"],
                              seed=_CONFIG["seed"], text2img=_CONFIG["text2img"])
    _COUNTER = itertools.count()  # shared by all users (gevent: one thread)

    class TritonUser(HttpUser):
        """Back-to-back inference requests to one model."""

        wait_time = constant(0)

        @task
        def infer(self) -> None:
            model = _CONFIG["model"]
            path, body, headers = triton_http_request(model, _FACTORY(next(_COUNTER)))
            with self.client.post(path, data=body, headers=headers, name=model, catch_response=True,
                                  timeout=_CONFIG["timeout"]) as resp:
                if resp.status_code != 200:
                    resp.failure(failure_kind(resp.status_code, resp.content or b""))
                else:
                    resp.success()
