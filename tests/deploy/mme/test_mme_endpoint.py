"""The local SageMaker MME end to end: boto3 invoke_endpoint -> endpoint -> real tritonserver (explicit mode).

One endpoint (and one tritonserver) for the whole module, serving the five tiny models from a
local model data directory. Tests that need a particular set of loaded models arrange it
themselves through the container API, so they do not depend on each other's order.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from deploy.payload import build_request, parse_response
from mme_testlib import (evil_tarball, extracted_size, http, image_size, runtime_client,
                         start_endpoint)
from tests.conftest import gen_args, mask_png, png

B64 = lambda data: base64.b64encode(data).decode()  # noqa: E731


@pytest.fixture(scope="module")
def endpoint(mme_dist, tmp_path_factory):
    ep = start_endpoint(tmp_path_factory.mktemp("mme-work"), str(mme_dist))
    yield ep
    assert ep.stop() == 0


@pytest.fixture(scope="module")
def runtime(endpoint):
    return runtime_client(endpoint.url)


def invoke(runtime, target: str, body: bytes, content_type: str, **kw):
    r = runtime.invoke_endpoint(EndpointName="local", TargetModel=target, ContentType=content_type, Body=body, **kw)
    return parse_response(r["Body"].read(), r["ContentType"]), r


def unload_everything(endpoint) -> None:
    status, doc = http("GET", f"{endpoint.url}/models")
    assert status == 200
    for m in doc["models"]:
        assert http("DELETE", f"{endpoint.url}/models/{m['modelName']}")[0] == 200


def loads(endpoint, target: str) -> int:
    return http("GET", f"{endpoint.url}/mme/stats")[1]["loads"].get(target, 0)


def test_ping_and_container_api_on_an_empty_endpoint(endpoint):
    unload_everything(endpoint)
    assert http("GET", f"{endpoint.url}/ping") == (200, {"status": "Healthy"})
    assert http("GET", f"{endpoint.url}/models") == (200, {"models": []})
    assert http("GET", f"{endpoint.url}/models/sd_depth.tar.gz")[0] == 404
    assert http("DELETE", f"{endpoint.url}/models/sd_depth.tar.gz")[0] == 404
    status, doc = http("POST", f"{endpoint.url}/models/sd_depth.tar.gz/invoke", body=b"{}",
                       headers={"Content-Type": "application/json"})
    assert status == 404 and "not loaded" in doc["error"]
    assert http("POST", f"{endpoint.url}/models", body=b"not json")[0] == 400
    assert http("POST", f"{endpoint.url}/models", {"model_name": "x"})[0] == 400


# Binary+json bodies carry raw PNG bytes; JSON bodies carry base64 text and ask for the image
# output in binary, which Triton answers as binary+json: both translations get exercised.
def _sd_json(inputs: dict[str, str]) -> tuple[bytes, str]:
    doc = {"inputs": [{"name": k, "shape": [1, 1], "datatype": "BYTES", "data": [v]} for k, v in inputs.items()],
           "outputs": [{"name": "generated_image", "parameters": {"binary_data": True}}]}
    return json.dumps(doc).encode(), "application/json"


CASES = {
    "sd_img2img": (lambda: build_request({"prompt": ["a red house"], "image": [png(64)],
                                          "gen_args": [gen_args()]}, binary=True), (64, 64)),
    "sd_depth": (lambda: _sd_json({"prompt": "a street", "image": B64(png(64, seed=1)),
                                   "gen_args": gen_args().decode()}), (64, 64)),
    "sd_inpaint": (lambda: build_request({"prompt": ["a dog"], "image": [png(64)], "mask_image": [mask_png(64)],
                                          "gen_args": [gen_args()]}, binary=True), (64, 64)),
    "sd_upscale": (lambda: build_request({"prompt": ["a tree"], "image": [png(48)], "gen_args": [gen_args()]},
                                         binary=True), (192, 192)),  # 4x
}


@pytest.mark.parametrize("model", sorted(CASES))
def test_invoke_endpoint_runs_each_sd_model(endpoint, runtime, model):
    make_body, size = CASES[model]
    body, content_type = make_body()
    out, raw = invoke(runtime, f"{model}.tar.gz", body, content_type,
                      InferenceId=f"test-{model}")
    assert raw["ContentType"].startswith("application/vnd.sagemaker-triton.binary+json;json-header-size=")
    assert raw["InvokedProductionVariant"] == "AllTraffic"
    assert out["generated_image"].shape == (1, 1)
    value = out["generated_image"][0, 0]
    if model == "sd_depth":  # binary output asked for, but no image_encoding=raw: base64 text
        value = base64.b64decode(value, validate=True)
    assert image_size(value) == size
    assert endpoint.triton.state(model) == "READY"


@pytest.mark.parametrize("model", sorted(CASES))
def test_plain_json_invoke_gets_json_with_a_base64_image(endpoint, runtime, model):
    # The way most SageMaker users call: ContentType application/json, no binary flags at all.
    inputs = {"prompt": "a plain json client", "image": B64(png(48 if model == "sd_upscale" else 64)),
              "gen_args": gen_args().decode()}
    if model == "sd_inpaint":
        inputs["mask_image"] = B64(mask_png(64))
    doc = {"inputs": [{"name": k, "shape": [1, 1], "datatype": "BYTES", "data": [v]} for k, v in inputs.items()]}
    r = runtime.invoke_endpoint(EndpointName="local", TargetModel=f"{model}.tar.gz",
                                ContentType="application/json", Body=json.dumps(doc))
    assert r["ContentType"] == "application/json"
    reply = json.loads(r["Body"].read())
    out = {o["name"]: o for o in reply["outputs"]}["generated_image"]
    assert image_size(base64.b64decode(out["data"][0], validate=True)) == CASES[model][1]


def test_invoke_endpoint_runs_the_classifier_with_json(endpoint, runtime):
    body, content_type = build_request({"image": [B64(png(64, seed=3))]})
    out, raw = invoke(runtime, "resnet_classifier.tar.gz", body, content_type)
    assert raw["ContentType"] == "application/json"
    probs = out["probabilities"]
    assert probs.shape == (1, 10) and probs.dtype == np.float32
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    assert out["label"][0, 0] == f"class_{int(np.argmax(probs))}"


def test_models_contract_after_invocations(endpoint, mme_dist):
    if endpoint.cache.get("resnet_classifier.tar.gz") is None:
        http("POST", f"{endpoint.url}/models", {"model_name": "resnet_classifier.tar.gz",
                                                "url": str(mme_dist / "resnet_classifier.tar.gz")})
    status, doc = http("GET", f"{endpoint.url}/models")
    assert status == 200 and {"modelName": "resnet_classifier.tar.gz", "tritonName": "resnet_classifier",
                              "modelUrl": str(mme_dist / "resnet_classifier.tar.gz")} in doc["models"]
    assert http("GET", f"{endpoint.url}/models/resnet_classifier.tar.gz")[0] == 200
    # Same name again: 409. Another name for the same Triton model (top folder): 409 too.
    assert http("POST", f"{endpoint.url}/models", {"model_name": "resnet_classifier.tar.gz",
                                                   "url": str(mme_dist / "resnet_classifier.tar.gz")})[0] == 409
    status, doc = http("POST", f"{endpoint.url}/models", {"model_name": "classifier-b",
                                                          "url": str(mme_dist / "resnet_classifier.tar.gz")})
    assert status == 409 and "resnet_classifier" in doc["error"]
    # Missing data: 400 (the contract's catch-all), and nothing registered.
    assert http("POST", f"{endpoint.url}/models", {"model_name": "ghost", "url": str(mme_dist / "nope.tar.gz")})[0] == 400
    assert http("GET", f"{endpoint.url}/models/ghost")[0] == 404
    # /models/<n>/invoke passes Triton's answer through, status included.
    body, ctype = build_request({"image": [B64(png(32))]})
    status, doc = http("POST", f"{endpoint.url}/models/resnet_classifier.tar.gz/invoke", body=body,
                       headers={"Content-Type": ctype})
    assert status == 200 and {"probabilities", "label"} <= {o["name"] for o in doc["outputs"]}
    status, doc = http("POST", f"{endpoint.url}/models/resnet_classifier.tar.gz/invoke", body=b'{"inputs": []}',
                       headers={"Content-Type": "application/json"})
    assert status == 400 and "image" in doc["error"]


def test_register_under_a_new_name_invoke_and_delete(endpoint, mme_dist):
    if endpoint.cache.get("resnet_classifier.tar.gz") is not None:
        assert http("DELETE", f"{endpoint.url}/models/resnet_classifier.tar.gz")[0] == 200
    url = str(mme_dist / "resnet_classifier.tar.gz")
    assert http("POST", f"{endpoint.url}/models", {"model_name": "classifier-b", "url": url}) == \
        (200, {"modelName": "classifier-b", "modelUrl": url})
    body, ctype = build_request({"image": [png(32)]}, binary=True)
    status, raw = http("POST", f"{endpoint.url}/models/classifier-b/invoke", body=body, headers={"Content-Type": ctype})
    assert status == 200 and isinstance(raw, bytes)  # binary+json is not plain JSON
    assert http("DELETE", f"{endpoint.url}/models/classifier-b")[0] == 200
    assert http("DELETE", f"{endpoint.url}/models/classifier-b")[0] == 404
    assert endpoint.triton.state("resnet_classifier") in (None, "UNAVAILABLE")


def test_model_errors_come_back_as_botocore_model_error(endpoint, runtime):
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="local", TargetModel="resnet_classifier.tar.gz",
                                ContentType="application/json", Body=b'{"inputs": []}')
    err = info.value.response
    assert err["Error"]["Code"] == "ModelError"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 400 and "image" in err["OriginalMessage"]


@pytest.mark.parametrize("target, needle", [
    ("nope.tar.gz", "nope.tar.gz does not exist"),
    ("../resnet_classifier.tar.gz", "'..'"),
])
def test_unknown_or_escaping_target_model_is_a_validation_error(runtime, target, needle):
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="local", TargetModel=target, ContentType="application/json", Body=b"{}")
    err = info.value.response
    assert err["Error"]["Code"] == "ValidationError" and err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert needle in err["Error"]["Message"]


def test_concurrent_first_invocations_load_the_model_once(endpoint, runtime):
    target = "resnet_classifier.tar.gz"
    if endpoint.cache.get(target) is not None:
        assert http("DELETE", f"{endpoint.url}/models/{target}")[0] == 200
    before = loads(endpoint, target)
    barrier = threading.Barrier(8)
    results: list = [None] * 8

    def call(i: int) -> None:
        body, ctype = build_request({"image": [png(32, seed=i)]}, binary=True)
        barrier.wait(timeout=60)
        try:
            results[i] = invoke(runtime, target, body, ctype)[0]["probabilities"]
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 10) for r in results), results
    assert loads(endpoint, target) == before + 1
    assert endpoint.triton.state("resnet_classifier") == "READY"


def test_lru_eviction_under_a_memory_budget(endpoint, runtime, mme_dist):
    unload_everything(endpoint)
    a, b, c = "resnet_classifier", "sd_img2img", "sd_inpaint"
    sizes = {m: extracted_size(mme_dist / f"{m}.tar.gz") for m in (a, b, c)}
    pair = max(sizes[a] + sizes[b], sizes[a] + sizes[c], sizes[b] + sizes[c])
    endpoint.cache.budget_bytes = (pair + sum(sizes.values())) // 2  # room for any two, not three
    evictions = dict(http("GET", f"{endpoint.url}/mme/stats")[1]["evictions"])
    bodies = {a: build_request({"image": [png(32)]}, binary=True),
              b: build_request({"prompt": ["x"], "image": [png(64)], "gen_args": [gen_args()]}, binary=True),
              c: build_request({"prompt": ["x"], "image": [png(64)], "mask_image": [mask_png(64)],
                                "gen_args": [gen_args()]}, binary=True)}
    try:
        invoke(runtime, f"{a}.tar.gz", *bodies[a])
        invoke(runtime, f"{b}.tar.gz", *bodies[b])
        invoke(runtime, f"{c}.tar.gz", *bodies[c])  # over budget: a (least recently used) goes
        loaded = {m["modelName"] for m in http("GET", f"{endpoint.url}/models")[1]["models"]}
        assert loaded == {f"{b}.tar.gz", f"{c}.tar.gz"}
        assert endpoint.triton.state(a) in (None, "UNAVAILABLE")
        assert endpoint.triton.state(b) == endpoint.triton.state(c) == "READY"
        stats = http("GET", f"{endpoint.url}/mme/stats")[1]
        assert stats["evictions"].get(f"{a}.tar.gz", 0) == evictions.get(f"{a}.tar.gz", 0) + 1
        assert stats["usedBytes"] <= endpoint.cache.budget_bytes
        # Invoking the evicted model loads it again, and now b is the least recently used.
        before = loads(endpoint, f"{a}.tar.gz")
        out, _ = invoke(runtime, f"{a}.tar.gz", *bodies[a])
        assert abs(float(out["probabilities"].sum()) - 1.0) < 1e-5
        assert loads(endpoint, f"{a}.tar.gz") == before + 1
        loaded = {m["modelName"] for m in http("GET", f"{endpoint.url}/models")[1]["models"]}
        assert loaded == {f"{a}.tar.gz", f"{c}.tar.gz"}
        assert endpoint.triton.state(b) in (None, "UNAVAILABLE")
    finally:
        endpoint.cache.budget_bytes = None


def test_a_model_larger_than_the_budget_is_refused_with_507(endpoint, mme_dist):
    unload_everything(endpoint)  # models loaded by earlier tests would otherwise be evicted first
    endpoint.cache.budget_bytes = 1024
    try:
        status, doc = http("POST", f"{endpoint.url}/models", {"model_name": "too-big",
                                                              "url": str(mme_dist / "sd_depth.tar.gz")})
    finally:
        endpoint.cache.budget_bytes = None
    assert status == 507 and "memory budget" in doc["error"]
    assert http("GET", f"{endpoint.url}/models/too-big")[0] == 404


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_malicious_tarball_is_refused_naming_the_member(endpoint, runtime, mme_dist, tmp_path, kind):
    outside = tmp_path / f"pwned-{uuid.uuid4().hex}"
    # The dotdot member climbs from the staging dir; aim it at the work dir's parent level too.
    target = f"evil-{kind}-{uuid.uuid4().hex[:8]}.tar.gz"
    member = evil_tarball(mme_dist / target, kind, outside)
    before = set(p.name for p in endpoint.repository.iterdir())
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="local", TargetModel=target, ContentType="application/json", Body=b"{}")
    err = info.value.response
    assert err["Error"]["Code"] == "ValidationError" and err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert repr(member) in err["Error"]["Message"] and "refused" in err["Error"]["Message"]
    assert not outside.exists()
    for root in (endpoint.work_dir, endpoint.work_dir.parent, Path(endpoint.work_dir).parent.parent):
        assert not (root / outside.name).exists()
    assert set(p.name for p in endpoint.repository.iterdir()) == before
    assert list((endpoint.work_dir / "staging").iterdir()) == []
    assert endpoint.cache.get(target) is None
    # The container API refuses it the same way.
    status, doc = http("POST", f"{endpoint.url}/models", {"model_name": "evil", "url": str(mme_dist / target)})
    assert status == 400 and repr(member) in doc["error"]


def test_stub_rss_is_found_for_a_loaded_model(endpoint, runtime):
    body, ctype = build_request({"image": [png(32)]}, binary=True)
    invoke(runtime, "resnet_classifier.tar.gz", body, ctype)
    rss = endpoint.triton.stub_rss("resnet_classifier")
    assert rss is not None and rss > 20 * 2**20  # a Python stub with torch imported
    assert endpoint.triton.stub_rss("no_such_model") is None


def _doc_block(lang: str) -> str:
    """The curl (bash) or boto3 (python) example of docs/deploy.md's "JSON clients get JSON"."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "deploy.md").read_text()
    section = text[text.index("### Responses: JSON clients get JSON"):]
    return section[section.index(f"```{lang}\n") + len(lang) + 4:].split("```", 1)[0]


