"""The local MME with its model data in (moto) S3: TargetModel resolved under s3://bucket/prefix/."""

from __future__ import annotations

import base64

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from deploy.payload import build_request, parse_response
from mme_testlib import http, image_size, runtime_client, start_endpoint
from tests.conftest import gen_args, png

BUCKET = "mme-models-test"


@pytest.fixture(scope="module")
def s3_endpoint(moto_url, mme_dist, tmp_path_factory):
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)
    s3.create_bucket(Bucket=BUCKET)
    for model in ("sd_upscale", "resnet_classifier"):
        s3.upload_file(str(mme_dist / f"{model}.tar.gz"), BUCKET, f"prefix/{model}.tar.gz")
    ep = start_endpoint(tmp_path_factory.mktemp("mme-s3-work"), f"s3://{BUCKET}/prefix/", s3_endpoint_url=moto_url)
    yield ep
    assert ep.stop() == 0


def test_invoke_models_fetched_from_s3(s3_endpoint):
    runtime = runtime_client(s3_endpoint.url)
    body, ctype = build_request({"prompt": ["a tree"], "image": [png(48)], "gen_args": [gen_args()]}, binary=True)
    r = runtime.invoke_endpoint(EndpointName="local", TargetModel="sd_upscale.tar.gz", ContentType=ctype, Body=body)
    out = parse_response(r["Body"].read(), r["ContentType"])
    assert image_size(out["generated_image"][0, 0]) == (192, 192)  # 4x

    body, ctype = build_request({"image": [base64.b64encode(png(64)).decode()]})
    r = runtime.invoke_endpoint(EndpointName="local", TargetModel="resnet_classifier.tar.gz",
                                ContentType=ctype, Body=body)
    probs = parse_response(r["Body"].read(), r["ContentType"])["probabilities"]
    assert probs.shape == (1, 10) and abs(float(np.sum(probs)) - 1.0) < 1e-5

    status, doc = http("GET", f"{s3_endpoint.url}/models")
    assert status == 200
    assert {m["modelUrl"] for m in doc["models"]} == {f"s3://{BUCKET}/prefix/sd_upscale.tar.gz",
                                                      f"s3://{BUCKET}/prefix/resnet_classifier.tar.gz"}
    assert list((s3_endpoint.work_dir / "downloads").iterdir()) == []  # downloads removed once extracted


def test_missing_s3_object_is_a_validation_error(s3_endpoint):
    runtime = runtime_client(s3_endpoint.url)
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="local", TargetModel="sd_depth.tar.gz",
                                ContentType="application/json", Body=b"{}")
    err = info.value.response
    assert err["Error"]["Code"] == "ValidationError" and err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"bucket: {BUCKET}, key: prefix/sd_depth.tar.gz" in err["Error"]["Message"]
    status, doc = http("POST", f"{s3_endpoint.url}/models", {"model_name": "x", "url": f"s3://{BUCKET}/nope.tar.gz"})
    assert status == 400 and "nope.tar.gz" in doc["error"]
