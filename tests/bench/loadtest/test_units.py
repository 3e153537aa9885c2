"""The load tester's parts without a server: payloads, schedules, error kinds, reports, SageMaker bodies."""

from __future__ import annotations

import io
import json
import threading
from functools import partial

import numpy as np
import pytest
from PIL import Image

from bench.loadtest.payloads import PayloadFactory, sample_images
from bench.loadtest.report import write_report
from bench.loadtest.runner import Recorder, arrival_offsets, run_concurrency_step, run_rate_step
from bench.loadtest.stats import flatten_model_stats, latency_summary, server_delta
from bench.loadtest.transports import RequestFailed, SageMakerTransport, classify_error, sagemaker_request
from tests.conftest import wait_for as _wait_for

wait_for = partial(_wait_for, timeout=20.0)




# -- payloads -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale", "resnet_classifier"])
def test_payloads_are_real_images_and_deterministic(model):
    f = PayloadFactory(model, inference_steps=3, seed=5)
    a, b = f(7), PayloadFactory(model, inference_steps=3, seed=5)(7)
    assert a == b and a.bad is None
    img = Image.open(io.BytesIO(a.inputs["image"]))
    assert img.size == ((32, 32) if model == "sd_upscale" else (256, 256) if model == "resnet_classifier" else (64, 64))
    if model == "resnet_classifier":
        assert set(a.inputs) == {"image"}
    else:
        assert a.inputs["prompt"] and json.loads(a.inputs["gen_args"]) == {"num_inference_steps": 3, "seed": 5 * 1_000_003 + 7}
    if model == "sd_inpaint":
        assert Image.open(io.BytesIO(a.inputs["mask_image"])).size == img.size
    assert len({f(i).inputs["image"] for i in range(12)}) > 6  # several different photos and digits


