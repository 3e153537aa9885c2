"""The HTML report: self-contained (plotly inline, no external resource), every section, the
explorer data (sampled map, ranked clusters with their requests), PNGs of the time charts beside it."""

from __future__ import annotations

import json
import re

import numpy as np

from monitoring.cli import main as cli_main
from monitoring.outputs.report.explorer import cluster_contributions, sample_sizes
from monitoring.analysis.drift.cluster import js_distance
from workflow_testlib import MODEL


def report_data(html: str) -> dict:
    m = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html, re.S)
    return json.loads(m.group(1))


def outside_scripts(html: str) -> str:
    return re.sub(r"<script\b.*?</script>", "", html, flags=re.S)


def test_report_sections_and_self_contained(digit_store, labels_csv, tmp_path, capsys):
    store, ids = digit_store
    assert cli_main(["actuals", "--file", str(labels_csv), "--store", str(store)]) == 0
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d"]) == 0
    out = tmp_path / "report"
    assert cli_main(["report", "--model", MODEL, "--store", str(store), "--out", str(out), "--projection", "pca",
                     "--max-points", "900"]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    html = (out / "report.html").read_text()
    for section in ("Summary", "Drift per method over time", "Accuracy over time", "Metadata drift", "Embedding map", "Windows"):
        assert re.search(rf"<h2[^>]*>{section}</h2>", html)
    assert "no-drift band" in html
    # self-contained: plotly.js inline, no external resource of any kind
    assert "<script src" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:|#)""", outside_scripts(html))
    assert "Plotly" in html
    for name in ("drift_over_time.png", "accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the map: PCA as asked, sampled to 900 points, the sample stated on the page
    data = report_data(html)
    sp = data["spaces"][0]
    assert sp["projection"] == "PCA" and "PCA fitted on the baseline" in html
    assert sp["n_total"] == [1000, 200, 200, 200] and sp["n_shown"] == [300, 200, 200, 200]
    assert len(sp["points"]["x"]) == 900 and "Sample shown: 900 of 1,600 points" in html
    assert {"brightness", "sharpness", "contrast", "image_width"} <= set(sp["fields"])
    win_pts = [i for i, d in enumerate(sp["points"]["ds"]) if d > 0]
    assert all(sp["points"]["thumb"][i] for i in win_pts)  # every window point carries its thumbnail
    assert {sp["points"]["correct"][i] for i in win_pts} == {"correct", "wrong"}
    # per window: clusters ranked by contribution (shares summing to 1), examples are that window's requests
    darkened = {rid for rid, _ in ids["darkened"]}
    w = next(x for x in sp["windows"] if x["label"].startswith("2024-05-08"))
    contrib = [c["contribution"] for c in w["clusters"]]
    assert contrib == sorted(contrib, reverse=True) and abs(sum(contrib) - 1) < 1e-9
    assert all(ex["request_id"] in darkened for c in w["clusters"] for ex in c["examples"])
    assert w["clusters"][0]["examples"][0]["thumbnail"]
    # the cluster JSD over all rows equals the scorer's statistic for that window (same k-means)
    run = json.loads(next((store / "_monitoring" / "scores" / f"model={MODEL}").glob("run-*.json")).read_text())
    assert abs(w["jsd"] - run["windows"][2]["methods"]["cluster_jsd"]["statistic"]) < 1e-6
    # alert levels shown per method; the explanation names the moved fields
    assert "<span class='critical'>critical</span>" in html
    assert "brightness lower than baseline" in html and "sharpness lower than baseline" in html
    assert any(rid in html for rid, _ in ids["darkened"])


def test_report_without_saved_scores_or_actuals(digit_store, tmp_path, capsys):
    store, _ = digit_store
    out = tmp_path / "r2"
    assert cli_main(["report", "--model", MODEL, "--store", str(store), "--out", str(out), "--projection", "pca"]) == 0
    html = (out / "report.html").read_text()
    assert "No actuals posted" in html and report_data(html)["accuracy"] is None
    assert not (out / "accuracy.png").exists()
    pts = report_data(html)["spaces"][0]["points"]
    assert {c for c, d in zip(pts["correct"], pts["ds"]) if d > 0} == {"no label"}  # windows: no actuals
    assert {c for c, d in zip(pts["correct"], pts["ds"]) if d == 0} == {"correct", "wrong"}  # baseline: labelled


def test_cluster_contributions_sum_to_the_squared_jsd():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
    q[3] = 0.0
    q /= q.sum()
    c = cluster_contributions(p, q)
    assert np.all(c >= 0) and abs(c.sum() - js_distance(p, q) ** 2) < 1e-12


def test_sample_sizes_cap_the_map():
    assert sample_sizes(100, [50, 50]) == (100, [50, 50])
    nb, nw = sample_sizes(10_000, [100_000, 40_000, 30], max_points=6000)
    assert nb == 2000 and nw == [1333, 1333, 30] and nb + sum(nw) <= 6000
