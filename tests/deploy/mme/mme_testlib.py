"""Helpers for the local-MME tests (unique module name so it cannot clash with other test helpers)."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from PIL import Image

MODELS = ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale", "resnet_classifier")


def runtime_client(url: str):
    from botocore.config import Config

    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}, read_timeout=600))


def http(method: str, url: str, doc=None, body: bytes | None = None, headers: dict | None = None):
    """(status, parsed JSON or raw bytes) for one request to the endpoint."""
    data = json.dumps(doc).encode() if doc is not None else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def image_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def extracted_size(tarball: Path) -> int:
    with tarfile.open(tarball) as tar:
        return sum(m.size for m in tar.getmembers() if m.isfile())


def evil_tarball(path: Path, kind: str, outside: Path) -> str:
    """A tarball with one malicious member; returns that member's name."""
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes = b"pwned", **attrs) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)

        config = b'name: "evil"\nbackend: "python"\n'
        add("evil/config.pbtxt", config)
        if kind == "dotdot":
            member = f"evil/../../../{outside.name}"
            add(member)
        elif kind == "absolute":
            member = str(outside)
            add(member)
        elif kind == "symlink":
            member = "evil/1"
            add(member, b"", type=tarfile.SYMTYPE, linkname=str(outside.parent))
            add("evil/1/model.py", b"print('escaped')")
        else:
            raise ValueError(kind)
    return member


def start_endpoint(work_dir: Path, model_data_url: str, **kw):
    from deploy.mme import MMEConfig, MMEEndpoint

    config = MMEConfig(model_data_url=model_data_url, port=0, work_dir=work_dir, footprint="disk",
                       triton_env={"OMP_NUM_THREADS": "1"}, load_timeout_s=300, **kw)
    return MMEEndpoint(config).start()
