"""Load `dist/manifest.json` and verify tarballs against it (`python -m deploy check`)."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from deploy.errors import DeployError
from deploy.package import MANIFEST_NAME, REQUIRED_FILES, sha256_file
from deploy.safe_extract import TarballError, normalized_name, validate_members


def load_manifest(dist: str | os.PathLike[str]) -> dict:
    path = Path(dist) / MANIFEST_NAME
    if not path.is_file():
        raise DeployError(f"{path} not found; run `make package` (python -m deploy package) first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeployError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise DeployError(f"{path} has no 'models' table; regenerate it with `make package`")
    return manifest


def model_for_tarball(manifest: dict, tarball_name: str) -> tuple[str, dict]:
    for model, entry in manifest["models"].items():
        if entry.get("tarball") == tarball_name:
            return model, entry
    raise DeployError(f"{tarball_name} is not listed in the manifest")


def _tar_contents(path: Path) -> dict[str, tuple[int, str]]:
    """{normalized path: (size, sha256)} for the regular files of a tarball, after safety checks."""
    contents: dict[str, tuple[int, str]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            members = validate_members(tar)  # refuses links, devices, '..', absolute paths
            for info in members:
                if not info.isfile():
                    continue
                digest = hashlib.sha256()
                fh = tar.extractfile(info)
                assert fh is not None
                while chunk := fh.read(1024 * 1024):
                    digest.update(chunk)
                contents[normalized_name(info.name)] = (info.size, digest.hexdigest())
    except (tarfile.TarError, EOFError, OSError) as exc:  # corrupt data behind valid headers
        raise TarballError(None, f"not a readable tar archive: {exc}") from None
    return contents


def check_tarball(path: str | os.PathLike[str], manifest: dict) -> list[str]:
    """Problems found in one tarball, compared to its manifest entry ([] means it is good)."""
    tar_path = Path(path)
    try:
        model, entry = model_for_tarball(manifest, tar_path.name)
    except DeployError as exc:
        return [str(exc)]
    if not tar_path.is_file():
        return [f"{tar_path} is missing"]
    problems: list[str] = []
    size = tar_path.stat().st_size
    if size != entry.get("size"):
        problems.append(f"size is {size} bytes, manifest says {entry.get('size')}")
    digest = sha256_file(tar_path)
    if digest != entry.get("sha256"):
        problems.append(f"sha256 is {digest}, manifest says {entry.get('sha256')}")
    try:
        contents = _tar_contents(tar_path)
    except TarballError as exc:
        return problems + [str(exc)]
    top = entry.get("triton_name") or model  # versioned tarballs: <model>-<version>/
    outside = sorted(p for p in contents if not p.startswith(f"{top}/"))
    if outside:
        problems.append(f"members outside the top folder {top}/: {', '.join(outside)}")
    for required in REQUIRED_FILES:
        if f"{top}/{required}" not in contents:
            problems.append(f"required file {top}/{required} is missing")
    expected = {f["path"]: (f["size"], f["sha256"]) for f in entry.get("files", [])}
    extra = sorted(set(contents) - set(expected))
    absent = sorted(set(expected) - set(contents))
    if extra:
        problems.append(f"files not in the manifest: {', '.join(extra)}")
    if absent:
        problems.append(f"files in the manifest but not in the tarball: {', '.join(absent)}")
    changed = sorted(p for p in set(contents) & set(expected) if contents[p] != expected[p])
    if changed:
        problems.append(f"files whose size or sha256 differ from the manifest: {', '.join(changed)}")
    return problems


def check_dist(dist: str | os.PathLike[str], tarballs: list[str] | None = None) -> dict[str, list[str]]:
    """Check the named tarballs (default: all in the manifest); {tarball: problems}."""
    manifest = load_manifest(dist)
    names = tarballs or [e["tarball"] for e in manifest["models"].values()]
    results = {}
    for name in names:
        path = Path(name) if os.sep in name else Path(dist) / name
        results[path.name] = check_tarball(path, manifest)
    return results
