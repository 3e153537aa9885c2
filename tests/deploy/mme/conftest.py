"""Fixtures for the local MME: deterministic tarballs of the five tiny models, one endpoint per module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

for _path in (Path(__file__).resolve().parents[3], Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.fixture(scope="session")
def mme_dist(model_repo, tmp_path_factory) -> Path:
    """dist/ with <model>.tar.gz for the five models, built by deploy.package from the tiny
    checkpoints, packaged with one instance per model (`--instances`, tests/conftest.py
    TEST_INSTANCES): these tests are not about the instance count."""
    from deploy.package import package_repository

    from tests.conftest import TEST_INSTANCES

    dist = tmp_path_factory.mktemp("mme") / "dist"
    package_repository(model_repo, dist, instances=TEST_INSTANCES)
    return dist


@pytest.fixture(scope="session")
def mme_dist_shipped(model_repo, tmp_path_factory) -> Path:
    """dist/ packaged as shipped: two instances per model (the tests of one stub of two dying)."""
    from deploy.package import package_repository

    dist = tmp_path_factory.mktemp("mme-shipped") / "dist"
    package_repository(model_repo, dist, models=["resnet_classifier"])
    return dist

