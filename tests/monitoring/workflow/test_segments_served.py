"""Segments end to end (issue 23): two tenants send segment.tenant through tritonserver, one of them
drifts, and ``score --by tenant`` flags that tenant alone while the whole-traffic verdict is weaker."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from monitoring.analysis.baseline.sources import from_images
from monitoring.analysis.baseline.store import save_baseline
from monitoring.ingest.store import read_records_df
from serving.launch.client import infer
from serving.launch.server import ROOT, TritonProcess, server_env
from tests.conftest import TEST_INSTANCES, free_port, tensor

MODEL = "resnet_classifier"
N_BASELINE, N_CLEAN, N_DRIFTED = 160, 120, 50


def crops(n: int, seed: int, scale: float = 1.0, size: int = 64) -> list[bytes]:
    """Colour crops of scikit-learn's two sample photographs; ``scale`` < 1 darkens them."""
    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        crop = (p[y:y + size, x:x + size].astype(np.float32) * scale).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def served(model_repo, checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments")
    spool, store = tmp / "spool", tmp / "store"
    base_dir = tmp / "baseline"
    base_dir.mkdir()
    for i, data in enumerate(crops(N_BASELINE, seed=0)):
        (base_dir / f"b{i:03d}.png").write_bytes(data)
    X, meta, info = from_images(base_dir, MODEL, checkpoint(MODEL), batch_size=16)
    save_baseline(store, MODEL, X, meta, source=info, embedding_source=info["embedding_source"])
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp / "tritonserver.log", extra_env={"CAPTURE_SPOOL_DIR": str(spool)},
                           models=(MODEL,), instances=TEST_INSTANCES).start(wait_s=600)
    refused = None
    try:
        jobs = [("a", d) for d in crops(N_CLEAN, seed=1)] + [("b", d) for d in crops(N_DRIFTED, seed=2, scale=0.35)]
        np.random.default_rng(3).shuffle(jobs)  # both tenants interleaved in one window
        for i, (tenant, data) in enumerate(jobs):
            infer(MODEL, {"image": tensor(data)}, url=server.grpc_url if i % 4 == 3 else server.http_url,
                  protocol="grpc" if i % 4 == 3 else "http", request_id=f"r{i:04d}", segments={"tenant": tenant})
        refused = bad_segment_error(server.http_url, crops(1, seed=9)[0])
        # data quality: one upload the server cannot decode, one grayscale PNG (mode L as sent)
        with pytest.raises(Exception, match="cannot decode image"):
            infer(MODEL, {"image": tensor(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)}, url=server.http_url, request_id="corrupt")
        gray = io.BytesIO()
        Image.open(io.BytesIO(crops(1, seed=8)[0])).convert("L").save(gray, format="PNG")
        infer(MODEL, {"image": tensor(gray.getvalue())}, url=server.http_url, request_id="gray")
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    subprocess.run([sys.executable, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store),
                    "--once", "--metrics-port", "-1"], check=True, cwd=ROOT, env=server_env(), timeout=600)
    return store, refused


def bad_segment_error(url: str, data: bytes) -> str:
    """A value past the length bound, sent around the client's own check: the server must refuse it."""
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(url)
    t = th.InferInput("image", [1, 1], "BYTES")
    t.set_data_from_numpy(tensor(data))
    try:
        client.infer(MODEL, [t], parameters={"segment.tenant": "x" * 65})
    except InferenceServerException as exc:
        return exc.message()
    finally:
        client.close()
    return "accepted"


def test_segment_attributes_are_captured(served):
    store, refused = served
    df = read_records_df(str(store), MODEL)
    ok = df[df["outcome"] == "ok"]
    # the refused request is recorded as the error its caller got, without attributes
    bad = df[(df["outcome"] == "error") & df["error_message"].fillna("").str.contains("segment.tenant")]
    assert len(bad) == 1 and bad["error_code"].iloc[0] == "INVALID_ARG" and bad["segment_attrs"].iloc[0] is None
    ok = ok[ok["request_id"] != "gray"]
    assert set(ok["image_mode"]) == {"RGB"} and set(ok["image_format"]) == {"PNG"}
    tenants = ok["segment_attrs"].map(lambda v: json.loads(v)["tenant"])
    assert tenants.value_counts().to_dict() == {"a": N_CLEAN, "b": N_DRIFTED}
    assert "segment.tenant" in refused and "65 characters is outside 1..64" in refused
    # top-k probabilities travel with every classifier record (k = 5 from config.pbtxt)
    assert all(len(v) == 5 for v in ok["pred_top_k_probs"])
    assert all(json.loads(v)[0] == p for v, p in zip(ok["pred_top_k_labels"], ok["pred_label"]))


