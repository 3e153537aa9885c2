"""`deploy create` wires monitoring by default (capture store under the endpoint's S3 prefix, the
watch loop's settings, CloudWatch alarms + dashboard); `deploy delete` leaves none behind; each
alarm's own definition, evaluated on the data points moto returns, fires on a darkened window
and not on a clean one (moto never moves alarms from data)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from deploy import alarms
from deploy.__main__ import main
from test_deploy_aws import cli, create_args, dist  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "tests" / "monitoring", ROOT / "tests" / "monitoring" / "analysis" / "watch"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def _alarm_names(cw, name: str) -> list[str]:
    return sorted(a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"])


def test_create_wires_capture_watch_alarms_and_dashboard_and_delete_removes_them(cli, clients, bucket, role_arn, dist, moto_url):  # noqa: F811
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    topic = boto3.client("sns", region_name="us-east-1", endpoint_url=moto_url).create_topic(Name="oncall")["TopicArn"]
    assert cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(dist))[0] == 0
    rc, out, err = cli(*create_args("watched", role_arn, bucket, "--alarm-topic-arn", topic))
    assert rc == 0, err
    env = clients["sagemaker"].describe_model(ModelName="watched-model")["PrimaryContainer"]["Environment"]
    assert env["CAPTURE_STORE"] == f"s3://{bucket}/monitoring/watched/store"
    assert env["MONITORING_CLOUDWATCH_NAMESPACE"] == "ModelMonitoring/watched" and env["MONITORING_WATCH_EVERY"] == "1h"
    assert _alarm_names(cw, "watched") == sorted(f"watched-{s}" for s in alarms.ALARM_SUFFIXES)
    drift = cw.describe_alarms(AlarmNames=["watched-drift-critical"])["MetricAlarms"][0]
    assert (drift["MetricName"], drift["Statistic"], drift["Threshold"], drift["Period"], drift["AlarmActions"]) == \
        ("DriftAlertLevel", "Maximum", 2.0, 3600, [topic])
    body = json.loads(cw.get_dashboard(DashboardName="watched-monitoring")["DashboardBody"])
    assert [w["properties"]["metrics"][0][1] for w in body["widgets"] if w["type"] == "metric"][0] == "DriftAlertLevel"

    assert cli("delete", "--name", "watched")[0] == 0
    assert _alarm_names(cw, "watched") == []
    assert cw.list_dashboards(DashboardNamePrefix="watched")["DashboardEntries"] == []


def test_no_capture_turns_it_all_off_and_bad_settings_fail_before_aws(cli, clients, bucket, role_arn, dist, moto_url):  # noqa: F811
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    assert cli("upload", "--bucket", bucket, "--prefix", "mme", "--dist", str(dist))[0] == 0
    assert cli(*create_args("plain", role_arn, bucket, "--no-capture"))[0] == 0
    env = clients["sagemaker"].describe_model(ModelName="plain-model")["PrimaryContainer"]["Environment"]
    assert "CAPTURE_STORE" not in env and "MONITORING_CLOUDWATCH_NAMESPACE" not in env
    assert _alarm_names(cw, "plain") == []
    rc, _, err = cli(*create_args("badwin", role_arn, bucket, "--watch-every", "90x"))
    assert rc == 1 and "MONITORING_WATCH_EVERY='90x'" in err
    with pytest.raises(Exception, match="multiple of 60"):
        alarms.alarm_definitions("x", "ns", 90)
    assert "badwin-model" not in [m["ModelName"] for m in clients["sagemaker"].list_models()["Models"]]
    assert cli("delete", "--name", "plain")[0] == 0


def test_metric_names_match_what_the_watch_loop_publishes():
    from monitoring.analysis.watch import metrics

    published = {v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str) and v[:1].isupper()}
    assert set(alarms.METRIC_NAMES) <= published


def test_evaluate_follows_the_definition():
    a = {"Period": 60, "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Statistic": "Maximum", "Threshold": 2.0,
         "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching"}
    st = alarms.evaluate(a, [(0, 0.0), (61_000, 1.0), (62_000, 2.0)], 0, 180_000)
    assert st == {0: "OK", 60_000: "ALARM", 120_000: "OK"}
    stale = dict(a, Statistic="SampleCount", Threshold=1.0, ComparisonOperator="LessThanThreshold", EvaluationPeriods=3,
                 DatapointsToAlarm=3, TreatMissingData="breaching")
    st = alarms.evaluate(stale, [(0, 1.0)], 0, 240_000)
    assert st == {0: "OK", 60_000: "OK", 120_000: "OK", 180_000: "ALARM"}


def test_created_drift_alarm_fires_on_the_darkened_window_not_the_clean_one(moto_url, tmp_path, monkeypatch):
    """The watch loop scores a clean hour and a darkened one and publishes to moto; every created
    alarm is evaluated on what get_metric_data returns for its own metric, statistic and period."""
    import boto3

    from monitoring.ingest.store.backend import LocalBackend
    from monitoring.analysis.watch.cloudwatch import CloudWatchPublisher
    from monitoring.analysis.watch.loop import WatchSettings, Watcher
    from watch_testlib import HOUR, hours_ago, write_baseline, write_hour

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    store = tmp_path / "store"
    clean, dark = hours_ago(3), hours_ago(2)
    write_hour(LocalBackend(store).write, clean, "clean", seed=1)
    write_hour(LocalBackend(store).write, dark, "darkened", seed=2)
    write_baseline(store)
    ns = "ModelMonitoring/eval-test"
    rep = Watcher(LocalBackend(store), WatchSettings(every="1h"), [CloudWatchPublisher(ns).publish]).pass_once()
    assert rep.errors == [] and len(rep.scored["digits_clf"]) == 2

    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    alarms.create(cw, "eval-test", ns, 3600, "us-east-1", log=lambda _m: None)
    defs = cw.describe_alarms(AlarmNamePrefix="eval-test-")["MetricAlarms"]
    assert len(defs) == 4
    states = alarms.evaluate_created(cw, "eval-test", clean, hours_ago(-1))
    assert states["drift-critical"][clean] == "OK" and states["drift-critical"][dark] == "ALARM"
    assert set(states["accuracy-low"].values()) == {"OK"}  # no actuals: never alarms on missing accuracy
    assert states["scores-stale"][hours_ago(0)] == "OK"  # the pass's heartbeat
    alarms.delete(cw, "eval-test", log=lambda _m: None)
