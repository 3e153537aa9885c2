"""Where model tarballs come from: a local directory or an S3 prefix (the endpoint's ModelDataUrl).

`TargetModel` is a path relative to the model data URL, exactly as SageMaker resolves it
(`s3://bucket/prefix/` + `sd_depth.tar.gz`). It comes from the caller, so it is validated
before it is joined to anything: no absolute paths, no `..`, no backslashes or NULs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from deploy.mme.errors import BadRequest, ModelNotFound


@dataclass
class Fetched:
    path: Path  # a tarball, or a directory holding an extracted model
    temporary: bool  # downloaded: delete once extracted

    def cleanup(self) -> None:
        if self.temporary:
            if self.path.is_dir():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)


def check_target_model(name: str) -> str:
    """Return a safe relative key for a TargetModel value, or raise BadRequest."""
    if not name or len(name) > 1024:
        raise BadRequest("TargetModel must be 1-1024 characters")
    if "\x00" in name or "\\" in name or name.startswith("/") or any(ord(c) < 32 for c in name):
        raise BadRequest(f"TargetModel {name!r} must be a relative path without backslashes or control characters")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadRequest(f"TargetModel {name!r} must not contain empty, '.' or '..' path components")
    return name


def _split_s3(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if not parsed.netloc:
        raise BadRequest(f"{url!r} is not an s3://bucket/key URL")
    return parsed.netloc, parsed.path.lstrip("/")


def _local(url: str) -> str:
    return os.path.realpath(urlparse(url).path if url.startswith("file://") else url)


def _within(url: str, root: str) -> bool:
    """Whether `url` names something under `root` (an s3:// prefix or a local directory; local
    paths compared after resolving symlinks and '..')."""
    if root.startswith("s3://") or url.startswith("s3://"):
        if not (root.startswith("s3://") and url.startswith("s3://")):
            return False
        parts = url[len("s3://"):].split("/")
        return ".." not in parts and url.startswith(root.rstrip("/") + "/")
    path, base = _local(url), _local(root)
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


class ModelSource:
    def __init__(self, model_data_url: str | None, downloads: Path, *, s3_endpoint_url: str | None = None,
                 region: str = "us-east-1", allowed_roots: tuple[str, ...] = ()) -> None:
        self.model_data_url = model_data_url
        # Where POST /models may load from: a model tarball brings a model.py that runs in
        # tritonserver, so a caller of the container API must not pick any path on the host.
        self.allowed_roots = tuple(r for r in ((model_data_url,) if model_data_url else ()) + tuple(allowed_roots) if r)
        self.downloads = Path(downloads)
        self.s3_endpoint_url = s3_endpoint_url
        self.region = region
        self._s3 = None

    # -- resolving -----------------------------------------------------------------------------
    def url_for(self, target_model: str) -> str:
        """The full URL of a TargetModel under the model data URL."""
        check_target_model(target_model)
        if not self.model_data_url:
            raise BadRequest("this endpoint has no --model-data-url; load models with POST /models")
        base = self.model_data_url
        if base.startswith("s3://"):
            return base.rstrip("/") + "/" + target_model
        if base.startswith("file://"):
            base = urlparse(base).path
        return str(Path(base) / target_model)

    def check_load_url(self, url: str) -> str:
        """`url` if POST /models may load from it (under the model data URL or an allowed root), else BadRequest."""
        if not any(_within(url, root) for root in self.allowed_roots):
            roots = ", ".join(self.allowed_roots) or "none configured"
            raise BadRequest(f"url {url!r} is outside the roots this endpoint loads models from ({roots}); "
                             "set --model-data-url or add --allowed-model-root")
        return url

    def fetch(self, url: str, *, what: str = "model") -> Fetched:
        """A local path for `url` (local path, file:// URL or s3:// object), downloading if needed."""
        if url.startswith("s3://"):
            return self._download(url, what)
        path = Path(urlparse(url).path if url.startswith("file://") else url)
        if not path.exists():
            raise ModelNotFound(f"Failed to download model data for {what}: {path} does not exist")
        return Fetched(path, temporary=False)

    # -- S3 ------------------------------------------------------------------------------------
    def _client(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3", endpoint_url=self.s3_endpoint_url, region_name=self.region)
        return self._s3

    def _download(self, url: str, what: str) -> Fetched:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(url)
        self.downloads.mkdir(parents=True, exist_ok=True)
        dest = self.downloads / f"{uuid.uuid4().hex}-{Path(key).name or 'model'}"
        try:
            self._client().download_file(bucket, key, str(dest))
        except ClientError as exc:
            dest.unlink(missing_ok=True)
            code = exc.response.get("Error", {}).get("Code", "")
            message = f"Failed to download model data for {what} (bucket: {bucket}, key: {key}): {code or exc}"
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise ModelNotFound(message) from None
            raise BadRequest(message) from None
        except BotoCoreError as exc:
            dest.unlink(missing_ok=True)
            raise BadRequest(f"Failed to download model data for {what} from {url}: {exc}") from None
        return Fetched(dest, temporary=True)
