"""Actuals: CSV validation, storage, join on request id, accuracy per window beside drift."""

from __future__ import annotations

import json

import pytest

from monitoring.analysis.actuals import load_actuals, read_labels_csv
from monitoring.cli import main as cli_main
from monitoring.analysis.scoring import score_model
from monitoring.ingest.store import read_records_df
from workflow_testlib import MODEL


def _expected_accuracy(store, ids, kind):
    recs = read_records_df(store, MODEL, columns=["request_id", "pred_label"]).set_index("request_id")["pred_label"]
    pairs = ids[kind]
    return sum(recs[rid] == lab for rid, lab in pairs) / len(pairs)


def test_csv_validation(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("id,label\nx,1\n")
    with pytest.raises(ValueError, match="request_id"):
        read_labels_csv(p)
    p.write_text("request_id,label\nx,1\ny,\n")
    with pytest.raises(ValueError, match=":3: empty label"):
        read_labels_csv(p)
    p.write_text("request_id,label\nx,1\nx,2\n")
    with pytest.raises(ValueError, match="conflicting"):
        read_labels_csv(p)
    p.write_text("request_id,label,extra\n x ,1,a\nx,1,a\ny,2,b\n")
    df = read_labels_csv(p)
    assert df["request_id"].tolist() == ["x", "y"] and df["label"].tolist() == ["1", "2"]


def test_post_join_and_accuracy_per_window(digit_store, labels_csv, tmp_path, capsys):
    store, ids = digit_store
    # a couple of ids that match nothing
    with open(labels_csv, "a") as f:
        f.write("unknown-1,3\nunknown-2,4\n")
    assert cli_main(["actuals", "--file", str(labels_csv), "--store", str(store), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labels"] == 602 and out["matched"] == 600 and out["unmatched"] == 2
    assert out["models"][MODEL]["matched"] == 600
    assert len(load_actuals(store)) == 602
    run = score_model(store, MODEL, every="1d")
    assert run["has_actuals"]
    for w, kind in zip(run["windows"], ["clean", "blurred", "darkened"]):
        assert w["n_labeled"] == 200
        assert w["accuracy"] == pytest.approx(_expected_accuracy(store, ids, kind))
    assert "accuracy" in run["windows"][2]["explanation"]["summary"]
    # a later post for the same id wins
    rid, lab = ids["clean"][0]
    p = tmp_path / "fix.csv"
    p.write_text(f"request_id,label\n{rid},{'0' if lab != '0' else '1'}\n")
    assert cli_main(["actuals", "--file", str(p), "--store", str(store)]) == 0
    assert "matched 1 of 1" in capsys.readouterr().out
    assert load_actuals(store).set_index("request_id").loc[rid, "label"] != lab


def test_labels_for_another_model_do_not_count(digit_store, tmp_path, capsys):
    store, ids = digit_store
    p = tmp_path / "other.csv"
    p.write_text("request_id,label,model\n" + "".join(f"{rid},{lab},some_other_model\n" for rid, lab in ids["clean"]))
    assert cli_main(["actuals", "--file", str(p), "--store", str(store), "--model", MODEL, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][MODEL]["matched"] == 0
    run = score_model(store, MODEL, every="1d")
    assert run["windows"][0]["accuracy"] is None
