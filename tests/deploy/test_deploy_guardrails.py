"""Guarded endpoint updates: models and configs against moto, UpdateEndpoint through botocore's
Stubber (moto implements no update_endpoint; the Stubber validates each request against the
SageMaker service model, so a malformed DeploymentConfig fails here as it would at AWS)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import ANY, Stubber
from deploy import endpoint, guardrails
from deploy.__main__ import main
from deploy.errors import DeployError
from deploy_testlib import REGION

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:26.05-py3"
NEW_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd-serving:2"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gr-ep"


class MotoWithStubbedUpdate:
    """The moto client, except update_endpoint, which goes to a Stubber-checked client."""

    def __init__(self, moto_client, stubbed_client):
        self._moto, self._stubbed = moto_client, stubbed_client

    def __getattr__(self, name):
        return getattr(self._stubbed if name == "update_endpoint" else self._moto, name)


@pytest.fixture()
def stack(clients, bucket, role_arn):
    spec = endpoint.EndpointSpec(name="gr-ep", role_arn=role_arn, model_data_url=f"s3://{bucket}/mme/",
                                 image_uri=IMAGE, instance_type="ml.g4dn.xlarge", instance_count=2)
    endpoint.create_stack(clients["sagemaker"], spec, poll_s=0.01, log=lambda _: None)
    yield spec
    sm = clients["sagemaker"]
    endpoint.delete_stack(sm, "gr-ep", poll_s=0.01, log=lambda _: None)
    # Updates moto never ran leave their (unused) pairs behind; the session's moto is shared.
    for c in sm.list_endpoint_configs(NameContains="gr-ep")["EndpointConfigs"]:
        sm.delete_endpoint_config(EndpointConfigName=c["EndpointConfigName"])
    for m in sm.list_models(NameContains="gr-ep")["Models"]:
        sm.delete_model(ModelName=m["ModelName"])


@pytest.fixture()
def stubbed(moto_url):
    client = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_url)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_canary_update_with_alarm_rollback(stack, clients, stubbed):
    client, stub = stubbed
    spec = endpoint.EndpointSpec(**{**stack.__dict__, "image_uri": NEW_IMAGE, "instance_count": 3})
    rollout = guardrails.Rollout(strategy="canary", canary_percent=10, wait_s=300,
                                 alarms=["gr-ep-drift-critical", "gr-ep-5xx"])
    expected = {"EndpointName": "gr-ep", "EndpointConfigName": ANY, "DeploymentConfig": {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 300,
                                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}},
            "TerminationWaitInSeconds": 300},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "gr-ep-drift-critical"}, {"AlarmName": "gr-ep-5xx"}]}}}
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gr-ep"},
                      expected)
    sm = clients["sagemaker"]
    request = guardrails.update_endpoint(MotoWithStubbedUpdate(sm, client), spec, rollout, log=lambda _: None)
    # The new model and config exist in moto, with what the update asked for; the old pair is kept for rollback.
    config = sm.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"  # guardrails need the same variant name
    assert variant["InitialInstanceCount"] == 3
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == NEW_IMAGE and model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert sm.describe_endpoint_config(EndpointConfigName="gr-ep-config")["ProductionVariants"][0]["ModelName"] == "gr-ep-model"


def test_ab_variants_of_two_images(stack, clients, stubbed):
    client, stub = stubbed
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gr-ep"},
                      {"EndpointName": "gr-ep", "EndpointConfigName": ANY, "DeploymentConfig": {
                          "BlueGreenUpdatePolicy": {
                              "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                              "TerminationWaitInSeconds": 300}}})
    sm = clients["sagemaker"]
    request = guardrails.update_endpoint(MotoWithStubbedUpdate(sm, client), stack,
                                         guardrails.Rollout(strategy="all-at-once", wait_s=0),
                                         ab_image_uri=NEW_IMAGE, ab_weight=0.2, log=lambda _: None)
    variants = sm.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])["ProductionVariants"]
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in variants] == [("AllTraffic", 0.8), ("Candidate", 0.2)]
    images = [sm.describe_model(ModelName=v["ModelName"])["PrimaryContainer"]["Image"] for v in variants]
    assert images == [IMAGE, NEW_IMAGE]


def test_rolling_policy_shape_is_valid_for_the_service():
    config = guardrails.deployment_config(guardrails.Rollout(strategy="rolling", rolling_batch_percent=25, wait_s=120,
                                                             alarms=["a"]), variants=1)
    assert config["RollingUpdatePolicy"] == {"MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                                             "WaitIntervalInSeconds": 120}
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response("update_endpoint", {"EndpointArn": ARN},
                          {"EndpointName": "e", "EndpointConfigName": "c", "DeploymentConfig": config})
        client.update_endpoint(EndpointName="e", EndpointConfigName="c", DeploymentConfig=config)
        # The Stubber validates against the service model: a misspelt key is caught, as AWS would.
        stub.add_response("update_endpoint", {"EndpointArn": ARN})
        with pytest.raises(ParamValidationError, match="WaitIntervalSeconds"):
            client.update_endpoint(EndpointName="e", EndpointConfigName="c",
                                   DeploymentConfig={"RollingUpdatePolicy": {**config["RollingUpdatePolicy"],
                                                                             "WaitIntervalSeconds": 1}})


@pytest.mark.parametrize("rollout,variants,message", [
    (guardrails.Rollout(strategy="rolling"), 2, "rolling deployments exclude multi-variant endpoints"),
    (guardrails.Rollout(strategy="rolling", rolling_batch_percent=60), 1, "--rolling-batch-percent must be 5-50"),
    (guardrails.Rollout(strategy="canary", canary_percent=0), 1, "--canary-percent must be 1-50 (% of capacity), got 0"),
    (guardrails.Rollout(strategy="linear", linear_step_percent=5), 1, "--linear-step-percent must be 10-50"),
    (guardrails.Rollout(strategy="canary", wait_s=4000), 1, "--wait-s must be 0-3600 seconds, got 4000"),
    (guardrails.Rollout(strategy="none", alarms=["a"]), 1, "--rollback-alarm needs a guarded --deployment"),
])
def test_bad_rollouts_are_refused(rollout, variants, message):
    with pytest.raises(DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
        guardrails.deployment_config(rollout, variants=variants)


def test_update_of_a_missing_endpoint_and_delete_cleans_updated_resources(stack, clients, stubbed):
    client, stub = stubbed
    sm = clients["sagemaker"]
    missing = endpoint.EndpointSpec(**{**stack.__dict__, "name": "nope"})
    with pytest.raises(DeployError, match="endpoint nope does not exist; run `python -m deploy create` first"):
        guardrails.update_endpoint(sm, missing, guardrails.Rollout())
    # moto cannot run the update; point the endpoint at the new config as a finished update would.
    spec = endpoint.EndpointSpec(**{**stack.__dict__, "image_uri": NEW_IMAGE})
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "gr-ep", "EndpointConfigName": ANY})
    request = guardrails.update_endpoint(MotoWithStubbedUpdate(sm, client), spec, guardrails.Rollout(strategy="none"),
                                         log=lambda _: None)
    sm.delete_endpoint(EndpointName="gr-ep")
    sm.create_endpoint(EndpointName="gr-ep", EndpointConfigName=request["EndpointConfigName"])
    actions = endpoint.delete_stack(sm, "gr-ep", poll_s=0.01, log=lambda _: None)
    assert actions[f"endpoint_config {request['EndpointConfigName']}"] == "deleted"
    names = {m["ModelName"] for m in sm.list_models()["Models"]}
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert "gr-ep-model" not in names and not any(n.startswith("gr-ep-model-") for n in names)
    assert request["EndpointConfigName"] not in configs and "gr-ep-config" not in configs


def test_an_update_that_changes_nothing_is_refused(stack, clients):
    with pytest.raises(DeployError, match="already runs image, environment and instances as asked: nothing to update"):
        guardrails.update_endpoint(clients["sagemaker"], stack, guardrails.Rollout(), log=lambda _: None)
    assert not [m for m in clients["sagemaker"].list_models()["Models"] if m["ModelName"].startswith("gr-ep-model-")]


def test_cli_refuses_bad_flags_before_any_call(moto_url, role_arn, capsys):
    rc = main(["update-endpoint", "--name", "x", "--role-arn", role_arn, "--model-data-url", "s3://b/p/",
               "--deployment", "rolling", "--ab-image-uri", NEW_IMAGE, "--endpoint-url", moto_url])
    assert rc == 1 and "rolling deployments exclude multi-variant endpoints" in capsys.readouterr().err


def test_cli_update_endpoint_checks_weights_then_sends_the_guarded_update(stack, clients, stubbed, moto_url, bucket,
                                                                          repo, tmp_path, monkeypatch, capsys):
    from deploy.aws import AwsContext

    client, stub = stubbed
    aws = ["--endpoint-url", moto_url]
    assert main(["package", "--repo", str(repo), "--dist", str(tmp_path / "dist"), "--no-code-package"]) == 0
    assert main(["upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(tmp_path / "dist"), *aws]) == 0
    make_client = AwsContext.client
    # moto has no UpdateEndpoint: the CLI's SageMaker client sends that one call to the Stubber.
    monkeypatch.setattr(AwsContext, "client", lambda self, short, **kw: MotoWithStubbedUpdate(
        make_client(self, short, **kw), client) if short == "sagemaker" else make_client(self, short, **kw))
    args = ["update-endpoint", "--name", "gr-ep", "--role-arn", stack.role_arn, "--model-data-url",
            stack.model_data_url, "--image-uri", NEW_IMAGE, "--instance-type", "ml.g4dn.xlarge", "--instance-count", "2",
            "--deployment", "linear", "--linear-step-percent", "25", "--wait-s", "60", "--rollback-alarm", "gr-ep-5xx", *aws]
    monkeypatch.delenv("DEPLOY_ALLOW_TEST_WEIGHTS")
    capsys.readouterr()
    assert main(args) == 1  # the uploaded manifest says: tiny random weights
    assert "model sd_depth: its weights are tiny random weights" in capsys.readouterr().err
    monkeypatch.setenv("DEPLOY_ALLOW_TEST_WEIGHTS", "1")
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, {
        "EndpointName": "gr-ep", "EndpointConfigName": ANY, "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                "Type": "LINEAR", "WaitIntervalInSeconds": 60, "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25}},
                "TerminationWaitInSeconds": 300},
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "gr-ep-5xx"}]}}})
    assert main(args) == 0
    assert "update requested: gr-ep-config -> gr-ep-config-" in capsys.readouterr().out
