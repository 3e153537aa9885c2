"""Measure MME cold starts: per model, fetch + extract + Triton load + first response, then warm.

    python -m deploy.mme.coldstart --out var/mme/coldstart.json

Packages the repository's models (deploy.package) into a temporary model data directory,
starts a local endpoint with its own tritonserver, invokes every model once through boto3's
invoke_endpoint (cold), once more (warm), and writes the figures as JSON and a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _request(model: str) -> tuple[bytes, str]:
    import io

    import numpy as np
    from PIL import Image

    from deploy.payload import build_request

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    image = buf.getvalue()
    args = json.dumps({"num_inference_steps": 2, "seed": 1}).encode()
    if model == "resnet_classifier":
        return build_request({"image": [image]}, binary=True)
    inputs = {"prompt": [b"a house"], "image": [image], "gen_args": [args]}
    if model == "sd_inpaint":
        mask = io.BytesIO()
        Image.fromarray(np.full((64, 64), 255, dtype=np.uint8), mode="L").save(mask, format="PNG")
        inputs["mask_image"] = [mask.getvalue()]
    return build_request(inputs, binary=True)


def run(repo: Path, models: list[str], work: Path) -> dict:
    import boto3
    from botocore.config import Config

    from deploy.mme import MMEConfig, MMEEndpoint
    from deploy.package import package_repository

    dist = work / "dist"
    manifest = package_repository(repo, dist, models=models)
    endpoint = MMEEndpoint(MMEConfig(model_data_url=str(dist), port=0, work_dir=work / "mme",
                                     footprint="rss")).start()
    client = boto3.client("sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=Config(read_timeout=900, retries={"max_attempts": 1}))
    rows = []
    try:
        for model in models:
            body, ctype = _request(model)
            target = f"{model}.tar.gz"
            t0 = time.monotonic()
            client.invoke_endpoint(EndpointName="local", TargetModel=target, ContentType=ctype, Body=body)["Body"].read()
            cold = time.monotonic() - t0
            t0 = time.monotonic()
            client.invoke_endpoint(EndpointName="local", TargetModel=target, ContentType=ctype, Body=body)["Body"].read()
            warm = time.monotonic() - t0
            rec = endpoint.cache.get(target)
            timings = dict(rec.timings) if rec else {}
            rows.append({"model": model, "tarball_bytes": manifest["models"][model]["size"],
                         "extracted_bytes": rec.disk_bytes if rec else None,
                         "fetch_s": timings.get("fetch_s"), "extract_s": timings.get("extract_s"),
                         "load_s": timings.get("load_s"), "first_response_s": round(cold, 3),
                         "warm_response_s": round(warm, 3),
                         "stub_rss_mib": round(rec.footprint / 2**20, 1) if rec and rec.footprint_source == "rss" else None})
    finally:
        endpoint.stop()
    return {"host": {"python": platform.python_version(), "machine": platform.machine(),
                     "cpus": __import__("os").cpu_count()},
            "note": "fetch from a local directory; first_response_s = invoke_endpoint wall time of the first call "
                    "(fetch + extract + Triton load + inference); models loaded one after another",
            "models": rows}


def table(result: dict) -> str:
    cols = ("model", "tarball_bytes", "extract_s", "load_s", "first_response_s", "warm_response_s", "stub_rss_mib")
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for row in result["models"]:
        lines.append(" | ".join(str(row.get(c)) for c in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.mme.coldstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--out", type=Path, default=ROOT / "var" / "mme" / "coldstart.json")
    args = p.parse_args(argv)
    from serving import MODEL_NAMES

    models = args.models or list(MODEL_NAMES)
    with tempfile.TemporaryDirectory(prefix="mme-coldstart-") as tmp:
        result = run(args.repo, models, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
