"""Model versions in an MME prefix, and the alias object that says which one is current.

`deploy update` uploads `<model>-<version>.tar.gz` next to the versions already there (AWS:
add a changed model under a new name, never overwrite one an instance may have loaded) and
then rewrites `s3://BUCKET/PREFIX/aliases.json`:

    {"alias_version": 1, "models": {"sd_depth": {"current": "sd_depth-3f9c0a1b2c4d.tar.gz",
     "version": "3f9c0a1b2c4d", "history": [{"tarball": ..., "version": ..., "sha256": ...}, ...]}}}

Callers keep asking for `sd_depth`: `deploy invoke --model-data-url`, the load tester's
`--alias-url` resolve it here. Old versions stay until `deploy prune` deletes them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from deploy.aws import parse_s3_url, read_json_table
from deploy.errors import DeployError

ALIAS_NAME = "aliases.json"
ALIAS_VERSION = 1
TARBALL_SUFFIX = ".tar.gz"
_VERSIONED = re.compile(r"^(?P<model>[A-Za-z0-9_.]+?)-(?P<version>[0-9a-f]{12})\.tar\.gz$")


@dataclass(frozen=True)
class Version:
    model: str
    version: str | None  # None: an unversioned `<model>.tar.gz` (packaged without --versioned)
    tarball: str
    size: int
    last_modified: Any
    current: bool


def split_tarball(name: str) -> tuple[str, str | None]:
    """(model, version) of a tarball name; version None for `<model>.tar.gz`."""
    m = _VERSIONED.match(name)
    if m:
        return m.group("model"), m.group("version")
    if not name.endswith(TARBALL_SUFFIX):
        raise DeployError(f"{name!r} is not a model tarball name (<model>[-<version>].tar.gz)")
    return name[: -len(TARBALL_SUFFIX)], None


def _key(prefix: str, name: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def read_aliases(s3: Any, bucket: str, prefix: str) -> dict:
    """The alias object, or an empty one when there is none yet."""
    key = _key(prefix, ALIAS_NAME)
    return read_json_table(s3, bucket, key) or {"alias_version": ALIAS_VERSION, "models": {}}


def write_aliases(s3: Any, bucket: str, prefix: str, doc: dict) -> None:
    s3.put_object(Bucket=bucket, Key=_key(prefix, ALIAS_NAME), ContentType="application/json",
                  Body=(json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def switch(doc: dict, model: str, tarball: str, version: str | None, sha256: str | None) -> dict | None:
    """Point `model` at `tarball` in the alias document; return the previous current entry."""
    entry = doc["models"].setdefault(model, {"history": []})
    previous = {k: entry[k] for k in ("current", "version") if k in entry} or None
    entry.update(current=tarball, version=version)
    if not any(h.get("tarball") == tarball for h in entry["history"]):
        entry["history"].append({"tarball": tarball, "version": version, "sha256": sha256})
    return previous


def resolve(name: str, doc: dict) -> str:
    """The TargetModel for what a caller asked: a tarball name as is, an alias to its current version."""
    if name.endswith(TARBALL_SUFFIX) or "/" in name:
        return name
    entry = doc["models"].get(name)
    if entry and entry.get("current"):
        return entry["current"]
    return f"{name}{TARBALL_SUFFIX}"  # no alias: the unversioned tarball, as before versions existed


def resolve_url(s3: Any, model_data_url: str, name: str) -> str:
    """:func:`resolve` with the alias object read from the endpoint's model data URL."""
    if name.endswith(TARBALL_SUFFIX):
        return name
    bucket, prefix = parse_s3_url(model_data_url)
    return resolve(name, read_aliases(s3, bucket, prefix))


def list_versions(s3: Any, bucket: str, prefix: str) -> list[Version]:
    """Every model tarball directly under the prefix, oldest first per model, current marked.

    Order: tarballs the alias history knows in the order they became current (S3's
    LastModified has one-second resolution), then by upload time.
    """
    doc = read_aliases(s3, bucket, prefix)
    base = _key(prefix, "")
    current = {e.get("current") for e in doc["models"].values()}
    rank = {h.get("tarball"): i for e in doc["models"].values() for i, h in enumerate(e.get("history", []))}
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(base):]
            if "/" in name or not name.endswith(TARBALL_SUFFIX):
                continue
            model, version = split_tarball(name)
            out.append(Version(model, version, name, obj["Size"], obj["LastModified"], name in current))
    return sorted(out, key=lambda v: (v.model, v.tarball in rank, rank.get(v.tarball, 0), v.last_modified, v.tarball))


def prune(s3: Any, bucket: str, prefix: str, *, keep: int = 0, models: list[str] | None = None,
          dry_run: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """Delete old versions: all but the current one and the `keep` newest others; return the names.

    Only versioned tarballs of models that have an alias are touched: without an alias nobody
    recorded which one is current. Instances that still have a deleted version loaded keep
    serving it until they unload it (SageMaker caches models on the instance).
    """
    if keep < 0:
        raise DeployError(f"--keep must be 0 or more, got {keep}")
    doc = read_aliases(s3, bucket, prefix)
    by_model: dict[str, list[Version]] = {}
    for v in list_versions(s3, bucket, prefix):
        if v.version is not None and v.model in doc["models"] and (models is None or v.model in models):
            by_model.setdefault(v.model, []).append(v)
    deleted = []
    for model, versions in sorted(by_model.items()):
        old = [v for v in versions if not v.current]
        for v in old[: len(old) - keep] if keep else old:
            log(f"{'would delete' if dry_run else 'delete'} s3://{bucket}/{_key(prefix, v.tarball)}")
            if not dry_run:
                s3.delete_object(Bucket=bucket, Key=_key(prefix, v.tarball))
            deleted.append(v.tarball)
        doc["models"][model]["history"] = [h for h in doc["models"][model]["history"]
                                           if h.get("tarball") not in deleted]
    if deleted and not dry_run:
        write_aliases(s3, bucket, prefix, doc)
    return deleted
