"""The HTML report: self-contained, every section, PNGs beside it."""

from __future__ import annotations

import re

from monitoring.cli import main as cli_main
from workflow_testlib import MODEL


def test_report_sections_and_self_contained(digit_store, labels_csv, tmp_path, capsys):
    store, ids = digit_store
    assert cli_main(["actuals", "--file", str(labels_csv), "--store", str(store)]) == 0
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d"]) == 0
    out = tmp_path / "report"
    assert cli_main(["report", "--model", MODEL, "--store", str(store), "--out", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    html = (out / "report.html").read_text()
    for section in ("Summary", "Drift per method over time", "Accuracy over time", "Metadata drift", "Embedding map", "Explanation"):
        assert f"<h2>{section}</h2>" in html
    assert "no-drift band" in html or "calibrated" in html
    # self-contained: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", html)
    assert "<script" not in html and "<link" not in html
    assert html.count("data:image/png;base64,") == 3
    for name in ("drift_over_time.png", "accuracy.png", "embedding_map.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PCA fitted on the baseline" in html or "UMAP fitted on the baseline" in html
    # the explanation section names the moved field and real request ids
    assert "brightness lower than baseline" in html and "sharpness lower than baseline" in html
    assert any(rid in html for rid, _ in ids["darkened"])


def test_report_without_saved_scores_or_actuals(digit_store, tmp_path, capsys):
    store, _ = digit_store
    out = tmp_path / "r2"
    assert cli_main(["report", "--model", MODEL, "--store", str(store), "--out", str(out)]) == 0  # scores by day itself
    html = (out / "report.html").read_text()
    assert "No actuals posted" in html and html.count("data:image/png;base64,") == 2
    assert not (out / "accuracy.png").exists()
