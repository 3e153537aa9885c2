"""Capture end to end: real tritonserver → spool → sidecar → Parquet store, for all five models."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter
from tritonclient.utils import InferenceServerException

from serving.launch.client import infer
from bench.loadtest.loss import match_ids
from serving.launch.server import ROOT, TritonProcess, server_env
from serving.runtime.capacity.admission import instance_count
from tests.conftest import TEST_INSTANCES, encode, free_port, gen_args, mask_png, photo, png, tensor

N_PER_SD_MODEL = 3


def gray(value: int, size: int = 64) -> bytes:
    return encode(Image.new("RGB", (size, size), (value, value, value)))


def start(model_repo, log_dir, env, models=None, instances=None) -> TritonProcess:
    kw = {"models": models} if models else {}
    return TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         log_path=log_dir / "tritonserver.log", extra_env=env, instances=instances, **kw).start(wait_s=600)


def run_sidecar_once(spool, store) -> None:
    subprocess.run([sys.executable, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store),
                    "--once", "--metrics-port", "-1"], check=True, cwd=ROOT, env=server_env(), timeout=600)


def read(store, model, dedup: bool = True):
    from monitoring.ingest.store import read_records_df
    return read_records_df(str(store), model, dedup=dedup)


@pytest.fixture(scope="module")
def captured(model_repo, tmp_path_factory):
    """Send known requests with capture on, stop the server gracefully, drain the spool."""
    tmp = tmp_path_factory.mktemp("capture-e2e")
    spool, store = tmp / "spool", tmp / "store"
    server = start(model_repo, tmp, {"CAPTURE_SPOOL_DIR": str(spool)}, instances=TEST_INSTANCES)
    sent: dict[str, dict[str, dict]] = {m: {} for m in
                                        ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale", "resnet_classifier")}
    try:
        sharp = photo(64, seed=5)
        images = {
            "gray100": gray(100), "bright": gray(220), "dark": gray(30),
            "sharp": encode(sharp), "blurred": encode(sharp.filter(ImageFilter.GaussianBlur(2))),
        }
        for name, data in images.items():
            out = infer("resnet_classifier", {"image": tensor(data)}, url=server.http_url)
            sent["resnet_classifier"][out["request_id"][0, 0].decode()] = {"name": name, "label": out["label"][0, 0].decode()}
        out = infer("resnet_classifier", {"image": tensor(png(64))}, url=server.http_url, request_id="client-chosen-id")
        sent["resnet_classifier"]["client-chosen-id"] = {"name": "own-id", "label": out["label"][0, 0].decode()}
        inputs = {
            "sd_img2img": dict(prompt=b"a photo of a cat", image=png(64)),
            "sd_depth": dict(prompt=b"a red house", image=png(64)),
            "sd_inpaint": dict(prompt=b"a dog", image=png(64), mask_image=mask_png(64)),
            "sd_upscale": dict(prompt=b"a tree", image=png(32)),
        }
        for model, base in inputs.items():
            for i in range(N_PER_SD_MODEL):
                req = dict(base, gen_args=gen_args(seed=i))
                if i == 1:
                    req["negative_prompt"] = b"blurry"
                out = infer(model, {k: tensor(v) for k, v in req.items()}, url=server.http_url)
                sent[model][out["request_id"][0, 0].decode()] = {"seed": i, "negative": i == 1}
        out = infer("sd_img2img", {"prompt": tensor(b"the sky"), "gen_args": tensor(gen_args(seed=9))}, url=server.http_url)
        sent["sd_img2img"][out["request_id"][0, 0].decode()] = {"text2img": True, "seed": 9, "negative": False}
        with pytest.raises(InferenceServerException):
            infer("resnet_classifier", {"image": tensor(b"not an image")}, url=server.http_url, request_id="bad-1")
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    run_sidecar_once(spool, store)
    return store, sent


def test_graceful_stop_loses_no_record(captured):
    store, sent = captured
    for model, requests in sent.items():
        df = read(store, model, dedup=False)  # as written: a duplicate must show
        match = match_ids(list(requests), df[df.outcome == "ok"].request_id)
        assert match.exact, (model, match.summary())
    errors = read(store, "resnet_classifier").query("outcome == 'error'")
    assert list(errors.request_id) == ["bad-1"]
    assert errors.error_code.iloc[0] == "INVALID_ARG" and "input 'image'" in errors.error_message.iloc[0]


def test_classifier_records_embeddings_and_metadata(captured):
    store, sent = captured
    df = read(store, "resnet_classifier").query("outcome == 'ok'").set_index("request_id")
    emb = np.stack(df.embedding.map(np.asarray).to_list())
    assert emb.shape == (len(sent["resnet_classifier"]), 64)  # tiny ResNet's pooled width
    assert set(df.embedding_source) == {"resnet.pooler:flatten"}
    assert emb.std(axis=0).max() > 0 and np.ptp(emb, axis=1).min() > 0  # varies across and within
    assert (df.model_version == "1").all() and (df.compute_ms > 0).all() and (df.batch_size >= 1).all()
    by_name = {v["name"]: rid for rid, v in sent["resnet_classifier"].items()}
    for rid, info in sent["resnet_classifier"].items():
        assert df.loc[rid, "pred_label"] == info["label"]
        assert 0 < df.loc[rid, "pred_top_prob"] <= 1 and df.loc[rid, "pred_entropy"] > 0
    g = df.loc[by_name["gray100"]]
    assert (g.brightness, g.contrast, g.sharpness, g.image_width, g.image_height) == (100.0, 0.0, 0.0, 64, 64)
    assert df.loc[by_name["dark"], "brightness"] < df.loc[by_name["bright"], "brightness"]
    assert df.loc[by_name["blurred"], "sharpness"] < df.loc[by_name["sharp"], "sharpness"] / 2


def test_sd_records_prompt_and_image_embeddings(captured):
    store, sent = captured
    for model in ("sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale"):
        df = read(store, model).set_index("request_id")
        for rid, info in sent[model].items():
            row = df.loc[rid]
            text = np.asarray(row.text_embedding)
            assert text.shape == (32,) and np.ptp(text) > 0
            assert row.text_embedding_source == "text_encoder.final_layer_norm:mean_real_tokens"
            assert row.prompt_tokens >= 3  # BOS + at least one word + EOS
            assert bool(row.has_negative_prompt) == info["negative"]
            assert json.loads(row.gen_args)["seed"] == info["seed"]
            assert row.output_width > 0 and row.output_std > 0
            if info.get("text2img"):
                assert row.embedding is None and pd.isna(row.image_width)
            else:
                assert np.asarray(row.embedding).shape == (16,) and row.image_width > 0
        expected_source = "unet.mid_block:spatial_mean:last_step" if model == "sd_upscale" else "vae.encoder.mid_block:spatial_mean"
        assert set(df.embedding_source.dropna()) == {expected_source}
    up = read(store, "sd_upscale")
    assert (up.output_width == 4 * up.image_width).all()


def test_records_cli_json(captured):
    store, sent = captured
    out = subprocess.run([sys.executable, "-m", "monitoring", "records", "--store", str(store), "--model", "sd_depth",
                          "--json"], check=True, capture_output=True, text=True, cwd=ROOT, env=server_env())
    info = json.loads(out.stdout)
    assert info["count"] == N_PER_SD_MODEL
    assert {"embedding", "text_embedding", "brightness", "request_id"} <= set(info["columns"])


def test_inference_answers_and_drops_are_counted_when_the_spool_is_full(model_repo, tmp_path):
    """With the sidecar down the spool only grows; once its free-space guard trips (simulated
    here with an unreachable threshold), records are dropped and counted, never blocking."""
    env = {"CAPTURE_SPOOL_DIR": str(tmp_path / "spool"), "CAPTURE_QUEUE_SIZE": "2", "CAPTURE_BATCH_SIZE": "2",
           "CAPTURE_MIN_FREE_MB": str(10**9), "CAPTURE_METRICS_INTERVAL_S": "0"}
    # Each instance of the model is its own process with its own capturer, queue and counters;
    # Triton adds their increments into one series per name and labels.
    instances = instance_count((model_repo / "resnet_classifier" / "config.pbtxt").read_text())
    held = 2 + 2  # per capturer: at most queue (2) + writer batch (2) held, neither dropped nor written
    n = 12 * instances
    server = start(model_repo, tmp_path, env, models=("resnet_classifier",))
    try:
        labels = [infer("resnet_classifier", {"image": tensor(png(64, seed=i))}, url=server.http_url)["label"][0, 0]
                  for i in range(n)]
        assert len(labels) == n
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
        lines = [line for line in metrics.splitlines() if line.startswith("capture_records_")]
        values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
        assert len(values) == len(lines), lines  # one series per counter, not one per instance
        # The counters are published at the end of each execute, so each instance's trail by one request.
        assert values["capture_records_submitted_total"] >= n - instances
        assert values["capture_records_dropped_total"] >= n - instances * (1 + held)
        assert values["capture_records_spooled_total"] == 0
    finally:
        assert server.stop() == 0
