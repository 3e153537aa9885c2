"""Fixtures for the watch tests: a moto server (S3 + CloudWatch) reached through boto3's standard
endpoint setting (AWS_ENDPOINT_URL), so the code under test takes no endpoint argument."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parents[2] / "monitoring"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


@pytest.fixture
def moto_aws(aws_env, monkeypatch):
    """(endpoint url, boto3 client factory); AWS_ENDPOINT_URL points every boto3 client at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from capture_testlib import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    try:
        yield url, lambda service: boto3.client(service, region_name="us-east-1")
    finally:
        server.stop()
