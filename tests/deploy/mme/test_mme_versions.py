"""`deploy update` end to end: new versions in (moto) S3, the alias switched, the local MME
serving the new version under its new name while the old one still answers until pruned."""

from __future__ import annotations

import base64
import json
import shutil

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from safetensors.torch import load_file, save_file

from deploy import versions
from deploy.__main__ import main
from deploy.payload import build_request, parse_response
from deploy.pbtxt import with_instance_count
from mme_testlib import http, runtime_client, start_endpoint
from serving.runtime.checkpoints import provenance
from serving.launch.client import main as client_main
from tests.conftest import TEST_INSTANCES, png

BUCKET = "mme-versions-test"
MODEL = "resnet_classifier"


def _probs(runtime, target: str) -> np.ndarray:
    body, ctype = build_request({"image": [base64.b64encode(png(64, seed=3)).decode()]})
    r = runtime.invoke_endpoint(EndpointName="local", TargetModel=target, ContentType=ctype, Body=body)
    return parse_response(r["Body"].read(), r["ContentType"])["probabilities"]


def _update(moto_url: str, repo, dist) -> str:
    assert main(["update", "--bucket", BUCKET, "--prefix", "mme", "--repo", str(repo), "--dist", str(dist),
                 "--no-code-package", "--endpoint-url", moto_url]) == 0
    return json.loads((dist / "manifest.json").read_text())["models"][MODEL]["tarball"]


@pytest.fixture()
def repo(model_repo, tmp_path):
    """A repository holding a copy of the tiny classifier (its weights get changed below)."""
    shutil.copytree(model_repo / MODEL, tmp_path / "repo" / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "repo" / MODEL / "config.pbtxt"  # one instance: these tests are about versions
    config.write_text(with_instance_count(config.read_text(), TEST_INSTANCES))
    return tmp_path / "repo"


def test_update_serves_new_version_old_answers_until_pruned(repo, moto_url, tmp_path, capsys):
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)
    s3.create_bucket(Bucket=BUCKET)
    v1 = _update(moto_url, repo, tmp_path / "d1")
    ep = start_endpoint(tmp_path / "work", f"s3://{BUCKET}/mme/", s3_endpoint_url=moto_url)
    try:
        runtime = runtime_client(ep.url)
        assert versions.resolve_url(s3, f"s3://{BUCKET}/mme/", MODEL) == v1
        p1 = _probs(runtime, v1)

        # Retrain (here: scale the classifier head) and update: a new TargetModel next to the old one.
        ckpt = repo / MODEL / "1" / "checkpoint"
        tensors = load_file(ckpt / "model.safetensors")
        head = next(k for k in tensors if k.startswith("classifier") and k.endswith("weight"))
        tensors[head] = tensors[head] * 5.0
        save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
        provenance.record(ckpt, "tiny-random", builder="tests/deploy/mme/test_mme_versions.py")
        v2 = _update(moto_url, repo, tmp_path / "d2")
        assert v2 != v1 and versions.resolve_url(s3, f"s3://{BUCKET}/mme/", MODEL) == v2

        # `deploy invoke` with the model's name reaches the new version through the alias.
        (tmp_path / "img.png").write_bytes(png(64, seed=3))
        capsys.readouterr()
        assert main(["invoke", "--name", "local", "--target-model", MODEL, "--model-data-url", f"s3://{BUCKET}/mme/",
                     "--image", str(tmp_path / "img.png"), "--region", "us-east-1",
                     "--runtime-endpoint-url", ep.url, "--s3-endpoint-url", moto_url]) == 0
        assert json.loads(capsys.readouterr().out)["target_model"] == v2
        p2 = _probs(runtime, v2)
        assert not np.allclose(p1, p2, atol=1e-4)  # the new weights answer
        # serving.launch.client, straight to the endpoint's tritonserver, resolves the alias to the versioned name.
        assert client_main(["resnet_classifier", "--image", str(tmp_path / "img.png"), "--url", f"{ep.triton.host}:{ep.triton.port}",
                            "--model-data-url", f"s3://{BUCKET}/mme/", "--s3-endpoint-url", moto_url]) == 0
        top = np.argsort(p2[0])[::-1][:3]
        assert ", ".join(f"{i}:{p2[0][i]:.3f}" for i in top) in capsys.readouterr().out
        np.testing.assert_allclose(_probs(runtime, v1), p1, rtol=1e-5, atol=1e-6)  # the old one still does
        status, doc = http("GET", f"{ep.url}/models")
        assert status == 200 and {m["tritonName"] for m in doc["models"]} == {v1[:-7], v2[:-7]}

        assert main(["prune", "--bucket", BUCKET, "--prefix", "mme", "--endpoint-url", moto_url]) == 0
        # An instance keeps a loaded model until it unloads it; once unloaded, the pruned one is gone.
        status, _ = http("DELETE", f"{ep.url}/models/{v1}")
        assert status == 200
        with pytest.raises(ClientError) as info:
            _probs(runtime, v1)
        assert info.value.response["Error"]["Code"] == "ValidationError"
        np.testing.assert_allclose(_probs(runtime, v2), p2, rtol=1e-5, atol=1e-6)
    finally:
        assert ep.stop() == 0
