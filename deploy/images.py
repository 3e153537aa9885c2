"""SageMaker Triton container versions and their per-region image URIs.

Source: aws/sagemaker-python-sdk, src/sagemaker/image_uri_config/sagemaker-tritonserver.json
(versions 23.12 to 24.09; 24.09 is the newest listed there). From 23.12 on the images live
in the Deep Learning Containers registry (763104351884 in most regions), not in the older
per-region accounts (785573368785 in us-east-1, ...) that pre-23.12 notebooks hard-code.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.errors import DeployError

DEFAULT_TRITON_VERSION = "24.09"
REPOSITORY = "sagemaker-tritonserver"


@dataclass(frozen=True)
class TritonRelease:
    container: str  # NGC / SageMaker container tag, e.g. "24.09"
    server: str  # tritonserver version inside it
    python: str  # interpreter the Python backend stub uses: the execution env must match


# Container -> server per NVIDIA's release notes. All of these are Ubuntu 22.04 images with
# Python 3.10. 24.10 is listed because nvidia-pytriton 0.7.0's bundled tritonserver 2.51.0
# (used by the local endpoint and tests) corresponds to it; SageMaker has no 24.10 image.
RELEASES: dict[str, TritonRelease] = {
    r.container: r
    for r in (
        TritonRelease("23.12", "2.41.0", "3.10"),
        TritonRelease("24.01", "2.42.0", "3.10"),
        TritonRelease("24.03", "2.44.0", "3.10"),
        TritonRelease("24.05", "2.46.0", "3.10"),
        TritonRelease("24.09", "2.50.0", "3.10"),
        TritonRelease("24.10", "2.51.0", "3.10"),
    )
}

_DLC = "763104351884"
# Region -> ECR account, identical for every version above in the SDK's table.
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
# Versions SageMaker actually publishes (24.10 above is for bookkeeping only).
SAGEMAKER_VERSIONS = ("23.12", "24.01", "24.03", "24.05", "24.09")


def release(container_version: str) -> TritonRelease:
    """The release record for a container tag such as "24.09"."""
    try:
        return RELEASES[container_version]
    except KeyError:
        raise DeployError(
            f"unknown Triton container version {container_version!r}; known: {', '.join(RELEASES)}"
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
