"""Baselines: versioned save/load round trip, no pickle, invisible to record readers, every source."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from monitoring.analysis.baseline import list_baselines, load_baseline, save_baseline
from monitoring.analysis.baseline import sources
from monitoring.cli import main as cli_main
from monitoring.ingest.store import read_records
from workflow_testlib import MODEL, digits, embed, metadata


def test_save_load_round_trip_and_versions(tmp_path):
    tr_img, tr_lab, *_ = digits()
    X, meta = embed(tr_img[:300]), metadata(tr_img[:300])
    meta["label"] = [str(v) for v in tr_lab[:300]]
    b1 = save_baseline(tmp_path, "m", X, meta, source={"kind": "test"}, embedding_source="pixels")
    b2 = save_baseline(tmp_path, "m", X[:200], meta[:200], max_rows=150)
    assert (b1.version, b2.version) == (1, 2)
    assert [m["version"] for m in list_baselines(tmp_path, "m")] == [1, 2]
    latest = load_baseline(tmp_path, "m")
    assert latest.version == 2 and latest.embeddings.shape == (150, 64) and latest.manifest["n_source_rows"] == 200
    first = load_baseline(tmp_path, "m", 1)
    assert first.embeddings.dtype == np.float32
    np.testing.assert_array_equal(first.embeddings, X)
    pd.testing.assert_series_equal(first.metadata["brightness"], meta["brightness"], check_names=False)
    assert first.metadata["label"].tolist() == meta["label"].tolist()
    m = first.manifest
    assert (m["model"], m["n"], m["dim"], m["embedding_source"], m["source"]["kind"]) == ("m", 300, 64, "pixels", "test")
    assert m["detectors"]["alpha"] == 0.01 and "cluster_jsd" in m["detectors"]["methods"]
    # refitting from the stored sample is deterministic: same verdicts, same statistics
    win = embed(digits()[2][:80])
    r1 = first.fit_suite().score(win)
    r2 = load_baseline(tmp_path, "m", 1).fit_suite().score(win)
    assert {k: v.statistic for k, v in r1.items()} == {k: v.statistic for k, v in r2.items()}
    with pytest.raises(LookupError):
        load_baseline(tmp_path, "m", 7)
    with pytest.raises(LookupError):
        load_baseline(tmp_path, "other")


def test_nothing_pickled_and_records_readers_unaffected(digit_store):
    store, _ = digit_store
    files = [p for p in store.rglob("*") if p.is_file()]
    mon = [p for p in files if "_monitoring" in p.parts]
    assert mon and not [p for p in mon if p.suffix in (".pkl", ".pickle", ".parquet")]
    np.load(next(p for p in mon if p.name == "embeddings.npy"), allow_pickle=False)
    # the whole store still reads as records only (pyarrow skips _monitoring/), one model column
    t = pq.read_table(store)
    assert t.num_rows == 600 and set(t["model"].to_pylist()) == {MODEL}
    assert read_records(store, MODEL).num_rows == 600


def test_bad_input_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        save_baseline(tmp_path, "m", np.full((100, 4), np.nan))
    with pytest.raises(ValueError, match="rows"):
        save_baseline(tmp_path, "m", np.zeros((100, 4)), pd.DataFrame({"brightness": np.zeros(5)}))
    assert list_baselines(tmp_path, "m") == []


def test_spaces_from_records_and_parquet(digit_store, tmp_path):
    """The two sources `baseline build --from records|parquet` reads, on the same rows, agree."""
    store, ids = digit_store
    # the clean day only (2024-05-06)
    spaces, meta, info = sources.spaces_from_records(store, MODEL, "2024-05-06", "2024-05-07")
    X = spaces["image"].embeddings
    assert X.shape == (200, 64) and info["embedding_source"] == "pixels" and info["rows"] == 200
    assert set(meta["request_id"]) == {rid for rid, _ in ids["clean"]}
    t = read_records(store, MODEL, "2024-05-06", "2024-05-07")
    pq.write_table(t, tmp_path / "ref.parquet")
    spaces2, meta2, info2 = sources.spaces_from_parquet(tmp_path / "ref.parquet")
    np.testing.assert_array_equal(X, spaces2["image"].embeddings)
    assert info2["kind"] == "parquet" and list(meta2["request_id"]) == list(meta["request_id"])


def test_cli_build_list_show(digit_store, capsys):
    store, _ = digit_store
    assert cli_main(["baseline", "build", "--model", MODEL, "--store", str(store), "--from", "records",
                     "--since", "2024-05-06", "--until", "2024-05-07", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["version"] == 2 and built["n"] == 200 and built["source"]["kind"] == "records"
    assert cli_main(["baseline", "list", "--model", MODEL, "--store", str(store), "--json"]) == 0
    assert [m["version"] for m in json.loads(capsys.readouterr().out)] == [1, 2]
    assert cli_main(["baseline", "show", "--model", MODEL, "--store", str(store), "--version", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1000
    assert cli_main(["baseline", "build", "--model", MODEL, "--store", str(store), "--from", "parquet"]) == 2
    assert "PATH" in capsys.readouterr().err


def test_from_images_uses_the_serving_runtime(tmp_path, checkpoint, capsys):
    """Images in class folders -> the classifier runtime in-process: embeddings, stats, labels."""
    from monitoring.capture.image_stats import image_stats
    from bench.demo.data import png_bytes

    tr_img, tr_lab, *_ = digits()
    d = tmp_path / "imgs"
    for i in range(60):
        (d / str(tr_lab[i])).mkdir(parents=True, exist_ok=True)
        (d / str(tr_lab[i]) / f"{i:03d}.png").write_bytes(png_bytes(tr_img[i]))
    store = tmp_path / "store"
    assert cli_main(["baseline", "build", "--model", "resnet_classifier", "--store", str(store), "--from", "images", str(d),
                     "--checkpoint", checkpoint("resnet_classifier"), "--json"]) == 0
    man = json.loads(capsys.readouterr().out)
    assert man["embedding_source"] == "resnet.pooler:flatten" and man["n"] == 60
    b = load_baseline(store, "resnet_classifier")
    assert b.embeddings.shape == (60, man["dim"]) and np.isfinite(b.embeddings).all()
    files = sources.list_images(d)
    assert b.metadata["label"].tolist() == [lab for _, lab in files]
    first = files[0][0]
    from PIL import Image

    want = image_stats(np.asarray(Image.open(first).convert("RGB")))
    assert b.metadata["brightness"].iloc[0] == pytest.approx(want["brightness"])
    assert b.metadata["pred_label"].notna().all()
