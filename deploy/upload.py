"""Upload the packaged tarballs to the endpoint's S3 prefix, skipping unchanged ones.

Each object carries its sha256 in metadata (`x-amz-meta-sha256`). S3's ETag is no content
hash for multipart uploads, so the metadata is what makes "unchanged" decidable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from deploy.aws import error_code, error_message, read_json_table
from deploy.errors import DeployError
from deploy.manifest import load_manifest
from deploy.package import MANIFEST_NAME, sha256_file

SHA_METADATA_KEY = "sha256"
# S3 needs parts of at least 5 MiB (except the last); 64 MiB parts keep a 5 GB checkpoint
# tarball well under the 10,000-part limit.
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024
DEFAULT_MULTIPART_CHUNKSIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class UploadResult:
    tarball: str
    key: str
    action: str  # "uploaded" or "skipped"
    sha256: str
    size: int


def check_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(f"S3 bucket {bucket!r} does not exist; create it first (aws s3 mb s3://{bucket})") from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(f"access to S3 bucket {bucket!r} is denied for these credentials") from None
        raise DeployError(f"cannot reach S3 bucket {bucket!r}: {code}: {error_message(exc)}") from None


def _remote_sha(s3: Any, bucket: str, key: str) -> tuple[str | None, int | None]:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None, None
        raise
    return head.get("Metadata", {}).get(SHA_METADATA_KEY), head.get("ContentLength")


def upload_dist(
    s3: Any,
    bucket: str,
    prefix: str,
    dist: str | os.PathLike[str],
    *,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[UploadResult]:
    """Upload every tarball listed in `dist/manifest.json` to s3://bucket/prefix/.

    A tarball whose sha256 differs from the manifest is refused (stale or tampered: run
    `python -m deploy check`). An object already holding the same sha256 and size is skipped
    unless `force`.
    """
    manifest = load_manifest(dist)
    check_bucket(s3, bucket)
    prefix = prefix.strip("/")
    config = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize)
    results = []
    for model, entry in sorted(manifest["models"].items()):
        path = Path(dist) / entry["tarball"]
        if not path.is_file():
            raise DeployError(f"{path} listed in the manifest is missing; run `make package`")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise DeployError(
                f"{path} sha256 {digest} does not match the manifest ({entry['sha256']}); "
                "run `python -m deploy check` or re-package"
            )
        size = path.stat().st_size
        key = f"{prefix}/{path.name}" if prefix else path.name
        remote_sha, remote_size = _remote_sha(s3, bucket, key)
        if not force and remote_sha == digest and remote_size == size:
            log(f"skip   s3://{bucket}/{key} (unchanged, sha256 {digest[:12]})")
            results.append(UploadResult(path.name, key, "skipped", digest, size))
            continue
        s3.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={"Metadata": {SHA_METADATA_KEY: digest}, "ContentType": "application/gzip"},
            Config=config,
        )
        log(f"upload s3://{bucket}/{key} ({size} bytes, sha256 {digest[:12]})")
        results.append(UploadResult(path.name, key, "uploaded", digest, size))
    # Last, so a manifest in S3 always describes tarballs that are there: `create` and `update`
    # read the weights' provenance from it.
    key = f"{prefix}/{MANIFEST_NAME}" if prefix else MANIFEST_NAME
    s3.put_object(Bucket=bucket, Key=key, Body=(Path(dist) / MANIFEST_NAME).read_bytes(), ContentType="application/json")
    return results


def read_remote_manifest(s3: Any, bucket: str, prefix: str) -> dict | None:
    """The manifest `upload` put next to the tarballs, or None when there is none."""
    prefix = prefix.strip("/")
    key = f"{prefix}/{MANIFEST_NAME}" if prefix else MANIFEST_NAME
    return read_json_table(s3, bucket, key)
