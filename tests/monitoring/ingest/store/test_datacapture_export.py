"""Export in SageMaker Data Capture's JSON-lines layout."""

from __future__ import annotations

import json
import re

from capture_testlib import BASE_TS, produce

from monitoring.ingest.sidecar import Sidecar


def test_datacapture_layout(tmp_path):
    spool, store, dc = tmp_path / "spool", tmp_path / "store", tmp_path / "datacapture"
    produce(spool, 90, "m1", ts=lambda i: BASE_TS + i * 60_000)  # 12:00 .. 13:29 UTC
    sc = Sidecar(spool, store, compact_every=0, datacapture=str(dc), datacapture_endpoint="sd-endpoint", datacapture_variant="AllTraffic")
    sc.start()
    while sc.run_once():
        pass
    sc.close()
    files = sorted(p.relative_to(dc).as_posix() for p in dc.rglob("*.jsonl"))
    assert files and all(re.fullmatch(r"sd-endpoint/AllTraffic/2024/05/01/(12|13)/[0-9a-f-]+\.jsonl", f) for f in files), files
    events = [json.loads(line) for f in sorted(dc.rglob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(events) == 90
    in_13h = [json.loads(line) for f in (dc / "sd-endpoint/AllTraffic/2024/05/01/13").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted(e["eventMetadata"]["inferenceId"] for e in in_13h) == [f"m1-req-{i:06d}" for i in range(60, 90)]
    ev = next(e for e in events if e["eventMetadata"]["inferenceId"] == "m1-req-000010")
    assert set(ev) == {"captureData", "eventMetadata", "eventVersion"} and ev["eventVersion"] == "0"
    assert set(ev["eventMetadata"]) == {"eventId", "inferenceId", "inferenceTime"}
    assert ev["eventMetadata"]["inferenceTime"] == "2024-05-01T12:10:00.000Z"
    inp, out = ev["captureData"]["endpointInput"], ev["captureData"]["endpointOutput"]
    assert (inp["mode"], inp["encoding"], inp["observedContentType"]) == ("INPUT", "JSON", "application/json")
    assert (out["mode"], out["encoding"]) == ("OUTPUT", "JSON")
    data_in, data_out = json.loads(inp["data"]), json.loads(out["data"])
    assert data_in["model"] == "m1" and data_in["image_width"] == 224 and data_in["brightness"] == 123.0
    assert data_out["outcome"] == "error" and data_out["error_code"] == "INVALID_ARG" and data_out["pred_label"] == "class_0"
    assert "embedding" not in data_in
    assert len({e["eventMetadata"]["eventId"] for e in events}) == 90
