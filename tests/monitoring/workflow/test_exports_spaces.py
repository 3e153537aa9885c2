"""Every embedding space in every export (issue 23): the prompt's and the generated output's
embeddings and the text2img records (no input image) reach Arize, Fiddler and Data Capture,
validated by the Arize SDK's validator and Fiddler's schema objects in their venvs; a
classifier's Fiddler export carries its class probabilities and its multiclass task."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitoring.analysis.baseline.sources import spaces_from_records
from monitoring.analysis.baseline.store import save_baseline
from monitoring.cli import main as cli_main
from bench.demo.generative import MODEL as GEN_MODEL, build_store, default_phases
from monitoring.outputs.export.probabilities import class_probabilities
from test_exports import check


@pytest.fixture(scope="module")
def gen_store(tmp_path_factory):
    """sd_img2img records from the real runtime (tiny weights): half img2img, half text2img; a baseline
    (110 rows: every space needs >= 50, and only img2img rows have an input image)."""
    store = tmp_path_factory.mktemp("gen-export") / "store"
    spans = build_store(store, default_phases(n_baseline=110, per_week=12)[:2], seed=2)
    spaces, meta, info = spaces_from_records(store, GEN_MODEL, spans[0][1], spans[0][2])
    save_baseline(store, GEN_MODEL, None, meta, spaces=spaces, source=info)
    return store, spans


def _export(store, spans, to: str, out) -> None:
    assert cli_main(["export", "--to", to, "--model", GEN_MODEL, "--store", str(store), "--since", str(spans[1][1]),
                     "--until", str(spans[1][2]), "--out", str(out)]) == 0


def test_arize_export_carries_prompt_and_output_embeddings(gen_store, tmp_path, capsys):
    store, spans = gen_store
    out = tmp_path / "arize"
    _export(store, spans, "arize", out)
    printed = capsys.readouterr().out
    assert "12 window rows, 110 baseline rows" in printed  # text2img rows are not dropped
    # a generative baseline has no actual labels: Arize would refuse it as a TRAINING set
    assert "reference not written" in printed and not (out / "reference.parquet").exists()
    spec = json.loads((out / "schema.json").read_text())["schema"]
    emb = spec["embedding_feature_column_names"]
    assert emb["prompt_embedding"] == {"vector_column_name": "prompt_embedding", "data_column_name": "prompt_text"}
    assert emb["output_embedding"] == {"vector_column_name": "output_embedding"}
    assert emb["image_embedding"]["vector_column_name"] == "embedding"
    df = pd.read_parquet(out / "primary.parquet")
    text2img = df["embedding"].isna()
    assert 0 < text2img.sum() < len(df)  # both kinds of request
    assert df["prompt_embedding"].notna().all() and df["output_embedding"].notna().all()
    assert set(df["prediction_label"]) <= {"ok", "blank"}  # no class: the output check is the prediction
    code, results = check("arize", "monitoring.outputs.export.arize", out)
    assert code == 0 and all(r["errors"] == [] for r in results), results


def test_fiddler_export_carries_prompt_and_output_embeddings(gen_store, tmp_path, capsys):
    store, spans = gen_store
    out = tmp_path / "fiddler"
    _export(store, spans, "fiddler", out)
    d = json.loads((out / "model.json").read_text())
    features = {f["column"]: f for f in d["spec"]["custom_features"]}
    assert features["prompt_embedding"]["type"] == "FROM_TEXT_EMBEDDING"
    assert features["prompt_embedding"]["source_column"] == "prompt_text"
    assert features["output_embedding"]["type"] == "FROM_IMAGE_EMBEDDING"
    assert {"embedding", "prompt_embedding", "output_embedding"} <= set(d["spec"]["inputs"])
    assert d["task"] == "not_set"  # a generative model has no classes
    base = pd.read_parquet(out / "baseline.parquet")
    assert base["prompt_embedding"].notna().all() and base["embedding"].isna().any()  # the baseline's spaces too
    code, results = check("fiddler", "monitoring.outputs.export.fiddler", out)
    assert code == 0 and all(r["errors"] == [] for r in results), results


def test_datacapture_events_carry_every_space(gen_store, tmp_path, capsys):
    store, spans = gen_store
    out = tmp_path / "dc"
    _export(store, spans, "datacapture", out)
    events = [json.loads(line) for f in sorted(out.rglob("*.jsonl")) if "groundtruth" not in str(f)
              for line in f.read_text().splitlines()]
    assert len(events) == 12
    inputs = [json.loads(e["captureData"]["endpointInput"]["data"]) for e in events]
    outputs = [json.loads(e["captureData"]["endpointOutput"]["data"]) for e in events]
    assert all(len(i["text_embedding"]) > 1 for i in inputs) and all(len(o["output_embedding"]) > 1 for o in outputs)
    assert any(i["embedding"] is None for i in inputs)  # text2img: no input image, still exported


def test_fiddler_classifier_export_has_probabilities_and_task(tmp_path):
    """Top-k -> one probability column per class; the rest of the mass spread over the other classes."""
    frame = pd.DataFrame({"prediction_label": ["b", "a", None], "actual_label": ["b", "c", None],
                          "top_k_labels": [json.dumps(["b", "a"]), None, None], "top_k_probs": [[0.7, 0.2], None, None],
                          "pred_top_prob": [0.7, 0.6, None]})
    order, table = class_probabilities(frame)
    assert order == ["a", "b", "c"]
    np.testing.assert_allclose(table.iloc[0].to_numpy(), [0.2, 0.7, 0.1])
    np.testing.assert_allclose(table.iloc[1].to_numpy(), [0.6, 0.2, 0.2])  # top-1 only (a baseline row)
    assert table.iloc[2].isna().all()
    assert class_probabilities(frame.assign(prediction_label=None)) is None
