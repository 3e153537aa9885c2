"""`python -m bench.demo` end to end at a reduced size: real training, real Triton + sidecar,
real captured records, actuals, scoring per week, report (about 1-3 minutes on 2 cores)."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import TEST_INSTANCES
from workflow_testlib import ROOT

EMBEDDING = ("jsd_drift", "centroid_drift", "mmd_drift", "auc_drift")


def test_demo_reduced(tmp_path, model_repo):
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.demo", "--workdir", str(work), "--per-week", "60", "--epochs", "2",
         "--sd-per-week", "1", "--no-progress", "--instances", str(TEST_INSTANCES)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["requests_failed"] == 0 and summary["requests_sent"] == 244 and summary["labels_posted"] == 240
    w1, w2, w3, w4 = summary["weeks"]
    assert [w["n"] for w in (w1, w2, w3)] == [60, 60, 60]  # every request captured and scored
    # The baseline is digits the model was not trained on: the clean week raises no alarm at all.
    assert sum(w1[k] for k in EMBEDDING) == 0 and not w1["any_drift"], w1
    assert sum(w2[k] for k in EMBEDDING) >= 2 and sum(w3[k] for k in EMBEDDING) >= 3
    assert w3["accuracy"] < w1["accuracy"] - 0.2
    assert w2["top_field"] == "sharpness" and w3["top_field"] == "brightness"
    # label-free accuracy (issue 23): near the realized one on the clean week, lower on the corrupted weeks...
    assert abs(w1["estimated_accuracy"] - w1["accuracy"]) < 0.1, w1
    assert max(w2["estimated_accuracy"], w3["estimated_accuracy"]) < w1["estimated_accuracy"] - 0.1
    # ...and blind to concept shift: week 4 relabels half the digits, inputs unchanged
    assert not w4["any_drift"] and w4["accuracy"] < w1["accuracy"] - 0.3
    assert abs(w4["estimated_accuracy"] - w1["estimated_accuracy"]) < 0.1
    report = Path(summary["report"])
    html = report.read_text()
    assert "Embedding map" in html and "Plotly" in html
    # the demo captures thumbnails (CAPTURE_THUMBNAILS=1): every week's point on the map has its input image
    m = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html, re.S)
    pts = json.loads(m.group(1))["spaces"][0]["points"]
    week_thumbs = [t for t, d in zip(pts["thumb"], pts["ds"]) if d > 0]
    assert len(week_thumbs) == 240 and all(week_thumbs)
    assert Image.open(io.BytesIO(base64.b64decode(week_thumbs[0]))).format == "JPEG"
    assert "week 3 (darkened)" in proc.stdout and "report:" in proc.stdout
    metrics = (work / "drift_metrics.prom").read_text()
    # the gauges show the latest window, week 4 (concept shift): no drift, a high estimate, the accuracy drop
    assert 'drift_is_drift{method="mmd",model="resnet_classifier"} 0.0' in metrics
    assert 'model_estimated_accuracy{bound="estimate",model="resnet_classifier"}' in metrics
    assert f'model_accuracy{{model="resnet_classifier"}} {w4["accuracy"]}' in metrics
    # The sidecar publishes the same gauges from the store on its own /metrics.
    import urllib.request

    from monitoring.ingest.sidecar.service import Sidecar

    sidecar = Sidecar(str(work / "spool-after"), str(summary.get("store", work / "store")), metrics_port=0,
                      metrics_addr="127.0.0.1")
    sidecar.start()
    try:
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{sidecar.metrics_port}/metrics").read().decode()
    finally:
        sidecar.close()
    assert 'drift_is_drift{method="mmd",model="resnet_classifier"} 0.0' in scraped
    assert 'model_estimated_accuracy{bound="high",model="resnet_classifier"}' in scraped
    assert 'model_accuracy{model="resnet_classifier"}' in scraped