@pytest.mark.parametrize("lang", ["bash", "python"])
def test_documented_curl_and_boto3_examples_run_as_written(endpoint, tmp_path, lang):
    code = _doc_block(lang).replace("http://127.0.0.1:8080", endpoint.url)  # the test endpoint's free port
    assert code.count(endpoint.url) == 1
    (tmp_path / "photo.png").write_bytes(png(64, seed=9))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="any", AWS_SECRET_ACCESS_KEY="any")  # the local endpoint checks no signature
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "out.png").size == (64, 64)


def test_post_models_loads_only_from_the_model_data_url(endpoint, mme_dist, tmp_path):
    """A tarball brings a model.py that runs in tritonserver: the container API must not load
    from wherever its caller points (docs/security.md)."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.tar.gz").write_bytes((mme_dist / "resnet_classifier.tar.gz").read_bytes())
    link = mme_dist / f"link-{uuid.uuid4().hex[:6]}.tar.gz"
    link.symlink_to(outside / "x.tar.gz")
    try:
        for url in (str(outside / "x.tar.gz"), f"file://{outside}/x.tar.gz",
                    str(mme_dist / os.path.relpath(outside / "x.tar.gz", mme_dist)), str(link), "s3://bucket/x.tar.gz"):
            status, doc = http("POST", f"{endpoint.url}/models", {"model_name": "outsider", "url": url})
            assert status == 400 and f"url {url!r} is outside the roots this endpoint loads models from" in doc["error"]
            assert str(mme_dist) in doc["error"]
            assert http("GET", f"{endpoint.url}/models/outsider")[0] == 404
    finally:
        link.unlink()


def test_the_endpoints_tritonserver_refuses_callers_without_its_key(endpoint, runtime, tmp_path):
    from bench.rehearse import control_plane_problems

    body, content_type = build_request({"image": [B64(png(32, seed=9))]})
    invoke(runtime, "resnet_classifier.tar.gz", body, content_type)  # loaded (if it was not)
    marker = tmp_path / "ran"
    assert control_plane_problems(endpoint.process.http_url, "resnet_classifier", marker) == []
    assert not marker.exists()
    # The endpoint itself holds the key: its own unload goes through.
    assert http("DELETE", f"{endpoint.url}/models/resnet_classifier.tar.gz")[0] == 200
    assert endpoint.triton.state("resnet_classifier") in (None, "UNAVAILABLE")


@pytest.mark.parametrize("url, root, inside", [
    ("s3://b/p/m.tar.gz", "s3://b/p", True), ("s3://b/p/m.tar.gz", "s3://b/p/", True),
    ("s3://b/px/m.tar.gz", "s3://b/p", False), ("s3://b/p/../q/m.tar.gz", "s3://b/p", False),
    ("/d/m.tar.gz", "s3://b/p", False), ("s3://b/p/m", "/d", False), ("/d/m.tar.gz", "/d", True),
    ("/dx/m.tar.gz", "/d", False), ("/d/../e/m.tar.gz", "/d", False), ("file:///d/m.tar.gz", "/d", True)])
def test_load_url_roots(url, root, inside):
    from deploy.mme.source import _within

    assert _within(url, root) is inside
