"""Call a served model: `python -m serving.launch.client <model> [--prompt ...] [--image f] ...`.

Writes the generated image (SD models) or prints the label and top probabilities (classifier),
over Triton HTTP (default) or gRPC with tritonclient.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from serving import MODEL_NAMES
from serving.runtime.deadline import request_parameters, triton_timeout_us
from serving.runtime.response_encoding import PARAMETER, RAW
from serving.common.retry import NO_RETRY, PATIENT, Attempts, Refused, RetryPolicy, call_with_retries, is_refusal

RAW_IMAGES = {PARAMETER: RAW}


def _bytes_tensor(values: list[bytes]) -> np.ndarray:
    return np.array(values, dtype=np.object_).reshape(-1, 1)


def build_inputs(model: str, prompt: str | None = None, image: bytes | None = None,
                 mask_image: bytes | None = None, negative_prompt: str | None = None,
                 gen_args: dict | None = None) -> dict[str, np.ndarray]:
    """Name -> [1, 1] BYTES array for one request; None values are left out."""
    raw = {
        "prompt": prompt.encode() if prompt is not None else None,
        "negative_prompt": negative_prompt.encode() if negative_prompt is not None else None,
        "image": image, "mask_image": mask_image,
        "gen_args": json.dumps(gen_args).encode() if gen_args is not None else None,
    }
    if model == "resnet_classifier":
        raw = {"image": image}
    return {k: _bytes_tensor([v]) for k, v in raw.items() if v is not None}


def refusal_of(exc: Exception) -> Refused | None:
    """A Refused for Triton's UNAVAILABLE / HTTP 503 (queue full, queue timeout, expired)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException) and is_refusal(exc.status(), exc.message()):
        return Refused(exc.message() or str(exc), cause=exc)
    return None


