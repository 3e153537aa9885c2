"""`python -m monitoring watch`: closed windows scored once, late records re-score their window,
N watchers share the work through claims in the store, results land in CloudWatch (moto)."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from monitoring.cli import main as cli_main
from monitoring.ingest.store.backend import LocalBackend, S3Backend
from monitoring.analysis.watch import lease, ledger
from monitoring.analysis.watch.cloudwatch import CloudWatchPublisher
from monitoring.analysis.watch.loop import WatchSettings, Watcher
from monitoring.analysis.watch.metrics import window_alert_level
from watch_testlib import HOUR, MODEL, hours_ago, write_baseline, write_hour

NS = "Test/Watch"


def _local_put(store):
    b = LocalBackend(store)
    return b.write


def _stats(cw, name: str, start_ms: int, end_ms: int, dims=(), stat="Maximum") -> dict[int, float]:
    r = cw.get_metric_statistics(Namespace=NS, MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in dims],
                                 StartTime=dt.datetime.fromtimestamp(start_ms / 1000, dt.timezone.utc),
                                 EndTime=dt.datetime.fromtimestamp(end_ms / 1000, dt.timezone.utc), Period=3600, Statistics=[stat])
    return {int(p["Timestamp"].timestamp() * 1000): p[stat] for p in r["Datapoints"]}


@pytest.fixture
def recent_store(tmp_path):
    store = tmp_path / "store"
    clean, dark = hours_ago(3), hours_ago(2)
    put = _local_put(store)
    write_hour(put, clean, "clean", seed=1)
    write_hour(put, dark, "darkened", seed=2)
    write_baseline(store)
    return store, clean, dark


def test_watch_once_scores_closed_windows_publishes_to_cloudwatch_and_remembers(recent_store, moto_aws, capsys):
    store, clean, dark = recent_store
    _, client = moto_aws
    argv = ["watch", "--store", str(store), "--model", MODEL, "--every", "1h", "--once", "--cloudwatch", NS, "--json"]
    assert cli_main(argv) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = {w["start"]: w for w in rep["scored"][MODEL]}
    assert len(got) == 2 and rep["errors"] == []
    levels = {w["start"]: w["alert_level"] for w in rep["scored"][MODEL]}
    iso = lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")  # noqa: E731
    assert levels[iso(clean)] == 0 and levels[iso(dark)] == 2

    cw = client("cloudwatch")
    roll = _stats(cw, "DriftAlertLevel", clean, dark + HOUR)
    assert roll == {clean: 0.0, dark: 2.0}
    per_model = _stats(cw, "WindowSize", clean, dark + HOUR, dims=[("Model", MODEL)])
    assert per_model == {clean: 120.0, dark: 120.0}
    dc = _stats(cw, "DriftPValue", clean, dark + HOUR, dims=[("Model", MODEL), ("Space", "image"), ("Method", "domain_classifier")])
    assert dc[dark] <= 0.001 < dc[clean]
    assert sum(_stats(cw, "WatchPasses", clean, hours_ago(-1), dims=[("Model", MODEL)], stat="Sum").values()) == 1.0
    # the roll-ups the alarms watch exist with no dimension at all (moto's statistics match dimension subsets)
    assert {"DriftAlertLevel", "WatchPasses", "WindowSize"} <= {m["MetricName"] for m in cw.list_metrics(Namespace=NS)["Metrics"]
                                                               if m["Dimensions"] == []}

    # a rerun scores nothing twice
    runs_before = len(LocalBackend(store).list("_monitoring/scores/"))
    assert cli_main(argv) == 0
    rep2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep2["scored"] == {} and len(LocalBackend(store).list("_monitoring/scores/")) == runs_before

    # records arriving late re-score their window, and only that one
    write_hour(_local_put(store), clean, "clean", n=40, seed=7, prefix="late")
    assert cli_main(argv) == 0
    rep3 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(w["start"], w["records"]) for w in rep3["scored"][MODEL]] == [(iso(clean), 160)]
    assert _stats(cw, "WindowSize", clean, clean + HOUR, dims=[("Model", MODEL)], stat="Sum") == {clean: 280.0}


def test_open_window_is_not_scored_until_it_closes(tmp_path):
    store = tmp_path / "store"
    now = hours_ago(0) + 30 * 60_000  # half past the current hour
    write_hour(_local_put(store), hours_ago(0, now), "clean", n=40, seed=3)
    write_baseline(store)
    w = Watcher(LocalBackend(store), WatchSettings(every="1h", min_window=10))
    assert w.pass_once(now_ms=now).scored == {}
    rep = w.pass_once(now_ms=now + HOUR)
    assert [x["records"] for x in rep.scored[MODEL]] == [40]


def test_n_watchers_score_each_window_once_through_s3_claims(moto_aws):
    url, client = moto_aws
    client("s3").create_bucket(Bucket="watch-store")
    backend = S3Backend("s3://watch-store/ep1/store")
    write_hour(backend.write, hours_ago(3), "clean", seed=1)
    write_hour(backend.write, hours_ago(2), "darkened", seed=2)
    write_baseline(backend)
    a, b = (Watcher(S3Backend("s3://watch-store/ep1/store"), WatchSettings(every="1h"), owner=o) for o in ("host-a", "host-b"))
    due = a.due(MODEL, hours_ago(0))
    assert len(due) == 2
    # host-b claims the darkened window first (as if it started a moment earlier), then both pass
    assert lease.claim(b.backend, MODEL, due[1], "host-b")
    ra = a.pass_once()
    assert [x["start"] for x in ra.scored[MODEL]] == [ra.scored[MODEL][0]["start"]] and ra.claimed_elsewhere == 1
    rb = b.pass_once()
    assert len(rb.scored[MODEL]) == 1 and rb.claimed_elsewhere == 0
    assert ledger.scored_states(backend, MODEL) == set(due)
    assert a.pass_once().scored == {} and b.pass_once().scored == {}


def test_claims_are_create_if_absent_and_expired_ones_are_taken_over(moto_aws, tmp_path):
    url, client = moto_aws
    client("s3").create_bucket(Bucket="claims")
    for backend in (S3Backend("s3://claims/x"), LocalBackend(tmp_path / "store")):
        assert lease.put_if_absent(backend, "k/one.json", b"1")
        assert not lease.put_if_absent(backend, "k/one.json", b"2")
        assert backend.read("k/one.json") == b"1"
        s = ledger.WindowState(0, HOUR, 5)
        assert lease.claim(backend, MODEL, s, "a", ttl_s=60, now_ms=1_000)
        assert lease.claim(backend, MODEL, s, "a", ttl_s=60, now_ms=2_000)       # its own claim
        assert not lease.claim(backend, MODEL, s, "b", ttl_s=60, now_ms=30_000)  # live claim of a
        assert lease.claim(backend, MODEL, s, "b", ttl_s=60, now_ms=62_000)      # a's expired: b takes over
        assert not lease.claim(backend, MODEL, s, "c", ttl_s=60, now_ms=63_000)
        assert sorted(e.key.rsplit(".", 2)[-2] for e in backend.list(lease.claims_prefix(MODEL))) == ["g0", "g1"]


def test_emf_lines_are_bare_cloudwatch_json():
    from monitoring.analysis.watch.metrics import Batch

    buf = io.StringIO()
    pub = CloudWatchPublisher("Endpoints/ep1", mode="emf", stream=buf)
    b = Batch()
    b.add("DriftAlertLevel", 2, 1_700_000_000_000, {"Model": "m"}, rollups=[()])
    assert pub.publish(b) == 2
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert events[0]["_aws"]["CloudWatchMetrics"] == [{"Namespace": "Endpoints/ep1", "Dimensions": [["Model"]],
                                                       "Metrics": [{"Name": "DriftAlertLevel", "Unit": "None"}]}]
    assert events[0]["DriftAlertLevel"] == 2.0 and events[0]["Model"] == "m" and events[0]["_aws"]["Timestamp"] == 1_700_000_000_000
    assert events[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="--every '1x'"):
        WatchSettings(every="1x")
    with pytest.raises(ValueError, match="--cloudwatch 'AWS/SageMaker'"):
        CloudWatchPublisher("AWS/SageMaker")
    with pytest.raises(ValueError, match="--lookback 0"):
        WatchSettings(lookback_windows=0)


def test_window_alert_level_is_the_prometheus_rule():
    p = lambda v: {"p_value": v, "is_drift": v <= 0.01}  # noqa: E731
    assert window_alert_level({"methods": {"mmd": p(0.005), "centroid": p(0.5)}}) == 0           # one method alone
    assert window_alert_level({"methods": {"mmd": p(0.005), "centroid": p(0.004)}}) == 1
    assert window_alert_level({"methods": {"mmd": p(0.005), "domain_classifier": p(1e-5)}}) == 2
    assert window_alert_level({"methods": {"metadata": p(1e-4)}}) == 2


def test_service_specific_endpoint_setting_wins(moto_aws, monkeypatch):
    """AWS_ENDPOINT_URL_CLOUDWATCH (botocore's per-service setting) is honoured by the pinned boto3."""
    from monitoring.analysis.watch.metrics import Batch

    url, client = moto_aws
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: only the specific one can work
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", url)
    b = Batch()
    b.add("WatchPasses", 1, hours_ago(0))
    assert CloudWatchPublisher("Test/Endpoint").publish(b) == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    assert [m["MetricName"] for m in client("cloudwatch").list_metrics(Namespace="Test/Endpoint")["Metrics"]] == ["WatchPasses"]
