"""The issue's "done when", served for real: text2img traffic through tritonserver (sd_img2img
only, capture on with prompt text), drained by the sidecar, gets a baseline and is scored in the
prompt space by ``python -m monitoring score``; the week whose prompts moved names them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from monitoring.cli import main as cli_main
from bench.demo.generative import make_prompt
from serving.launch.client import infer
from serving.launch.server import ROOT, TritonProcess, server_env
from tests.conftest import TEST_INSTANCES, free_port, gen_args, tensor

N_BASELINE, N_WEEK = 60, 40


def start(model_repo, log_dir, env) -> TritonProcess:
    return TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         log_path=log_dir / "tritonserver.log", extra_env=env, models=("sd_img2img",),
                         instances=TEST_INSTANCES).start(wait_s=600)


def run_sidecar_once(spool, store) -> None:
    subprocess.run([sys.executable, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store),
                    "--once", "--metrics-port", "-1"], check=True, cwd=ROOT, env=server_env(), timeout=600)


def _send(server, subject: str, n: int, seed: int) -> tuple[int, int]:
    """``n`` text2img requests about ``subject``, 4 at a time; returns the (start, end) ms they span."""
    rng = np.random.default_rng(seed)
    prompts = [make_prompt(subject, rng) for _ in range(n)]
    t0 = int(time.time() * 1000)

    def one(i: int) -> None:
        infer("sd_img2img", {"prompt": tensor(prompts[i].encode()),
                             "gen_args": tensor(gen_args(num_inference_steps=2, height=64, width=64, seed=i))},
              url=server.http_url)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))
    return t0, int(time.time() * 1000) + 1


@pytest.fixture(scope="module")
def served_store(model_repo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen-served")
    spool, store = tmp / "spool", tmp / "store"
    server = start(model_repo, tmp, {"CAPTURE_SPOOL_DIR": str(spool), "CAPTURE_PROMPT_TEXT": "1", "OMP_NUM_THREADS": "1"})
    try:
        spans = [_send(server, "cats", N_BASELINE, 0), _send(server, "cats", N_WEEK, 1), _send(server, "dragons", N_WEEK, 2)]
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    run_sidecar_once(spool, store)
    return store, spans


def test_served_text2img_traffic_is_scored_in_the_prompt_space(served_store, capsys):
    store, ((b0, b1), (c0, c1), (m0, m1)) = served_store
    assert cli_main(["baseline", "build", "--model", "sd_img2img", "--from", "records", "--store", str(store),
                     "--since", str(b0), "--until", str(b1), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["primary_space"] == "prompt" and manifest["spaces"]["prompt"]["n"] == N_BASELINE
    assert "image" not in manifest["spaces"]  # text2img: no input image
    assert cli_main(["score", "--model", "sd_img2img", "--store", str(store), "--json",
                     "--window", f"clean={c0}..{c1}", "--window", f"moved={m0}..{m1}"]) == 0  # epoch ms
    clean, moved = json.loads(capsys.readouterr().out)["windows"]
    assert clean["spaces"]["prompt"]["n"] == N_WEEK and not clean["spaces"]["prompt"]["any_drift"]
    prompt = moved["spaces"]["prompt"]
    assert prompt["any_drift"] and all(r["space"] == "prompt" for r in prompt["methods"].values())
    assert prompt["prompts"]["available"] and "dragon" in [t["term"] for t in prompt["prompts"]["terms_rose"][:3]]
