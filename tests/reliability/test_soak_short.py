"""The short soak that `make test` runs: two models, every fault of the matrix once, one after
the other; `make soak` runs the 10-minute one on all five models and commits its report
(bench/soak.py, docs/reliability.md)."""

from __future__ import annotations

from bench.soak import FAULT_ORDER, Soak, markdown


def test_short_soak_every_fault_recovers_nothing_unexplained_nothing_lost(model_repo, tmp_path):
    soak = Soak(duration_s=60, clients=3, bad_share=0.1, work=tmp_path, kill_models=["resnet_classifier"],
                models=("resnet_classifier", "sd_img2img"), evict_model="sd_img2img", outage_s=4.0,
                spool_max_mb=0.5, sample_s=5)
    rep = soak.run()
    text = markdown(rep)
    assert [f["kind"] for f in rep["faults"]] == list(FAULT_ORDER), text  # each fault once, in order
    for fault in rep["faults"]:
        assert fault["recovery_s"] is not None and fault["recovery_s"] > 0, (fault, text)  # recovery reported
    assert rep["requests"].get("ok", 0) > 0 and rep["requests"].get("expected_bad_input", 0) > 0, text
    assert rep["goals"]["unexplained_errors"] == 0, text
    assert rep["goals"]["records_lost_outside_fault_windows"] == 0, text
    assert rep["goals"]["duplicate_records"] == 0, text
    assert rep["sidecar_drained"], text
    for model, r in rep["records"].items():
        assert r["ok_records"] + r["lost_unflushed_at_kill"] + r["lost_dropped_counted"] == r["ok_responses"], (model, text)
    faults = {f["kind"]: f for f in rep["faults"]}
    # The spool really filled: capture dropped records and Triton counted them.
    assert sum(faults["spool_full"]["records_dropped"].values()) > 0, text
    # The S3 outage was seen and caught up by the sidecar, not just waited out.
    assert faults["store_unreachable"]["caught_up_after_back_s"] >= 0, text
    # Every request the dead stub failed is an error record in the store.
    assert rep["records"]["resnet_classifier"]["watchdog_error_records"] == faults["stub_kill"]["failed_requests"], text
    # The killed server is gone for good (-9) and its replacement served until the end.
    assert rep["tritonserver_exit_codes"][0] == -9, text