def test_score_by_flags_the_drifted_segment_alone(served, capsys):
    from monitoring.cli import main as cli_main

    store, _ = served
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--by", "tenant", "--json", "--no-save"]) == 0
    run = json.loads(capsys.readouterr().out)
    (w,) = run["windows"]
    seg = w["segments"]
    assert seg["by"] == "tenant" and seg["correction"]["method"] == "bonferroni" and seg["correction"]["m"] == 2
    assert seg["correction"]["alpha_per_segment"] == pytest.approx(run["detectors"]["alpha"] / 2)
    by_value = {s["value"]: s for s in seg["segments"]}
    # the refused, the corrupt and the gray request (no attributes) are a segment too small to test
    assert {v for v, s in by_value.items() if s["scored"]} == {"a", "b"} and by_value["(none)"]["n_records"] == 3
    assert by_value["a"]["n"] == N_CLEAN and by_value["b"]["n"] == N_DRIFTED
    assert seg["drifted_segments"] == ["b"], seg
    assert not by_value["a"]["any_drift"] and by_value["b"]["any_drift"]
    # the whole traffic (70 % clean) is quiet or weaker than the drifted tenant on every embedding method
    whole = w["methods"]
    for method, r in by_value["b"]["methods"].items():
        if method in whole and method in ("centroid", "domain_classifier", "cluster_jsd"):
            assert whole[method]["statistic"] < r["statistic"], method
    assert "segment tenant=b moved" in w["explanation"]["summary"]
    # the window's data-quality view: the two refused requests by code, the decode failure, the modes as sent
    q = w["data_quality"]
    n = N_CLEAN + N_DRIFTED + 3
    assert q["n_records"] == n and q["errors_by_code"] == {"INVALID_ARG": 2} and q["decode_failures"] == 1
    assert q["image_modes"] == {"RGB": pytest.approx((n - 3) / (n - 2), abs=1e-5), "L": pytest.approx(1 / (n - 2), abs=1e-5)}
    assert q["image_sizes"]["top"] == {"64x64": n - 2}
    # the table names the segments too
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--by", "tenant", "--no-save"]) == 0
    table = capsys.readouterr().out
    assert "  tenant=b" in table and "DRIFT" in table.split("  tenant=b", 1)[1].splitlines()[0]


def test_score_by_refuses_a_bad_field_name(served, capsys):
    from monitoring.cli import main as cli_main

    store, _ = served
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--by", "Tenant!", "--no-save"]) == 2
    assert "--by 'Tenant!'" in capsys.readouterr().err


def test_report_and_metrics_show_the_segment(served, tmp_path, capsys):
    from prometheus_client import CollectorRegistry

    from monitoring.analysis.alerts import export_scores
    from monitoring.cli import main as cli_main

    store, _ = served
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--by", "tenant"]) == 0
    assert cli_main(["report", "--model", MODEL, "--store", str(store), "--out", str(tmp_path / "r"), "--projection", "pca"]) == 0
    capsys.readouterr()
    page = (tmp_path / "r" / "report.html").read_text()
    section = page.split("<h2>Segments</h2>", 1)[1]
    assert "tenant=b" in section and "DRIFT" in section.split("tenant=b", 1)[1].split("</tr>", 1)[0]
    reg = CollectorRegistry()
    export_scores(reg, store)
    assert reg.get_sample_value("drift_segment_any", {"model": MODEL, "by": "tenant", "segment": "b"}) == 1.0
    assert reg.get_sample_value("drift_segment_any", {"model": MODEL, "by": "tenant", "segment": "a"}) == 0.0
    assert reg.get_sample_value("drift_segment_window_size", {"model": MODEL, "by": "tenant", "segment": "a"}) == N_CLEAN
    n = N_CLEAN + N_DRIFTED + 3
    assert reg.get_sample_value("data_quality_error_share", {"model": MODEL, "kind": "decode"}) == pytest.approx(1 / n, abs=1e-5)
    assert reg.get_sample_value("data_quality_image_mode_share", {"model": MODEL, "mode": "L"}) == pytest.approx(1 / (n - 2), abs=1e-5)
    assert "<h2>Data quality</h2>" in page
