"""README's "Deploy to SageMaker" block against moto, checked for monitoring: after `create`
capture is on (store under the endpoint's own S3 prefix), the alarms and the dashboard are in
place; after `delete` none is left. Same substitutions as test_deploy_readme.py."""

from __future__ import annotations

import base64
import json
import shlex

import boto3
from deploy.__main__ import main
from deploy_testlib import REGION
from test_deploy_aws import queue_canned_response
from test_deploy_readme import AWS_COMMANDS, ROOT, _build_env_main, readme_commands
from tests.conftest import png

from deploy import alarms


def test_readme_deploy_block_leaves_capture_on_alarms_and_dashboard_then_nothing(repo, moto_url, tmp_path, monkeypatch, capsys):
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_url)
    trust = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    # The moto server is the session's and test_deploy_readme.py makes the same role and bucket:
    # make them if absent, and remove what this test made, in either order.
    made_role = made_bucket = False
    try:
        iam.create_role(RoleName="SageMakerRole", AssumeRolePolicyDocument=json.dumps(trust))
        made_role = True
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_url)
    if "my-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="my-bucket")
        made_bucket = True
    try:
        _run_block(repo, moto_url, tmp_path, monkeypatch, capsys)
    finally:
        if made_role:
            iam.delete_role(RoleName="SageMakerRole")
        if made_bucket:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="my-bucket"):
                for obj in page.get("Contents", []):
                    s3.delete_object(Bucket="my-bucket", Key=obj["Key"])
            s3.delete_bucket(Bucket="my-bucket")


def _run_block(repo, moto_url, tmp_path, monkeypatch, capsys):
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_url)
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(png(64))
    # moto answers an identical request with the response it gave first: queue the very response
    # test_deploy_readme.py queues (png(32, seed=5)), so either test may run first.
    queue_canned_response(moto_url, json.dumps({"model_name": "sd_depth", "outputs": [
        {"name": "generated_image", "shape": [1, 1], "datatype": "BYTES",
         "data": [base64.b64encode(png(32, seed=5)).decode()]}]}), "application/json")
    seen = {}
    for line in readme_commands():
        argv = shlex.split(line, comments=True)
        if argv == ["make", "env"]:
            rc = _build_env_main()(["--method", "pip", "--no-pip", "--package", str(ROOT / "serving"),
                                    "--out", "dist/python_env.tar.gz", "--work-dir", str(tmp_path / "work")])
        elif argv[:2] == ["make", "package"]:
            rc = main(["package", "--repo", str(repo), "--env-tarball", "dist/python_env.tar.gz", "--no-code-package"]) or main(["check"])
        else:
            args = ["ml.g4dn.xlarge" if a == "ml.g5.xlarge" else a for a in argv[3:]]
            if args[0] in AWS_COMMANDS:
                args += ["--endpoint-url", moto_url]
            if args[0] == "create":
                args += ["--poll-interval", "0.1"]
            if args[0] == "delete":  # the state README's block leaves before it cleans up
                name = args[args.index("--name") + 1]
                env = sm.describe_model(ModelName=f"{name}-model")["PrimaryContainer"]["Environment"]
                seen["name"], seen["store"] = name, env.get("CAPTURE_STORE")
                seen["alarms"] = sorted(a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"])
                seen["dashboards"] = [d["DashboardName"] for d in cw.list_dashboards(DashboardNamePrefix=name)["DashboardEntries"]]
            rc = main(args)
        out, err = capsys.readouterr()
        assert rc == 0, f"{line}\n{out}{err}"
    name = seen["name"]
    assert seen["store"].startswith("s3://") and seen["store"].endswith(f"/monitoring/{name}/store")
    assert seen["alarms"] == sorted(f"{name}-{s}" for s in alarms.ALARM_SUFFIXES)
    assert seen["dashboards"] == [f"{name}-monitoring"]
    assert cw.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"] == []
    assert cw.list_dashboards(DashboardNamePrefix=name)["DashboardEntries"] == []
