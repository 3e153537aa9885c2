"""SageMaker Triton container versions, what runs inside them, and their per-region image URIs.

Table checked 2026-11-27 against public sources (an old copy of the SDK's
`image_uri_config/sagemaker-tritonserver.json` stops at 24.09: don't trust it alone):
* aws/sagemaker-python-sdk, src/sagemaker/image_uri_config/sagemaker-tritonserver.json:
  23.12-24.09; PR #5314 adds 25.09; PR #5999 (merged 2026-07) adds 26.05 ("Python: 3.12,
  Ubuntu: 24.04, CUDA: 13.2.1").
* aws/deep-learning-containers PR #6739: available_images.md lists 26.04 and 26.05;
  issue #4990: 25.04 running on a multi-model endpoint.
* NVIDIA's Triton release notes / compatibility matrix: Ubuntu, Python, CUDA of each NGC
  release the SageMaker image is built from (24.12+ are Ubuntu 24.04 / Python 3.12).
From 23.12 on the images live in the Deep Learning Containers registry (763104351884 in most
regions), not in the older per-region accounts that pre-23.12 notebooks hard-code.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.errors import DeployError

TABLE_CHECKED = "2026-11-27"
# The newest SageMaker Triton image: `deploy create` uses it unless told otherwise, and
# `make env` builds for its Python by default.
DEFAULT_TRITON_VERSION = "26.05"
REPOSITORY = "sagemaker-tritonserver"


@dataclass(frozen=True)
class TritonRelease:
    container: str  # NGC / SageMaker container tag, e.g. "26.05"
    server: str  # tritonserver version inside it
    python: str  # interpreter the Python backend stub uses: the execution env must match
    ubuntu: str  # base OS of the image
    glibc: str  # that OS's glibc: the newest manylinux tag a wheel may carry to run there
    cuda: str  # CUDA toolkit the image is built on (a host driver must support it)

    @property
    def platform(self) -> str:
        """The wheel platform tag of the image's interpreter, e.g. manylinux_2_39_x86_64."""
        return f"manylinux_{self.glibc.replace('.', '_')}_x86_64"


_U22 = ("22.04", "2.35")  # Ubuntu 22.04 ships glibc 2.35, Python 3.10
_U24 = ("24.04", "2.39")  # Ubuntu 24.04 ships glibc 2.39, Python 3.12
# Container -> server per NVIDIA's release notes (one server minor per monthly release; the
# 25.x/26.x server numbers follow that numbering). CUDA: release notes (25.04 "CUDA 12.9.0",
# 25.08-25.10 CUDA 13.0.x), SDK PR #5999 for 26.05; 26.04's 13.2.0 is inferred from 26.05.
# 24.10 is listed because nvidia-pytriton 0.7.0's bundled tritonserver 2.51.0 (the local
# endpoint and tests) corresponds to it; SageMaker has no 24.10 image.
RELEASES: dict[str, TritonRelease] = {
    r.container: r
    for r in (
        TritonRelease("23.12", "2.41.0", "3.10", *_U22, "12.3.2"),
        TritonRelease("24.01", "2.42.0", "3.10", *_U22, "12.3.2"),
        TritonRelease("24.03", "2.44.0", "3.10", *_U22, "12.4.0"),
        TritonRelease("24.05", "2.46.0", "3.10", *_U22, "12.4.1"),
        TritonRelease("24.09", "2.50.0", "3.10", *_U22, "12.6.1"),
        TritonRelease("24.10", "2.51.0", "3.10", *_U22, "12.6.2"),
        TritonRelease("25.04", "2.57.0", "3.12", *_U24, "12.9.0"),
        TritonRelease("25.09", "2.61.0", "3.12", *_U24, "13.0.1"),
        TritonRelease("26.04", "2.68.0", "3.12", *_U24, "13.2.0"),
        TritonRelease("26.05", "2.69.0", "3.12", *_U24, "13.2.1"),
    )
}

_DLC = "763104351884"
# Region -> ECR account, identical for every version in the SDK's table (23.12-26.05).
REGISTRIES: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-1": _DLC,
    "ap-northeast-2": _DLC,
    "ap-northeast-3": "364406365360",
    "ap-south-1": _DLC,
    "ap-southeast-1": _DLC,
    "ap-southeast-2": _DLC,
    "ap-southeast-3": "907027046896",
    "ca-central-1": _DLC,
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-1": _DLC,
    "eu-north-1": _DLC,
    "eu-south-1": "692866216735",
    "eu-west-1": _DLC,
    "eu-west-2": _DLC,
    "eu-west-3": _DLC,
    "il-central-1": "780543022126",
    "me-south-1": "217643126080",
    "sa-east-1": _DLC,
    "us-east-1": _DLC,
    "us-east-2": _DLC,
    "us-west-1": _DLC,
    "us-west-2": _DLC,
}
# Versions SageMaker actually publishes (24.10 above is for bookkeeping only), oldest first.
SAGEMAKER_VERSIONS = ("23.12", "24.01", "24.03", "24.05", "24.09", "25.04", "25.09", "26.04", "26.05")


def release(container_version: str) -> TritonRelease:
    """The release record for a container tag such as "26.05"."""
    try:
        return RELEASES[container_version]
    except KeyError:
        raise DeployError(
            f"unknown Triton container version {container_version!r}; known: {', '.join(RELEASES)} "
            f"(table checked {TABLE_CHECKED}, deploy/images.py)"
        ) from None


def triton_image_uri(region: str, version: str = DEFAULT_TRITON_VERSION) -> str:
    """`<account>.dkr.ecr.<region>.<domain>/sagemaker-tritonserver:<version>-py3` for a region."""
    if version not in SAGEMAKER_VERSIONS:
        raise DeployError(
            f"SageMaker publishes no Triton image for version {version!r} in this table "
            f"(known: {', '.join(SAGEMAKER_VERSIONS)}); pass --image-uri to use another image"
        )
    account = REGISTRIES.get(region)
    if account is None:
        raise DeployError(
            f"no SageMaker Triton image known for region {region!r}; pass --image-uri "
            f"(known regions: {', '.join(sorted(REGISTRIES))})"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{REPOSITORY}:{version}-py3"


def version_from_image_uri(image_uri: str) -> str | None:
    """The container release in an image tag (`...:26.05-py3` -> "26.05"), None when unknown."""
    tag = image_uri.rsplit(":", 1)[-1] if ":" in image_uri.rsplit("/", 1)[-1] else ""
    version = tag.split("-", 1)[0]
    return version if version in RELEASES else None
