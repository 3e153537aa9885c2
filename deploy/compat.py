"""Do the env tarball, the model tarballs and the serving image agree? (`python -m deploy check`)

Checked before `create`, because a mismatch otherwise shows up only as a model that fails to
load on the endpoint, minutes later: the env's Python must be the image's stub Python, its
wheels' platform must fit the image's glibc, and the model tarballs must have been packaged
for a release with that Python.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from deploy import images
from deploy.env_target import ENV_MANIFEST, env_manifest_from, env_problems, read_env_manifest
from deploy.errors import DeployError
from deploy.package import ENV_MEMBER


@dataclass
class Compatibility:
    image: str  # short image name for messages, e.g. sagemaker-tritonserver:26.05-py3
    release: images.TritonRelease
    problems: list[str] = field(default_factory=list)


def image_release(image_uri: str | None, triton_version: str | None, manifest: dict | None) -> tuple[str, images.TritonRelease]:
    """(short image name, its release) from --image-uri, --triton-version or the manifest."""
    if image_uri:
        version = images.version_from_image_uri(image_uri) or triton_version
        if version is None:
            raise DeployError(f"cannot tell the Triton release of image {image_uri!r} from its tag; "
                              "pass --triton-version too")
        return image_uri.rsplit("/", 1)[-1], images.release(version)
    version = triton_version or ((manifest or {}).get("triton") or {}).get("container") or images.DEFAULT_TRITON_VERSION
    return f"{images.REPOSITORY}:{version}-py3", images.release(version)


def embedded_env_manifest(model_tarball: Path) -> dict | None:
    """python_env.json of the env shipped inside a model tarball (<model>/env/...), or None."""
    with tarfile.open(model_tarball, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith("/" + ENV_MEMBER) and member.name.count("/") == 2:
                inner = tar.extractfile(member)
                assert inner is not None
                # Streamed: python_env.json is the env's first member, so this reads kilobytes.
                with tarfile.open(fileobj=inner, mode="r|*") as env:
                    return env_manifest_from(env, f"{model_tarball.name}:{member.name}")
    return None


def check_compatibility(manifest: dict | None, *, image_uri: str | None = None, triton_version: str | None = None,
                        env_tarball: str | os.PathLike[str] | None = None, tarballs: list[Path] = ()) -> Compatibility:
    """Compare the env (`env_tarball`, and any shipped inside `tarballs`) and the manifest's
    release with the chosen image."""
    image, release = image_release(image_uri, triton_version, manifest)
    result = Compatibility(image=image, release=release)
    if manifest is not None:
        packaged = manifest.get("triton") or {}
        if packaged.get("python") and packaged.get("python") != release.python:
            result.problems.append(
                f"model tarballs were packaged for Triton {packaged.get('container')} (Python {packaged.get('python')}), "
                f"image {image} runs Python {release.python}; repackage with --triton-version {release.container}")
    envs: list[tuple[str, dict]] = []
    if env_tarball is not None:
        envs.append((Path(env_tarball).name, read_env_manifest(env_tarball)))
    for tarball in tarballs:
        if tarball.is_file():
            try:
                embedded = embedded_env_manifest(tarball)
            except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError, DeployError) as exc:
                result.problems.append(f"{tarball.name}: cannot read its env: {exc}")
                continue
            if embedded is not None:
                envs.append((f"{tarball.name}:{ENV_MEMBER}", embedded))
    for source, env in envs:
        if env.get("python") is None:
            result.problems.append(f"{source}: its {ENV_MANIFEST} records no Python version")
            continue
        result.problems += env_problems(env, image, release, source=f"env {source}")
    return result
