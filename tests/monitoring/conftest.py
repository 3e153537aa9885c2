"""Shared setup for the monitoring tests: import paths and the capture test helpers."""

from __future__ import annotations

import sys
from pathlib import Path

# So `import monitoring` and `import capture_testlib` work however pytest is started.
for _path in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import pytest  # noqa: E402

from capture_testlib import free_port  # noqa: E402


@pytest.fixture
def aws_env(tmp_path, monkeypatch):
    """Fake credentials; nothing from a developer's AWS setup leaks in, nothing reaches AWS."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("MONITORING_S3_ENDPOINT_URL", raising=False)


@pytest.fixture
def moto_s3(aws_env):
    """A moto S3 server on 127.0.0.1 with an empty bucket; yields (endpoint_url, bucket, client)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket="capture-bucket")
    try:
        yield url, "capture-bucket", client
    finally:
        server.stop()
