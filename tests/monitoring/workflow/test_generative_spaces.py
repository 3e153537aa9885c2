"""Several embedding spaces per model, on records the real sd_img2img runtime produced in-process.

The traffic is the generative demo's (bench/demo/generative.py), smaller: a baseline and a
clean week of prompts about cats, a week of prompts about dragons, a week with other generation
settings; half img2img (digit pictures, the same distribution every week), half text2img.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitoring.analysis.alerts import export_scores
from monitoring.analysis.baseline.store import load_baseline, save_baseline
from monitoring.cli import main as cli_main
from bench.demo.generative import MODEL, GenPhase, build_store
from monitoring.outputs.report.build import build_report
from monitoring.analysis.scoring.runner import save_scores
from monitoring.analysis.scoring.windows import iso


@pytest.fixture(scope="module")
def mixed(generative_scored, tmp_path_factory):
    """(store, run): baseline (120) + clean / prompts moved / settings changed weeks (64 each), scored
    (a copy of the session's store: tests here save scores into it)."""
    store, run = generative_scored
    dst = tmp_path_factory.mktemp("gen-mixed-copy") / "store"
    shutil.copytree(store, dst)
    return dst, copy.deepcopy(run)


def _week(run, prefix: str) -> dict:
    return next(w for w in run["windows"] if w["label"].startswith(prefix))


def test_baseline_has_a_sample_per_space(mixed):
    store, _ = mixed
    b = load_baseline(store, MODEL)
    assert set(b.spaces) == {"image", "prompt", "output"}
    assert len(b.spaces["prompt"].embeddings) == 120 and len(b.spaces["image"].embeddings) == 60  # img2img rows only
    assert b.manifest["spaces"]["prompt"]["embedding_source"].startswith("text_encoder")
    assert b.primary_space == "image"
    # the image space's rows point at img2img requests (they have input image statistics)
    assert b.space_metadata("image")["brightness"].notna().all()
    assert b.metadata["prompt_text"].str.contains("cat|kitten").all()


def test_clean_week_is_quiet_in_every_space(mixed):
    _, run = mixed
    w = _week(run, "week 1")
    assert set(w["spaces"]) == {"image", "prompt", "output"}
    for name, sp in w["spaces"].items():
        assert sp["scored"], (name, sp)
        assert not sp["any_drift"], (name, sp["methods"])
    assert not w["methods"]["settings"]["is_drift"] and not w["methods"]["outputs"]["is_drift"]
    assert not w["any_drift"] and w["drifted"] == []


def test_subject_shift_alarms_in_prompt_space_not_image_space(mixed):
    _, run = mixed
    w = _week(run, "week 2")
    prompt, image = w["spaces"]["prompt"], w["spaces"]["image"]
    # mean-pooled tokens of a tiny random text encoder dilute the subject words: at 64 requests the
    # domain classifier separates the weeks clearly (AUC ~0.96), the distance tests less so
    assert prompt["any_drift"] and prompt["methods"]["domain_classifier"]["statistic"] > 0.85
    assert not image["any_drift"]
    assert image["n"] == 32 and prompt["n"] == 64  # text2img requests count in the prompt space only
    assert not w["methods"]["settings"]["is_drift"]
    assert any(d.startswith("prompt:") for d in w["drifted"])
    # readable: the terms that rose / fell and the typical prompts of the gained cluster
    p = prompt["prompts"]
    assert p["available"]
    rose = [t["term"] for t in p["terms_rose"][:3]]
    fell = [t["term"] for t in p["terms_fell"][:3]]
    assert "dragon" in rose and ("cat" in fell or "kitten" in fell)
    gained = [c for c in p["clusters"] if c["direction"] == "gained"]
    assert gained and all("dragon" in t or "wyvern" in t for c in gained for t in c["typical_prompts"])
    assert "dragon" in w["explanation"]["summary"]


def test_changed_settings_show_as_settings_drift(mixed):
    _, run = mixed
    w = _week(run, "week 3")
    st = w["settings"]
    assert w["methods"]["settings"]["is_drift"]
    assert {"gen_steps", "gen_guidance", "has_negative_prompt"} <= set(st["drifted_fields"])
    steps = next(f for f in st["fields"] if f["field"] == "gen_steps")
    assert steps["baseline"] == {"2": 1.0} and steps["window"] == {"4": 1.0}
    assert not w["spaces"]["prompt"]["any_drift"] and not w["spaces"]["image"]["any_drift"]
    assert "gen_steps" in w["explanation"]["summary"]


def test_every_result_names_its_space_and_gauges_follow(mixed, tmp_path):
    store, run = mixed
    for w in run["windows"]:
        for name, r in w["methods"].items():
            assert r["space"] in ("image", "metadata", "settings", "outputs"), (name, r)
        for space, sp in w["spaces"].items():
            assert all(r["space"] == space for r in sp["methods"].values())
    save_scores(store, run)
    reg = CollectorRegistry()
    export_scores(reg, store)
    last = run["windows"][-1]
    for space, sp in last["spaces"].items():
        assert reg.get_sample_value("drift_space_any", {"model": MODEL, "space": space}) == float(sp["any_drift"])
        assert reg.get_sample_value("drift_space_p_value", {"model": MODEL, "space": space, "method": "mmd"}) == pytest.approx(
            sp["methods"]["mmd"]["p_value"])
    assert reg.get_sample_value("generative_output_share", {"model": MODEL, "check": "failed"}) == 0.0


def test_report_names_the_moved_prompts_and_settings(mixed, tmp_path):
    store, run = mixed
    # PCA: the map's projection is not what this checks (test_report_browser.py renders the UMAP default)
    html = build_report(store, MODEL, tmp_path / "report", run=run, projection="pca").read_text()
    assert "Prompts that moved" in html and "dragon" in html
    assert "Generation settings that moved" in html and "gen_guidance" in html


def test_text2img_only_traffic_gets_a_baseline_and_scores_in_the_prompt_space(tmp_path, capsys):
    store = tmp_path / "store"
    phases = [GenPhase("baseline", "cats", 60, image_share=0.0), GenPhase("clean", "cats", 40, image_share=0.0),
              GenPhase("moved", "dragons", 40, image_share=0.0)]
    spans = build_store(store, phases, seed=2)
    (_, b0, b1), (_, c0, c1), (_, m0, m1) = spans
    assert cli_main(["baseline", "build", "--model", MODEL, "--from", "records", "--store", str(store),
                     "--since", iso(b0), "--until", iso(b1), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert set(manifest["spaces"]) == {"prompt", "output"} and manifest["primary_space"] == "prompt"
    assert manifest["spaces"]["prompt"]["n"] == 60
    rc = cli_main(["score", "--model", MODEL, "--store", str(store), "--json", "--min-window", "30",
                   "--window", f"clean={iso(c0)}..{iso(c1)}", "--window", f"moved={iso(m0)}..{iso(m1)}"])
    assert rc == 0
    run = json.loads(capsys.readouterr().out)
    clean, moved = run["windows"]
    assert clean["spaces"]["prompt"]["scored"] and not clean["spaces"]["prompt"]["any_drift"]
    assert moved["spaces"]["prompt"]["any_drift"] and moved["methods"]["mmd"]["space"] == "prompt"
    assert "image" not in moved["spaces"]
    assert Path(store, "_monitoring").is_dir()


def test_a_space_with_too_few_rows_is_left_out_not_fatal(tmp_path):
    """The issue's case: 50 records, 32 with an input image -> the image space is left out."""
    import numpy as np
    import pandas as pd

    from monitoring.analysis.baseline.spaces import SpaceSample

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"prompt_tokens": rng.integers(5, 30, 60)})
    spaces = {"image": SpaceSample(rng.standard_normal((12, 8)).astype(np.float32), np.arange(12), "vae"),
              "prompt": SpaceSample(rng.standard_normal((60, 8)).astype(np.float32), np.arange(60), "text")}
    b = save_baseline(tmp_path, MODEL, None, meta, spaces=spaces)
    assert set(b.spaces) == {"prompt"} and "image" in b.manifest["skipped_spaces"]
    assert "12 rows" in b.manifest["skipped_spaces"]["image"]
    with pytest.raises(ValueError, match="image space: 12 rows"):
        save_baseline(tmp_path, MODEL, None, meta, spaces={"image": spaces["image"]})
