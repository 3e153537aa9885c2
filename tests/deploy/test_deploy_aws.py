"""The AWS commands end to end against moto on 127.0.0.1: upload, create, autoscale, invoke, delete."""

from __future__ import annotations

import json
import time
import os
import random
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from deploy.__main__ import main
from deploy.endpoint import DEFAULT_ENVIRONMENT, wait_in_service
from deploy.errors import DeployError
from deploy import images
from deploy.images import triton_image_uri
from deploy.invoke import invoke
from deploy.manifest import load_manifest
from deploy.package import package_repository
from deploy.payload import build_request, header_size
from deploy_testlib import ACCOUNT, REGION, make_repo

IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/sagemaker-tritonserver:26.05-py3"  # newest release
INSTANCE = "ml.g4dn.xlarge"  # moto rejects the real default ml.g5.xlarge


@pytest.fixture()
def cli(moto_url: str, capsys: pytest.CaptureFixture[str]):
    """Run `python -m deploy ARGS --endpoint-url <moto>` in-process; return (rc, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([*args, "--endpoint-url", moto_url])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture()
def dist(repo: Path, tmp_path: Path) -> Path:
    package_repository(repo, tmp_path / "dist")
    return tmp_path / "dist"


def create_args(name: str, role_arn: str, bucket: str, *extra: str) -> list[str]:
    return ["create", "--name", name, "--role-arn", role_arn, "--model-data-url", f"s3://{bucket}/mme/",
            "--instance-type", INSTANCE, *extra]


def queue_canned_response(moto_url: str, body: bytes | str, content_type: str) -> None:
    """moto answers InvokeEndpoint from this queue (else with b'body'): it runs no model."""
    results = {"account_id": ACCOUNT, "region": REGION,
               "results": [{"Body": body if isinstance(body, str) else body.decode(), "ContentType": content_type}]}
    resp = requests.post(f"{moto_url}/moto-api/static/sagemaker/endpoint-results", json=results, timeout=30)
    assert resp.status_code == 201


def assert_not_found(call, **kwargs) -> None:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    assert "Could not find" in info.value.response["Error"]["Message"]


def test_full_flow(cli, clients, bucket: str, role_arn: str, dist: Path, moto_url: str, tmp_path: Path) -> None:
    sm, aas = clients["sagemaker"], clients["application-autoscaling"]

    rc, out, _ = cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(dist))
    assert rc == 0
    assert f"model data url: s3://{bucket}/mme/" in out
    keys = sorted(o["Key"] for o in clients["s3"].list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["mme/manifest.json", "mme/resnet_classifier.tar.gz", "mme/sd_depth.tar.gz"]

    rc, out, err = cli(*create_args("sd-mme", role_arn, bucket))
    assert (rc, err) == (0, "")
    assert f"image: {IMAGE}" in out
    model = sm.describe_model(ModelName="sd-mme-model")
    assert model["ExecutionRoleArn"] == role_arn
    container = model["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == f"s3://{bucket}/mme/"
    # capture and the watch loop are on by default (deploy/monitoring_env.py)
    assert container["Environment"] == DEFAULT_ENVIRONMENT | {
        "CAPTURE_STORE": f"s3://{bucket}/monitoring/sd-mme/store", "MONITORING_WATCH_EVERY": "1h",
        "MONITORING_CLOUDWATCH_NAMESPACE": "ModelMonitoring/sd-mme"}
    variant = sm.describe_endpoint_config(EndpointConfigName="sd-mme-config")["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "sd-mme-model", INSTANCE, 1)
    ep = sm.describe_endpoint(EndpointName="sd-mme")
    assert (ep["EndpointConfigName"], ep["EndpointStatus"]) == ("sd-mme-config", "InService")

    rc, out, _ = cli("autoscale", "--name", "sd-mme", "--min", "1", "--max", "3", "--target-invocations", "20")
    assert rc == 0
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    mine = [t for t in target if t["ResourceId"] == "endpoint/sd-mme/variant/AllTraffic"]
    assert len(mine) == 1
    assert (mine[0]["ScalableDimension"], mine[0]["MinCapacity"], mine[0]["MaxCapacity"]) == (
        "sagemaker:variant:DesiredInstanceCount", 1, 3)
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker",
                                             ResourceId="endpoint/sd-mme/variant/AllTraffic")["ScalingPolicies"]
    assert len(policies) == 1
    tracking = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert policies[0]["PolicyType"] == "TargetTrackingScaling"
    assert tracking["TargetValue"] == 20.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"

    response = {"model_name": "sd_depth", "outputs": [
        {"name": "generated_image", "shape": [1, 1], "datatype": "BYTES", "data": ["aGVsbG8="]}]}
    queue_canned_response(moto_url, json.dumps(response), "application/json")
    image = tmp_path / "in.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"pixels")
    dumped = tmp_path / "request.json"
    rc, out, err = cli("invoke", "--name", "sd-mme", "--target-model", "sd_depth", "--prompt", "a fox",
                       "--image", str(image), "--inference-id", "req-1", "--dump-request", str(dumped))
    assert (rc, err) == (0, "")
    sent = json.loads(dumped.read_bytes())
    # The caller's deadline travels (default 60 s): epoch ms for the runtime, µs for Triton's queue.
    params = sent.pop("parameters")
    assert params["timeout"] == 60_000_000 and abs(params["deadline_ms"] - time.time() * 1000 - 60_000) < 30_000
    assert sent == {"inputs": [
        {"name": "prompt", "shape": [1, 1], "datatype": "BYTES", "data": ["a fox"]},
        {"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": ["iVBORw0KGgpwaXhlbHM="]},
    ]}
    printed = json.loads(out)
    assert printed["target_model"] == "sd_depth.tar.gz"
    assert printed["outputs"]["generated_image"]["shape"] == [1, 1]
    assert printed["outputs"]["generated_image"]["preview"] == ["aGVsbG8="]

    rc, out, _ = cli("delete", "--name", "sd-mme")
    assert rc == 0
    assert out.splitlines() == ["scaling_policy: deleted", "scalable_target: deleted", "alarms: deleted", "dashboard: deleted", "endpoint: deleted",
                                "endpoint_config: deleted", "model: deleted"]
    assert_not_found(sm.describe_endpoint, EndpointName="sd-mme")
    assert_not_found(sm.describe_endpoint_config, EndpointConfigName="sd-mme-config")
    assert_not_found(sm.describe_model, ModelName="sd-mme-model")
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t for t in targets if t["ResourceId"] == "endpoint/sd-mme/variant/AllTraffic"] == []

    rc, out, _ = cli("delete", "--name", "sd-mme")  # idempotent
    assert rc == 0
    assert out.splitlines() == ["scaling_policy: absent", "scalable_target: absent", "alarms: absent", "dashboard: absent", "endpoint: absent",
                                "endpoint_config: absent", "model: absent"]


def test_upload_multipart_then_skip_unchanged(cli, clients, bucket: str, tmp_path: Path) -> None:
    big = random.Random(0).randbytes(11 * 1024 * 1024)  # incompressible: the tarball stays > 10 MiB
    repo = make_repo(tmp_path / "repo", checkpoint_bytes={"sd_depth": big})
    package_repository(repo, tmp_path / "dist", compresslevel=1)
    manifest = load_manifest(tmp_path / "dist")
    args = ("upload", "--bucket", bucket, "--prefix", "/mme/", "--dist", str(tmp_path / "dist"),
            "--multipart-threshold", "5MiB", "--multipart-chunksize", "5MiB")

    rc, out, _ = cli(*args)
    assert rc == 0
    assert out.count("upload s3://") == 2
    s3 = clients["s3"]
    head = s3.head_object(Bucket=bucket, Key="mme/sd_depth.tar.gz")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + ~1 MiB parts: multipart was used
    assert head["Metadata"]["sha256"] == manifest["models"]["sd_depth"]["sha256"]
    assert head["ContentLength"] == manifest["models"]["sd_depth"]["size"]
    small = s3.head_object(Bucket=bucket, Key="mme/resnet_classifier.tar.gz")
    assert "-" not in small["ETag"]  # under the threshold: a single PUT

    rc, out, _ = cli(*args)
    assert rc == 0
    assert out.splitlines()[:2] == [
        f"skip   s3://{bucket}/mme/resnet_classifier.tar.gz (unchanged, sha256 "
        f"{manifest['models']['resnet_classifier']['sha256'][:12]})",
        f"skip   s3://{bucket}/mme/sd_depth.tar.gz (unchanged, sha256 {manifest['models']['sd_depth']['sha256'][:12]})",
    ]
    assert s3.head_object(Bucket=bucket, Key="mme/sd_depth.tar.gz")["LastModified"] == head["LastModified"]

    rc, out, _ = cli(*args, "--force")
    assert rc == 0 and out.count("upload s3://") == 2


def test_upload_changed_tarball_replaces_object(cli, clients, bucket: str, repo: Path, tmp_path: Path) -> None:
    package_repository(repo, tmp_path / "dist")
    assert cli("upload", "--bucket", bucket, "--prefix", "p", "--dist", str(tmp_path / "dist"))[0] == 0
    (repo / "sd_depth/1/model.py").write_text("# v2\n")
    package_repository(repo, tmp_path / "dist")
    rc, out, _ = cli("upload", "--bucket", bucket, "--prefix", "p", "--dist", str(tmp_path / "dist"))
    assert rc == 0
    assert out.startswith(f"skip   s3://{bucket}/p/resnet_classifier.tar.gz")
    assert f"upload s3://{bucket}/p/sd_depth.tar.gz" in out
    head = clients["s3"].head_object(Bucket=bucket, Key="p/sd_depth.tar.gz")
    assert head["Metadata"]["sha256"] == load_manifest(tmp_path / "dist")["models"]["sd_depth"]["sha256"]


def test_upload_errors(cli, bucket: str, dist: Path, tmp_path: Path) -> None:
    rc, _, err = cli("upload", "--bucket", "no-such-bucket-here", "--prefix", "mme", "--dist", str(dist))
    assert rc == 1
    assert err == "error: S3 bucket 'no-such-bucket-here' does not exist; create it first (aws s3 mb s3://no-such-bucket-here)\n"

    rc, _, err = cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(tmp_path / "empty"))
    assert rc == 1
    assert err == f"error: {tmp_path / 'empty' / 'manifest.json'} not found; run `make package` (python -m deploy package) first\n"

    with open(dist / "sd_depth.tar.gz", "ab") as fh:
        fh.write(b"tampered")
    rc, _, err = cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(dist))
    assert rc == 1
    assert "sd_depth.tar.gz sha256 " in err and "does not match the manifest" in err


def test_create_is_idempotent_and_refuses_drift(cli, clients, bucket: str, role_arn: str, dist: Path) -> None:
    assert cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(dist))[0] == 0
    assert cli(*create_args("idem", role_arn, bucket))[0] == 0
    arn = clients["sagemaker"].describe_endpoint(EndpointName="idem")["EndpointArn"]

    rc, out, err = cli(*create_args("idem", role_arn, bucket))
    assert (rc, err) == (0, "")
    assert "model idem-model exists; reusing" in out
    assert "endpoint config idem-config exists; reusing" in out
    assert "endpoint idem exists (InService); reusing" in out
    assert clients["sagemaker"].describe_endpoint(EndpointName="idem")["EndpointArn"] == arn

    rc, _, err = cli(*create_args("idem", role_arn, bucket, "--instance-count", "2"))
    assert rc == 1
    assert err == ("error: endpoint config 'idem-config' already exists with different settings "
                   "(InitialInstanceCount: 1 != 2); run `python -m deploy delete` first or choose another --name\n")
    rc, _, err = cli(*create_args("idem", role_arn, bucket, "--image-uri", "example.com/triton:custom"))
    assert rc == 1
    assert f"error: model 'idem-model' already exists with different settings (Image: '{IMAGE}' != " in err

    assert cli("delete", "--name", "idem")[0] == 0
    assert cli("delete", "--name", "idem")[0] == 0


def test_create_errors(cli, bucket: str, role_arn: str, dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def err_of(*args: str) -> str:
        rc, _, err = cli(*args)
        assert rc == 1
        return err

    base = ["create", "--name", "bad", "--model-data-url", f"s3://{bucket}/mme/", "--instance-type", INSTANCE]
    assert err_of(*base).startswith("error: no execution role: pass --role-arn arn:aws:iam::<account>:role/<name>")
    assert err_of(*base, "--role-arn", "sagemaker-role") == (
        "error: 'sagemaker-role' is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)\n")
    assert err_of(*base, "--role-arn", role_arn, "--region", "mars-north-1").startswith(
        "error: no SageMaker Triton image known for region 'mars-north-1'; pass --image-uri (known regions: ")
    assert err_of(*base, "--role-arn", role_arn, "--triton-version", "21.08").startswith(
        "error: SageMaker publishes no Triton image for version '21.08'")
    assert err_of("create", "--name", "bad", "--role-arn", role_arn, "--model-data-url",
                  "s3://ghost-bucket-xyz/mme/") == "error: S3 bucket 'ghost-bucket-xyz' (from --model-data-url) does not exist\n"
    assert err_of(*base, "--role-arn", role_arn) == (
        f"error: no .tar.gz model tarballs under s3://{bucket}/mme/; run `python -m deploy upload` first\n")
    assert cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(dist))[0] == 0
    ghost = f"arn:aws:iam::{ACCOUNT}:role/ghost"
    assert err_of(*base, "--role-arn", ghost) == (
        f"error: IAM role {ghost} does not exist; create it or pass another --role-arn\n")
    assert err_of("create", "--name", "bad", "--role-arn", role_arn, "--model-data-url", f"s3://{bucket}/mme") == (
        f"error: --model-data-url 's3://{bucket}/mme' must end with '/': MME treats it as a prefix\n")
    assert err_of(*base, "--role-arn", role_arn, "--name", "under_score").startswith(
        "error: invalid endpoint name 'under_score'")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert err_of(*base, "--role-arn", role_arn) == (
        "error: no AWS region: pass --region or set AWS_DEFAULT_REGION / AWS_REGION\n")
    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", role_arn)
    # role from the environment, region from the flag, custom image for a region not in the table
    rc, out, err = cli(*base, "--region", REGION, "--image-uri", "example.com/triton:baked", "--no-wait")
    assert (rc, err) == (0, "")
    assert "image: example.com/triton:baked" in out
    assert cli("delete", "--name", "bad", "--region", REGION)[0] == 0


def test_autoscale_errors(cli) -> None:
    rc, _, err = cli("autoscale", "--name", "nowhere")
    assert (rc, err) == (1, "error: endpoint 'nowhere' not found; run `python -m deploy create` first\n")
    rc, _, err = cli("autoscale", "--name", "nowhere", "--min", "0")
    assert (rc, err) == (1, "error: --min must be at least 1: a real-time endpoint variant cannot scale to zero\n")
    rc, _, err = cli("autoscale", "--name", "nowhere", "--min", "3", "--max", "2")
    assert (rc, err) == (1, "error: --max (2) must be >= --min (3)\n")


def test_invoke_sends_target_model_and_binary_body(moto_url: str) -> None:
    runtime = boto3.client("sagemaker-runtime", region_name=REGION, endpoint_url=moto_url)
    seen = {}

    def capture(request, **_):
        seen["headers"] = dict(request.headers)
        seen["body"] = request.body
        seen["url"] = request.url

    runtime.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", capture)
    body, content_type = build_request({"prompt": ["a fox"]}, binary=True)
    response = {"outputs": [{"name": "generated_image", "shape": [1], "datatype": "BYTES", "data": ["eA=="]}]}
    queue_canned_response(moto_url, json.dumps(response), "application/json")
    resp_body, resp_type = invoke(runtime, "any-endpoint", "sd_depth.tar.gz", body, content_type,
                                  inference_id="inf-42")
    assert seen["url"] == f"{moto_url}/endpoints/any-endpoint/invocations"
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in seen["headers"].items()}
    assert headers["x-amzn-sagemaker-target-model"] == "sd_depth.tar.gz"
    assert headers["x-amzn-sagemaker-inference-id"] == "inf-42"
    assert headers["content-type"] == content_type
    assert content_type.startswith("application/vnd.sagemaker-triton.binary+json;json-header-size=")
    assert seen["body"] == body
    assert json.loads(body[:header_size(content_type)])["inputs"][0]["name"] == "prompt"
    assert (json.loads(resp_body), resp_type) == (response, "application/json")


def test_invoke_reports_non_kserve_body(cli, moto_url: str) -> None:
    # Nothing queued: moto answers b"body", which no Triton would.
    rc, _, err = cli("invoke", "--name", "ep", "--target-model", "sd_depth.tar.gz", "--prompt", "unique prompt 7")
    assert rc == 1
    assert err.startswith("error: response is not a KServe v2 body")
    rc, _, err = cli("invoke", "--name", "ep", "--target-model", "sd_depth.tar.gz")
    assert (rc, err) == (1, "error: no inputs: give --prompt, --image, --input NAME=TEXT, ...\n")
    rc, _, err = cli("invoke", "--name", "ep", "--target-model", "m", "--image", "/nonexistent/x.png")
    assert (rc, err) == (1, "error: cannot read /nonexistent/x.png: No such file or directory\n")


def test_image_uri_table() -> None:
    assert triton_image_uri("us-east-1") == IMAGE
    assert triton_image_uri("eu-south-1", "24.05") == (
        "692866216735.dkr.ecr.eu-south-1.amazonaws.com/sagemaker-tritonserver:24.05-py3")
    assert triton_image_uri("cn-north-1") == (
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-tritonserver:26.05-py3")
    with pytest.raises(DeployError, match="no SageMaker Triton image known for region 'xx-east-9'"):
        triton_image_uri("xx-east-9")


class _FakeSageMaker:
    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses

    def describe_endpoint(self, EndpointName: str) -> dict:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"EndpointStatus": status, "FailureReason": "CUDA OOM while loading"}


def test_wait_in_service_polls_with_bounds() -> None:
    sleeps: list[float] = []
    desc = wait_in_service(_FakeSageMaker(["Creating", "Creating", "InService"]), "e",
                           poll_s=30, sleep=sleeps.append, log=lambda _: None)
    assert desc["EndpointStatus"] == "InService" and sleeps == [30, 30]
    with pytest.raises(DeployError, match="endpoint e is Failed: CUDA OOM while loading"):
        wait_in_service(_FakeSageMaker(["Creating", "Failed"]), "e", sleep=lambda _: None, log=lambda _: None)
    sleeps.clear()
    with pytest.raises(DeployError, match="endpoint e still Creating after 90 s"):
        wait_in_service(_FakeSageMaker(["Creating"]), "e", timeout_s=90, poll_s=30,
                        sleep=sleeps.append, log=lambda _: None)
    assert sleeps == [30, 30, 30]


def test_cli_subprocess_smoke(moto_url: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "delete", "--name", "never-created", "--endpoint-url", moto_url],
        capture_output=True, text=True, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["scaling_policy: absent", "scalable_target: absent", "alarms: absent", "dashboard: absent", "endpoint: absent",
                                        "endpoint_config: absent", "model: absent"]
    help_proc = subprocess.run([sys.executable, "-m", "deploy", "--help"], capture_output=True, text=True,
                               env=env, check=False)
    assert help_proc.returncode == 0
    for command in ("package", "check", "upload", "create", "autoscale", "invoke", "delete"):
        assert command in help_proc.stdout


def test_default_image_is_the_newest_release_and_unknown_versions_are_errors() -> None:
    newest = max(images.SAGEMAKER_VERSIONS, key=lambda v: tuple(int(x) for x in v.split(".")))
    assert images.DEFAULT_TRITON_VERSION == newest == "26.05"
    release = images.release(newest)
    assert (release.python, release.ubuntu, release.glibc, release.cuda) == ("3.12", "24.04", "2.39", "13.2.1")
    assert release.platform == "manylinux_2_39_x86_64"
    assert images.version_from_image_uri(IMAGE) == "26.05"
    assert images.version_from_image_uri("example.com/triton:custom") is None
    with pytest.raises(DeployError, match=r"unknown Triton container version '26.13'.*table checked 2026-11-27"):
        images.release("26.13")
    with pytest.raises(DeployError, match="SageMaker publishes no Triton image for version '24.10'"):
        triton_image_uri("us-east-1", "24.10")
