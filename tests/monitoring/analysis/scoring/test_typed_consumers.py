"""The score table, the webhook payload and the watch metrics read the typed run (issue #28): they
give the same output for a ScoreRun as for its saved JSON, and read the verdicts from its fields."""

from __future__ import annotations

import dataclasses

from monitoring.analysis.alerts.webhook import alarm_payload
from monitoring.analysis.scoring.cli import format_table
from monitoring.analysis.scoring.result import MethodScore, ScoreRun, WindowScore, as_run
from monitoring.analysis.watch.metrics import run_points, window_alert_level

H = 3_600_000


def _m(method, p, drift, space="image", stat=0.5):
    return MethodScore(method, space, stat, 0.4, p, drift, 300)


def _run() -> ScoreRun:
    quiet = {"cluster_jsd": _m("cluster_jsd", 0.4, False), "centroid": _m("centroid", 0.3, False),
             "mmd": _m("mmd", 0.5, False), "metadata": _m("metadata", 0.9, False, "metadata")}
    loud = {"cluster_jsd": _m("cluster_jsd", 0.001, True, stat=0.9), "centroid": _m("centroid", 0.0005, True, stat=1.7),
            "mmd": _m("mmd", 0.2, False), "metadata": _m("metadata", 0.9, False, "metadata")}
    details = {"primary_space": "image", "accuracy": 0.91, "n_labeled": 40,
               "explanation": {"summary": "embedding drift (cluster_jsd, centroid)", "top_field": "brightness"},
               "spaces": {"image": {"n": 300, "scored": True, "any_drift": True, "drifted": ["cluster_jsd", "centroid"],
                                    "methods": {k: m.to_json() for k, m in loud.items() if k != "metadata"}}}}
    wins = [WindowScore("h0", 0, H, 300, True, False, [], quiet, details=dict(details, explanation={"summary": "no embedding drift"})),
            WindowScore("h1", H, 2 * H, 300, True, True, ["image:cluster_jsd", "image:centroid"], loud, details=details),
            WindowScore("h2", 2 * H, 3 * H, 3, False, details={"skipped_reason": "3 records (< --min-window 30)"})]
    return ScoreRun("resnet_classifier", "/tmp/x", "2026-12-03T00:00:00+00:00", 1, {"version": 2, "n": 1000, "dim": 2048},
                    {"alpha": 0.01}, {"kind": "time"}, True, wins)


def test_the_json_of_a_run_reads_back_into_the_same_typed_run():
    run = _run()
    assert as_run(run) is run
    assert as_run(run.to_json()).to_json() == run.to_json()


def test_table_payload_and_metrics_are_the_same_from_the_typed_run_and_its_json():
    run = _run()
    assert format_table(run) == format_table(run.to_json())
    assert alarm_payload(run) == alarm_payload(run.to_json())
    assert [dataclasses.astuple(p) for p in run_points(run).points] == [dataclasses.astuple(p) for p in run_points(run.to_json()).points]


def test_they_read_the_verdicts_from_the_typed_fields():
    run = _run()
    table = format_table(run)
    assert "DRIFT: image:cluster_jsd,image:centroid" in table and "not scored: 3 records" in table
    payload = alarm_payload(run)
    assert payload["alarmed_windows"] == 1 and payload["windows_scored"] == 2 and payload["level"] == "critical"
    assert payload["windows"][0]["p_values"]["centroid"] == 0.0005 and payload["windows"][0]["accuracy"] == 0.91
    assert window_alert_level(run.windows[1]) == 2 and window_alert_level(run.windows[0]) == 0
    # a verdict changed on the typed run shows in every consumer
    run.windows[1].any_drift = False
    assert alarm_payload(run) is None
    assert "DRIFT" not in format_table(run).split("* = above")[0]
