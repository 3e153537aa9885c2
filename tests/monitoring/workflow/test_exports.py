"""`python -m monitoring export`: each export validated by the receiving tool's own library,
offline (Arize and Fiddler SDKs in their venvs under build/venvs/), and SageMaker Data Capture +
Model Monitor ground truth joined on inferenceId."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from monitoring.cli import main as cli_main
from workflow_testlib import MODEL, ROOT, T0, DAY

VENVS = ROOT / "build" / "venvs"


def sdk_python(name: str) -> Path:
    py = VENVS / name / "bin" / "python"
    if not (VENVS / name / ".installed").exists():
        if os.environ.get("REQUIRE_EXPORT_VENVS") == "1":
            raise RuntimeError(f"{py} missing: run `make export-venvs`")
        pytest.skip(f"needs the {name} SDK venv (`make export-venvs`; `make test` builds it)")
    return py


def check(name: str, module: str, out: Path) -> tuple[int, list[dict]]:
    """Run the export module's validator with the tool's SDK; (exit status, one result per file)."""
    proc = subprocess.run([str(sdk_python(name)), "-m", module, str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": os.environ.get("HOME", "/tmp")},
                          timeout=600)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    return proc.returncode, lines


@pytest.fixture
def labelled_store(digit_store, labels_csv):
    store, ids = digit_store
    assert cli_main(["actuals", "--file", str(labels_csv), "--store", str(store)]) == 0
    return store, ids


def test_arize_export_passes_the_sdk_validation(labelled_store, tmp_path, capsys):
    store, ids = labelled_store
    out = tmp_path / "arize"
    assert cli_main(["export", "--to", "arize", "--model", MODEL, "--store", str(store), "--since", str(T0 + 2 * DAY),
                     "--out", str(out)]) == 0
    assert "200 window rows, 1000 baseline rows" in capsys.readouterr().out
    spec = json.loads((out / "schema.json").read_text())["schema"]
    assert spec["embedding_feature_column_names"]["image_embedding"] == {"vector_column_name": "embedding",
                                                                          "link_to_data_column_name": "image_link"}
    assert spec["actual_label_column_name"] == "actual_label" and "brightness" in spec["feature_column_names"]
    df = pd.read_parquet(out / "primary.parquet")
    truth = dict(ids["darkened"])
    assert set(df["prediction_id"]) == set(truth) and all(df["actual_label"] == df["prediction_id"].map(truth))
    assert df["image_link"].str.startswith("data:image/jpeg;base64,").all() and len(df["embedding"].iloc[0]) == 64
    assert df["timestamp"].between(T0 // 1000 + 2 * 86400, T0 // 1000 + 3 * 86400).all()
    rc, results = check("arize", "monitoring.outputs.export.arize", out)
    assert rc == 0 and results == [{"file": "primary.parquet", "environment": "PRODUCTION", "errors": []},
                                   {"file": "reference.parquet", "environment": "TRAINING", "errors": []}]
    # the SDK's checks can fail: a frame whose timestamps are text is rejected, naming the column
    df.assign(timestamp=df["timestamp"].astype(str)).to_parquet(out / "primary.parquet", index=False)
    rc, results = check("arize", "monitoring.outputs.export.arize", out)
    assert rc == 1 and any("timestamp" in e for e in results[0]["errors"])


def test_fiddler_export_fits_the_client_model_objects(labelled_store, tmp_path, capsys):
    store, _ = labelled_store
    out = tmp_path / "fiddler"
    assert cli_main(["export", "--to", "fiddler", "--model", MODEL, "--store", str(store), "--out", str(out)]) == 0
    model = json.loads((out / "model.json").read_text())
    assert model["event_id_col"] == "event_id" and model["event_ts_col"] == "timestamp"
    cf = model["spec"]["custom_features"][0]
    assert cf["type"] == "FROM_IMAGE_EMBEDDING" and cf["column"] == "embedding" and cf["source_column"] == "image_link"
    vec = next(c for c in model["schema"]["columns"] if c["name"] == "embedding")
    assert vec == {"name": "embedding", "data_type": "vector", "n_dimensions": 64}
    ev = pd.read_parquet(out / "events.parquet")
    assert len(ev) == 600 and ev["event_id"].is_unique and ev["target"].notna().all()
    rc, results = check("fiddler", "monitoring.outputs.export.fiddler", out)
    assert rc == 0 and results == [{"file": "events.parquet", "errors": []}, {"file": "baseline.parquet", "errors": []}]
    # a vector of the wrong width and a label outside the categories are caught
    ev.loc[0, "prediction"] = "not-a-digit"
    ev.at[1, "embedding"] = [0.0] * 3
    ev.to_parquet(out / "events.parquet", index=False)
    rc, results = check("fiddler", "monitoring.outputs.export.fiddler", out)
    errs = " | ".join(results[0]["errors"])
    assert rc == 1 and "not-a-digit" in errs and "not 64-d" in errs


def test_datacapture_with_groundtruth_joins_on_inference_id(labelled_store, tmp_path, capsys):
    store, ids = labelled_store
    out = tmp_path / "dc"
    assert cli_main(["export", "--to", "datacapture", "--model", MODEL, "--store", str(store), "--until", str(T0 + DAY),
                     "--out", str(out), "--endpoint", "digits-ep"]) == 0
    events = [json.loads(line) for f in sorted((out / "digits-ep" / "AllTraffic").rglob("*.jsonl")) for line in f.read_text().splitlines()]
    gt_files = sorted((out / "groundtruth").rglob("*.jsonl"))
    assert gt_files and all(len(f.relative_to(out / "groundtruth").parts) == 5 for f in gt_files)  # yyyy/mm/dd/hh/x.jsonl
    gt = [json.loads(line) for f in gt_files for line in f.read_text().splitlines()]
    assert len(events) == 200 and len(gt) == 200  # only the window's labels
    for g in gt:
        assert set(g) == {"groundTruthData", "eventMetadata", "eventVersion"} and g["eventVersion"] == "0"
        assert g["groundTruthData"]["encoding"] == "CSV" and set(g["eventMetadata"]) == {"eventId"}
    # Model Monitor's merge: ground truth eventId == capture inferenceId, label vs prediction
    preds = {e["eventMetadata"]["inferenceId"]: json.loads(e["captureData"]["endpointOutput"]["data"])["pred_label"] for e in events}
    truth = {g["eventMetadata"]["eventId"]: g["groundTruthData"]["data"] for g in gt}
    assert set(preds) == set(truth) == {rid for rid, _ in ids["clean"]}
    assert truth == dict(ids["clean"])
    acc = sum(preds[k] == truth[k] for k in truth) / len(truth)
    assert 0.8 < acc <= 1.0
    # every embedding space travels in the export (issue 23): this model has the input image's
    assert len(json.loads(events[0]["captureData"]["endpointInput"]["data"])["embedding"]) == 64
