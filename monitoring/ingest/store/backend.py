"""Where store files live: a local directory or an S3 prefix, behind one small interface.

Keys are ``/``-separated paths relative to the store root. ``write`` is atomic in both:
locally through a hidden ``.<name>.tmp`` file (ignored by pyarrow's dataset discovery and by
``*.parquet`` globs) + fsync + rename; on S3 a PUT is atomic by itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

from monitoring.capture.segments import write_file_atomic

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Entry:
    key: str
    size: int


class LocalBackend:
    kind = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"

    def url(self, key: str = "") -> str:
        return os.path.join(self.root, *key.split("/")) if key else self.root

    def list(self, prefix: str = "") -> list[Entry]:
        """All finished files under ``prefix`` (a directory key), temp files excluded."""
        return [e for e in self._walk(prefix) if not _is_tmp(e.key)]

    def list_tmp(self, prefix: str = "") -> list[Entry]:
        return [e for e in self._walk(prefix) if _is_tmp(e.key)]

    def _walk(self, prefix: str) -> Iterator[Entry]:
        top = self.url(prefix.rstrip("/"))
        if not os.path.isdir(top):
            return
        for dirpath, _dirs, files in os.walk(top):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for f in files:
                try:
                    size = os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    continue  # vanished (compaction, another reader)
                yield Entry(rel + f, size)

    def read(self, key: str) -> bytes:
        with open(self.url(key), "rb") as f:
            return f.read()

    def open_input(self, key: str) -> Any:
        return self.url(key)

    def write(self, key: str, data: bytes) -> None:
        path = self.url(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        d, name = os.path.split(path)
        write_file_atomic(path, data, tmp_path=os.path.join(d, TMP_PREFIX + name + TMP_SUFFIX))

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.url(key))
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return os.path.exists(self.url(key))


def _is_tmp(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(TMP_PREFIX) or name.endswith(TMP_SUFFIX)


class S3Backend:
    kind = "s3"

    def __init__(self, url: str, endpoint_url: str | None = None, client: Any = None) -> None:
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("MONITORING_S3_ENDPOINT_URL") or None
        if client is None:
            import boto3
            from botocore.config import Config

            cfg = Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
            client = boto3.client("s3", endpoint_url=self.endpoint_url, config=cfg)
        self.client = client

    def __repr__(self) -> str:
        return f"S3Backend({self.url()!r})"

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str = "") -> str:
        k = self._k(key) if key else self.prefix
        return f"s3://{self.bucket}/{k}" if k else f"s3://{self.bucket}"

    def list(self, prefix: str = "") -> list[Entry]:
        full = self._k(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                out.append(Entry(obj["Key"][strip:], int(obj["Size"])))
        return out

    def list_tmp(self, prefix: str = "") -> list[Entry]:
        return []  # PUTs are atomic: S3 never holds a partial object

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()

    def open_input(self, key: str) -> Any:
        import pyarrow as pa

        return pa.BufferReader(self.read(key))

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


Backend = LocalBackend | S3Backend


def open_backend(location: str | os.PathLike[str] | Backend, endpoint_url: str | None = None) -> Backend:
    """The one store opener: ``s3://bucket/prefix`` -> :class:`S3Backend`; a backend object is
    returned as it is (callers take "a path or a Backend"); anything else is a local directory."""
    if isinstance(location, (LocalBackend, S3Backend)):
        return location
    loc = os.fspath(location)
    if loc.startswith("s3://"):
        return S3Backend(loc, endpoint_url=endpoint_url)
    return LocalBackend(loc)