def infer(model: str, inputs: dict[str, np.ndarray], url: str = "127.0.0.1:8000",
          protocol: str = "http", timeout_s: float = 600.0, request_id: str = "",
          served_name: str | None = None, segments: dict[str, str] | None = None,
          deadline_s: float | None = None, policy: RetryPolicy = RetryPolicy(),
          attempts: Attempts | None = None) -> dict[str, np.ndarray]:
    """One inference through tritonclient; returns output name -> numpy array (incl. `request_id`).

    served_name: the Triton model name when it is not `model` (a versioned `sd_depth-<v>`).
    segments: segment attributes ({"tenant": "acme"}), sent as request parameters ``segment.<name>``.
    With `deadline_s`, the request carries the caller's deadline (`deadline_ms`, and Triton's
    queue `timeout` for what is left of it), refusals are retried with jittered backoff within
    it (serving/common/retry.py) and the last refusal raises its InferenceServerException.
    """
    from monitoring.capture.attributes import as_parameters

    if protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    budget = min(timeout_s, deadline_s) if deadline_s is not None else timeout_s
    client = tc.InferenceServerClient(url=url, **({"network_timeout": budget} if protocol == "http" else {}))
    tensors = []
    for name, arr in inputs.items():
        t = tc.InferInput(name, list(arr.shape), "BYTES")
        t.set_data_from_numpy(arr)
        tensors.append(t)
    outputs = ["probabilities", "label"] if model == "resnet_classifier" else ["generated_image"]
    outputs.append("request_id")
    params = {**RAW_IMAGES, **as_parameters(segments), **request_parameters(deadline_s)}
    deadline = time.monotonic() + deadline_s if deadline_s is not None else None

    def send(remaining_s: float):
        kwargs = {"timeout": triton_timeout_us(remaining_s)} if deadline is not None else {}
        if protocol == "grpc":
            kwargs["client_timeout"] = min(remaining_s, timeout_s)
        try:
            # Raw image bytes: tritonclient reads binary tensors (gRPC, HTTP binary outputs), so the
            # base64 text JSON clients get by default is not needed here (serving/runtime/response_encoding.py).
            return client.infer(served_name or model, tensors, outputs=[tc.InferRequestedOutput(o) for o in outputs],
                                request_id=request_id, parameters=params, **kwargs)
        except Exception as exc:
            refused = refusal_of(exc)
            if refused is not None:
                raise refused from None
            raise

    try:
        result = call_with_retries(send, deadline, policy if deadline is not None else NO_RETRY, attempts=attempts)
    except Refused as exc:
        raise exc.cause if exc.cause is not None else exc
    finally:
        client.close()  # an idle keep-alive connection would hold up a graceful server stop
    return {o: result.as_numpy(o) for o in outputs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.launch.client", description=__doc__)
    p.add_argument("model", choices=MODEL_NAMES)
    p.add_argument("--prompt")
    p.add_argument("--negative-prompt")
    p.add_argument("--image", type=Path, help="PNG/JPEG file")
    p.add_argument("--mask", type=Path, help="mask PNG for sd_inpaint (white = repaint)")
    p.add_argument("--gen-args", default=None, help='JSON, e.g. \'{"num_inference_steps": 20, "seed": 1}\'')
    p.add_argument("--out", type=Path, default=None, help="where to write the generated image")
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--url", default=None, help="host:port (default 127.0.0.1:8000 http, :8001 grpc)")
    p.add_argument("--served-name", help="Triton model name when it differs from MODEL (a versioned <model>-<v>)")
    p.add_argument("--model-data-url", help="s3://BUCKET/PREFIX/ of an MME: serve MODEL's current version "
                   "(deploy update's aliases.json) under its versioned name")
    p.add_argument("--s3-endpoint-url", help="S3 endpoint for --model-data-url (moto, tests)")
    p.add_argument("--segment", action="append", default=[], metavar="NAME=VALUE",
                   help="segment attribute for monitoring, e.g. tenant=acme (repeatable; sent as parameter segment.NAME)")
    p.add_argument("--deadline", type=float, default=60.0,
                   help="give up after this many seconds; refusals (UNAVAILABLE/503) are retried with "
                        "jittered backoff within it (default %(default)s)")
    a = p.parse_args(argv)
    segments = {}
    for spec in a.segment:
        name, sep, value = spec.partition("=")
        if not sep:
            p.error(f"--segment {spec!r}: expected NAME=VALUE")
        segments[name] = value
    if a.model_data_url and not a.served_name:
        from deploy.aws import AwsContext
        from deploy.versions import resolve_url

        s3 = AwsContext(service_endpoints={"s3": a.s3_endpoint_url} if a.s3_endpoint_url else {}).client("s3")
        a.served_name = resolve_url(s3, a.model_data_url, a.model).removesuffix(".tar.gz")
    url = a.url or ("127.0.0.1:8001" if a.protocol == "grpc" else "127.0.0.1:8000")
    inputs = build_inputs(
        a.model, prompt=a.prompt, negative_prompt=a.negative_prompt,
        image=a.image.read_bytes() if a.image else None, mask_image=a.mask.read_bytes() if a.mask else None,
        gen_args=json.loads(a.gen_args) if a.gen_args else None,
    )
    from tritonclient.utils import InferenceServerException

    if not a.deadline > 0:
        p.error(f"--deadline {a.deadline}: must be > 0 seconds")
    attempts = Attempts()
    try:
        out = infer(a.model, inputs, url=url, protocol=a.protocol, served_name=a.served_name, segments=segments,
                    deadline_s=a.deadline, policy=PATIENT, attempts=attempts)
    except InferenceServerException as exc:
        if is_refusal(exc.status(), exc.message()):
            print(f"refused ({attempts.refusals} attempt(s), the server is overloaded; retried with backoff "
                  f"within the {a.deadline:g} s deadline): {exc.message()}", file=sys.stderr)
            return 3
        print(f"error: {exc.message()}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a segment attribute past its bounds, caught before sending
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.model == "resnet_classifier":
        probs = out["probabilities"][0]
        top = np.argsort(probs)[::-1][:3]
        print(f"label: {out['label'][0][0].decode()}  (top-3 probabilities: "
              + ", ".join(f"{i}:{probs[i]:.3f}" for i in top) + ")")
        return 0
    data = out["generated_image"][0][0]
    ext = "jpg" if data[:3] == b"\xff\xd8\xff" else "png"
    path = a.out or Path(f"{a.model}.{ext}")
    path.write_bytes(data)
    from PIL import Image
    import io

    w, h = Image.open(io.BytesIO(data)).size
    print(f"wrote {path} ({w}x{h}, {len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
