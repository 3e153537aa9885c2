"""Fixtures for the deploy tests: a moto server on loopback and a fake model repository.

Every AWS call in these tests goes to the in-process moto server on 127.0.0.1. Besides the
explicit `--endpoint-url`, AWS_ENDPOINT_URL is pointed at it too, so a client that misses
the flag still cannot reach the real AWS.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import boto3
import pytest

# So `import deploy` and the helper module work however pytest is started (any import mode).
for _path in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from deploy_testlib import REGION, make_repo  # noqa: E402


@pytest.fixture(autouse=True)
def allow_test_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake repositories here hold test weights: opt in, as CI and `make rehearse` do.

    Tests of the refusal itself delete the variable (monkeypatch.delenv).
    """
    monkeypatch.setenv("DEPLOY_ALLOW_TEST_WEIGHTS", "1")


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory):
    """Fake credentials and config so nothing from the developer's AWS setup leaks in."""
    empty = tmp_path_factory.mktemp("awsconfig") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "SAGEMAKER_ROLE_ARN",
                    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_IAM",
                    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING",
                    "SOURCE_DATE_EPOCH"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_SESSION_TOKEN", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", str(empty))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield mp


@pytest.fixture(scope="session")
def moto_url(aws_env: pytest.MonkeyPatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    aws_env.setenv("AWS_ENDPOINT_URL", url)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture()
def clients(moto_url: str) -> dict:
    def make(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=moto_url)

    return {s: make(s) for s in ("s3", "sagemaker", "application-autoscaling", "iam", "sagemaker-runtime")}


@pytest.fixture()
def bucket(clients: dict) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    clients["s3"].create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def role_arn(moto_url: str) -> str:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_url)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                       "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    return iam.create_role(RoleName="sm-exec", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "model_repository")
