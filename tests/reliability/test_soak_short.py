"""The short soak (about a minute, every fault once) that `make test` runs; `make soak` runs
the 10-minute one and commits its report (bench/soak.py, docs/reliability.md)."""

from __future__ import annotations

from bench.soak import Soak, markdown


def test_short_soak_every_fault_recovers_and_nothing_unexplained(model_repo, tmp_path):
    soak = Soak(duration_s=60, clients=3, bad_share=0.1, work=tmp_path, kill_models=["resnet_classifier"], sample_s=5)
    rep = soak.run()
    text = markdown(rep)
    assert {f["kind"] for f in rep["faults"]} == {"stub_kill", "sidecar_kill"}
    for fault in rep["faults"]:
        assert fault["recovery_s"] is not None and fault["recovery_s"] > 0, text  # recovery reported
    assert rep["requests"].get("ok", 0) > 0 and rep["requests"].get("expected_bad_input", 0) > 0, text
    assert rep["goals"]["unexplained_errors"] == 0, text
    assert rep["goals"]["records_lost_outside_fault_windows"] == 0, text
    assert rep["sidecar_drained"], text
    for model, r in rep["records"].items():
        assert r["ok_records"] + r["lost_in_fault_window"] == r["ok_responses"], (model, text)
    killed = next(f for f in rep["faults"] if f["kind"] == "stub_kill")
    assert rep["records"]["resnet_classifier"]["watchdog_error_records"] == killed["failed_requests"], text
