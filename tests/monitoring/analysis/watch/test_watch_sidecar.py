"""The capture sidecar runs the watch loop by itself once the store has a baseline, and publishes
capture health next to the scores (CloudWatch on a moto server)."""

from __future__ import annotations

import datetime as dt
import threading

from capture_testlib import produce, wait_for

from monitoring.ingest.sidecar import Sidecar
from monitoring.ingest.sidecar.watching import SidecarWatch
from monitoring.ingest.store.backend import LocalBackend
from monitoring.analysis.watch import ledger
from watch_testlib import MODEL, hours_ago, write_baseline, write_hour

NS = "Test/Sidecar"


def _serve(sc: Sidecar) -> threading.Thread:
    sc.start()
    t = threading.Thread(target=sc.serve, daemon=True)
    t.start()
    return t


def _stop(sc: Sidecar, t: threading.Thread) -> None:
    sc.stop()
    t.join(60)
    sc.close()
    assert not t.is_alive()


def test_sidecar_scores_closed_windows_once_a_baseline_exists(tmp_path, moto_aws):
    _, client = moto_aws
    spool, store = tmp_path / "spool", tmp_path / "store"
    clean, dark = hours_ago(3), hours_ago(2)
    write_hour(LocalBackend(store).write, clean, "clean", seed=1)
    write_hour(LocalBackend(store).write, dark, "darkened", seed=2)
    sc = Sidecar(spool, store, compact_every=0, watch=SidecarWatch(every="1h", interval_s=0.3, cloudwatch_namespace=NS))
    t = _serve(sc)
    try:
        produce(spool, 7, model="m1")  # records through the spool: capture health counts them
        wait_for(lambda: len(LocalBackend(store).list("model=m1/")) > 0, 30)
        assert ledger.scored_states(LocalBackend(store), MODEL) == set()  # no baseline yet: nothing scored
        write_baseline(store)
        wait_for(lambda: len(ledger.scored_states(LocalBackend(store), MODEL)) == 2, 120)
    finally:
        _stop(sc, t)
    states = sorted(ledger.scored_states(LocalBackend(store), MODEL), key=lambda s: s.start_ms)
    assert [(s.start_ms, s.records) for s in states] == [(clean, 120), (dark, 120)]
    cw = client("cloudwatch")
    names = {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in cw.list_metrics(Namespace=NS)["Metrics"]}
    assert ("DriftAlertLevel", ()) in names and ("CaptureSpoolBytes", ()) in names
    written = cw.get_metric_statistics(Namespace=NS, MetricName="CaptureRecordsWritten", Dimensions=[{"Name": "Model", "Value": "m1"}],
                                       StartTime=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1),
                                       EndTime=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), Period=3600, Statistics=["Sum"])
    assert sum(p["Sum"] for p in written["Datapoints"]) == 7.0


def test_a_bad_watch_setting_leaves_capture_running(tmp_path, caplog):
    spool, store = tmp_path / "spool", tmp_path / "store"
    sc = Sidecar(spool, store, compact_every=0, watch=SidecarWatch(every="1 fortnight"))
    t = _serve(sc)
    try:
        assert sc._watch_thread is None
        assert any("watch loop off: --every '1 fortnight'" in r.getMessage() for r in caplog.records)
        produce(spool, 3, model="m1")
        wait_for(lambda: len(LocalBackend(store).list("model=m1/")) > 0, 30)
    finally:
        _stop(sc, t)