def test_sample_images_include_photos_and_digits():
    imgs = sample_images(64)
    assert any(b.startswith(b"\xff\xd8\xff") for b in imgs) and any(b.startswith(b"\x89PNG") for b in imgs)
    pixels = np.asarray(Image.open(io.BytesIO(imgs[0])).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10  # a photograph, not a flat fill


def test_bad_fraction_is_exact_and_cycles_kinds():
    f = PayloadFactory("sd_depth", bad_fraction=0.25)
    bad = [f(i) for i in range(40) if f(i).bad]
    assert len(bad) == 10
    assert [p.expected_error for p in bad[:4]] == ["invalid_arg:image", "invalid_arg:gen_args"] * 2
    assert not bad[0].inputs["image"].startswith(b"\xff\xd8")
    assert json.loads(bad[1].inputs["gen_args"])["num_inference_steps"] == 0
    only_images = PayloadFactory("resnet_classifier", bad_fraction=0.5)
    assert {only_images(i).expected_error for i in range(10)} == {None, "invalid_arg:image"}
    assert sum(1 for i in range(10) if only_images(i).bad) == 5


def test_text2img_payload_has_no_image_and_a_size():
    p = PayloadFactory("sd_img2img", text2img=True, image_size=64)(0)
    assert "image" not in p.inputs and json.loads(p.inputs["gen_args"])["height"] == 64
    with pytest.raises(ValueError):
        PayloadFactory("sd_depth", text2img=True)


# -- error kinds --------------------------------------------------------------------------
@pytest.mark.parametrize("status,message,kind", [
    ("400", "[request id: <id_unknown>] input 'image': not a PNG/JPEG/WebP image", "invalid_arg:image"),
    ("StatusCode.INVALID_ARGUMENT", "gen_args.num_inference_steps: 0 is below the minimum 1", "invalid_arg:gen_args"),
    ("400", "gen_args: not valid JSON (Expecting value at position 0)", "invalid_arg:gen_args"),
    ("400", "input 'mask_image': size 32x32 differs from input 'image' size 64x64", "invalid_arg:mask_image"),
    ("400", "missing required input(s) ['prompt']", "invalid_arg:missing_input"),
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", "connection"),
    (None, "ConnectionRefusedError: [Errno 111] Connection refused", "connection"),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", "timeout"),
    (None, "timed out", "timeout"),
    ("503", "out of memory while running the pipeline", "unavailable"),
    ("500", "pipeline failed (RuntimeError: boom)", "internal"),
    ("400", "Request for unknown model: 'nope' is not found", "invalid_arg"),
    ("500", "Stub process 'resnet_classifier_0_0' is not healthy.", "unavailable"),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'sd_depth' has no available versions", "unavailable"),
    ("418", "teapot", "error:418"),
])
def test_classify_error(status, message, kind):
    assert classify_error(status, message) == kind


# -- schedules ----------------------------------------------------------------------------
def test_constant_schedule():
    assert arrival_offsets(4.0, 2.0, None) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert len(arrival_offsets(4.0, 2.0, 3)) == 3
    with pytest.raises(ValueError):
        arrival_offsets(0, 1.0, None)


def test_poisson_schedule_is_seeded_and_bounded():
    a = arrival_offsets(50.0, 20.0, None, "poisson", seed=3)
    assert a == arrival_offsets(50.0, 20.0, None, "poisson", seed=3)
    assert a != arrival_offsets(50.0, 20.0, None, "poisson", seed=4)
    assert a[0] == 0.0 and all(x < 20.0 for x in a) and all(y > x for x, y in zip(a, a[1:]))
    assert 850 < len(a) < 1150  # about rate x duration
    gaps = np.diff(a)
    assert 0.8 < gaps.std() / gaps.mean() < 1.2  # exponential gaps: coefficient of variation ~1


# -- runners with a fake transport --------------------------------------------------------
class GatedTransport:
    """Holds every request until `release` is set; fails the ones marked bad."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = []
        self.lock = threading.Lock()

    def send(self, payload):
        with self.lock:
            self.calls.append(payload.index)
        assert self.release.wait(30)
        if payload.bad:
            raise RequestFailed(payload.expected_error, "refused")


def test_open_loop_sends_on_schedule_while_nothing_has_been_answered():
    t = GatedTransport()
    rec = Recorder()
    f = PayloadFactory("resnet_classifier", bad_fraction=0.2)
    out = {}
    th = threading.Thread(target=lambda: out.update(step=run_rate_step(
        t, f, 100.0, duration_s=0.1, max_workers=16, recorder=rec)))
    th.start()
    # All ten scheduled requests go out although the "server" has answered none of them.
    wait_for(lambda: rec.in_flight == 10, what="ten requests in flight")
    assert rec.ok == rec.errors == 0
    t.release.set()
    th.join(30)
    step = out["step"]
    assert step["scheduled"] == step["sent"] == step["completed"] == 10 and step["not_sent"] == 0
    assert step["max_in_flight"] == 10
    assert step["ok"] + step["errors"] == 10
    assert step["errors_by_kind"] == step["injected_bad"] == {"invalid_arg:image": 2}
    recs = step["_records"]
    assert [r["scheduled_ms"] for r in recs] == pytest.approx([k * 10.0 for k in range(10)])
    # Latency counts from the scheduled time, so it is never shorter than the service time.
    assert all(r["latency_ms"] >= r["service_ms"] for r in recs)
    assert step["max_send_lag_ms"] is not None and step["service_latency_ms"]["p50"] is not None


def test_closed_loop_keeps_concurrency_and_count():
    class Quick:
        def __init__(self):
            self.lock, self.active, self.peak = threading.Lock(), 0, 0

        def send(self, payload):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            with self.lock:
                self.active -= 1

    q = Quick()
    step = run_concurrency_step(q, PayloadFactory("resnet_classifier"), 3, duration_s=60, max_requests=25)
    assert step["sent"] == step["ok"] == step["completed"] == 25 and step["errors"] == 0
    assert step["max_in_flight"] <= 3 and q.peak <= 3
    assert sorted(r["index"] for r in step["_records"]) == list(range(25))
    assert not step["interrupted"] and step["latency_ms"]["p99"] is not None


def test_stop_ends_a_step_with_balanced_counts():
    stop = threading.Event()

    class Stopper:
        n = 0

        def send(self, payload):
            Stopper.n += 1
            if Stopper.n == 7:
                stop.set()
            if Stopper.n % 3 == 0:
                raise RuntimeError("client bug")

    step = run_concurrency_step(Stopper(), PayloadFactory("resnet_classifier"), 1, duration_s=60,
                                max_requests=1000, stop=stop)
    assert step["interrupted"] and step["sent"] == 7 == step["ok"] + step["errors"]
    assert step["errors_by_kind"] == {"client:RuntimeError": 2}


def test_open_loop_stop_drops_unsent_requests():
    t = GatedTransport()
    stop = threading.Event()
    rec = Recorder()
    out = {}
    th = threading.Thread(target=lambda: out.update(step=run_rate_step(
        t, PayloadFactory("resnet_classifier"), 200.0, duration_s=100.0, max_workers=4, stop=stop, recorder=rec)))
    th.start()
    wait_for(lambda: rec.in_flight == 4, what="workers busy")
    stop.set()
    t.release.set()
    th.join(30)
    step = out["step"]
    assert step["interrupted"] and step["scheduled"] == 20000
    assert step["sent"] == step["ok"] == step["completed"] and step["sent"] >= 4
    assert step["not_sent"] == step["scheduled"] - step["sent"]


# -- stats and reports --------------------------------------------------------------------
def test_server_delta_from_http_and_grpc_shapes():
    http_doc = {"model_stats": [{"name": "m", "inference_count": 10, "execution_count": 4, "inference_stats": {
        "success": {"count": 10, "ns": 50_000_000}, "fail": {"count": 0, "ns": 0},
        "queue": {"count": 10, "ns": 20_000_000}, "compute_input": {"count": 10, "ns": 1_000_000},
        "compute_infer": {"count": 10, "ns": 25_000_000}, "compute_output": {"count": 10, "ns": 2_000_000}}}]}
    grpc_doc = {"model_stats": [{"name": "m", "inference_count": "30", "execution_count": "8", "inference_stats": {
        "success": {"count": "30", "ns": "250000000"}, "fail": {"count": "2", "ns": "1000"},
        "queue": {"count": "30", "ns": "120000000"}, "compute_input": {"count": "30", "ns": "3000000"},
        "compute_infer": {"count": "30", "ns": "85000000"}, "compute_output": {"count": "30", "ns": "6000000"}}}]}
    d = server_delta(flatten_model_stats(http_doc, "m"), flatten_model_stats(grpc_doc, "m"))
    assert d["success_count"] == 20 and d["fail_count"] == 2 and d["execution_count"] == 4
    assert d["avg_batch_size"] == 5.0
    assert d["queue_ms"] == 5.0 and d["compute_infer_ms"] == 3.0 and d["request_ms"] == 10.0
    assert flatten_model_stats(http_doc, "other") is None and server_delta(None, {}) is None


def test_latency_summary():
    s = latency_summary([0.001 * k for k in range(1, 101)])
    assert s["min"] == 1.0 and s["max"] == 100.0 and s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01)
    assert latency_summary([])["p50"] is None


def test_report_files(tmp_path):
    step = run_concurrency_step(type("T", (), {"send": lambda self, p: None})(), PayloadFactory("resnet_classifier"),
                                2, duration_s=60, max_requests=6)
    paths = write_report(tmp_path, {"title": "t", "steps": [step, dict(step, concurrency=4)]})
    doc = json.loads(paths["json"].read_text())
    assert len(doc["steps"]) == 2 and "_records" not in doc["steps"][0]
    assert len(paths["csv"].read_text().strip().splitlines()) == 3
    assert len(paths["requests"].read_text().strip().splitlines()) == 13
    assert paths["png"].read_bytes().startswith(b"\x89PNG")


# -- SageMaker ----------------------------------------------------------------------------
def _runtime_client():
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                        config=Config(signature_version=UNSIGNED))


def test_sagemaker_request_is_a_kserve_binary_body():
    from botocore.response import StreamingBody
    from botocore.stub import Stubber
    from deploy.payload import header_size, parse_response

    p = PayloadFactory("sd_inpaint", inference_steps=3)(2)
    body, ctype = sagemaker_request(p)
    size = header_size(ctype)
    header = json.loads(body[:size])
    assert {i["name"] for i in header["inputs"]} == set(p.inputs)
    assert all(i["shape"] == [1, 1] and i["datatype"] == "BYTES" for i in header["inputs"])
    assert p.inputs["image"] in body[size:] and p.inputs["mask_image"] in body[size:]

    client = _runtime_client()
    t = SageMakerTransport("sd_inpaint", "my-endpoint", client=client, send_deadline=False)  # a fixed body
    kwargs = t.request_kwargs(p)
    assert kwargs["TargetModel"] == "sd_inpaint.tar.gz" and kwargs["EndpointName"] == "my-endpoint"
    reply = json.dumps({"outputs": [{"name": "generated_image", "shape": [1, 1], "datatype": "BYTES",
                                      "data": ["aGVsbG8="]}]}).encode()
    with Stubber(client) as stub:  # validates the call against the sagemaker-runtime API model
        stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(reply), len(reply)),
                                              "ContentType": "application/json"}, kwargs)
        t.send(p)
        stub.assert_no_pending_responses()
    assert parse_response(reply, "application/json")["generated_image"].shape == (1, 1)

    deadline_body, _ = sagemaker_request(p, parameters={"deadline_ms": 1_800_000_000_000, "timeout": 5_000_000})
    assert json.loads(deadline_body[:header_size(_)])["parameters"]["deadline_ms"] == 1_800_000_000_000

    json_body, json_type = sagemaker_request(p, binary=False)
    doc = json.loads(json_body)
    assert json_type == "application/json"
    image = next(i for i in doc["inputs"] if i["name"] == "image")["data"][0]
    import base64
    assert base64.b64decode(image) == p.inputs["image"]


def test_sagemaker_model_error_is_classified():
    from botocore.stub import Stubber

    client = _runtime_client()
    t = SageMakerTransport("resnet_classifier", "ep", client=client)
    p = PayloadFactory("resnet_classifier", bad_fraction=1.0)(0)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424,
                              service_message='Received client error (400) from primary: {"error":"input \'image\': '
                                              'not a PNG/JPEG/WebP image"}',
                              response_meta={}, modeled_fields={"OriginalStatusCode": 400})
        with pytest.raises(RequestFailed) as info:
            t.send(p)
    assert info.value.kind == "invalid_arg:image"


# -- CLI and locustfile -------------------------------------------------------------------
def test_cli_rejects_bad_arguments(capsys):
    from bench.loadtest.cli import main

    for argv in (["nope"], ["resnet_classifier", "--concurrency", "0"], ["resnet_classifier", "--rate", "-1"],
                 ["resnet_classifier", "--concurrency", "1", "--rate", "2"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["resnet_classifier", "--bad-fraction", "1.5"])


def test_cli_unreachable_server_fails_fast(tmp_path, capsys):
    from bench.loadtest.cli import main
    from tests.conftest import free_port

    assert main(["resnet_classifier", "--url", f"127.0.0.1:{free_port()}", "--out", str(tmp_path)]) == 1
    assert "cannot reach Triton" in capsys.readouterr().err


def test_locustfile_imports_without_locust_and_builds_triton_requests():
    import importlib.util
    import py_compile

    import bench.locustfile as lf
    from serving.launch.server import ROOT

    py_compile.compile(str(ROOT / "bench" / "locustfile.py"), doraise=True)
    if importlib.util.find_spec("locust") is None:
        assert lf.HttpUser is None and not hasattr(lf, "TritonUser")
    path, body, headers = lf.triton_http_request("sd_depth", PayloadFactory("sd_depth")(0))
    assert path == "/v2/models/sd_depth/infer"
    n = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:n])
    assert {i["name"] for i in header["inputs"]} >= {"prompt", "image", "gen_args"}
    assert header["outputs"] == [{"name": "generated_image", "parameters": {"binary_data": True}}]
    assert lf.failure_kind(400, b'{"error":"input \'image\': empty"}') == "invalid_arg:image"
    assert lf.settings({"LOADTEST_MODEL": "sd_upscale", "LOADTEST_BAD_FRACTION": "0.1"})["model"] == "sd_upscale"


def test_negative_prompt_modes_control_the_input_set():
    def names(mode):
        f = PayloadFactory("sd_depth", negative_prompt=mode)
        return [frozenset(f(i).inputs) for i in range(4)]

    assert len(set(names("always"))) == 1 and "negative_prompt" in names("always")[0]
    assert len(set(names("never"))) == 1 and "negative_prompt" not in names("never")[0]
    assert len(set(names("mixed"))) == 2  # Triton will not batch these together
    with pytest.raises(ValueError):
        PayloadFactory("sd_depth", negative_prompt="sometimes")


def test_load_carries_segment_attributes():
    """Issue 23: a load test can play one tenant; the attributes ride in the body on every transport."""
    from deploy.payload import header_size

    from bench.loadtest.transports import TritonTransport

    p = PayloadFactory("resnet_classifier")(0)
    t = SageMakerTransport("resnet_classifier", "ep", client=_runtime_client(), segments={"tenant": "load"})
    kwargs = t.request_kwargs(p)
    header = json.loads(kwargs["Body"][:header_size(kwargs["ContentType"])])
    assert header["parameters"]["segment.tenant"] == "load"
    assert TritonTransport("resnet_classifier", "127.0.0.1:1", segments={"tenant": "load"}).parameters["segment.tenant"] == "load"
    with pytest.raises(ValueError, match="the name must match"):
        TritonTransport("resnet_classifier", "127.0.0.1:1", segments={"Tenant": "x"})
