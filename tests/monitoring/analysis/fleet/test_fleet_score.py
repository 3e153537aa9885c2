"""Fleet scoring: hourly windows from partition states equal the in-memory runner's scores,
in process and on a real two-worker Dask cluster; listing is pruned to the windows' days."""

from __future__ import annotations

import numpy as np
import pytest

from analysis_testlib import DAY, dask_client, image_meta, shifted_sampler
from monitoring.analysis.drift import DriftSuite
from monitoring.analysis.fleet import hourly_windows, score_windows
from monitoring.analysis.fleet.synthetic import write_day
from monitoring.ingest.store import read_records_df
from capture_testlib import CountingBackend
from monitoring.ingest.store.reader import list_files, partition_of, read_partition

D = 8
_sampler = shifted_sampler(D)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet-store")
    write_day(root, "resnet_classifier", DAY, 4 * 300, _sampler, hours=4, files_per_hour=3, seed=1)
    # another day and model that the pruned listing must never open
    write_day(root, "resnet_classifier", DAY + 5 * 86_400_000, 100, _sampler, hours=1, seed=2)
    write_day(root, "other_model", DAY, 100, _sampler, hours=1, seed=3)
    return root


@pytest.fixture(scope="module")
def suite():
    rng = np.random.default_rng(0)
    X = _sampler(rng, 2000, 0)
    return DriftSuite(n_null=200).fit(X, image_meta(rng, 2000))


def _in_memory(suite, store, since, until):
    df = read_records_df(store, "resnet_classifier", since, until, columns=["embedding", "brightness", "contrast", "outcome"])
    X = np.stack(df["embedding"].to_numpy()).astype(np.float32)
    return suite.score(X, df[["brightness", "contrast"]])


def _assert_same(fleet, store, suite):
    assert [w.n for w in fleet] == [300, 300, 300, 300]
    for w in fleet:
        ref = _in_memory(suite, store, w.since_ms, w.until_ms)
        assert set(w.results) == set(ref)
        for name, r in ref.items():
            m = w.results[name]
            if name == "domain_classifier":  # states keep a feature sample: another, equally valid draw
                assert m.is_drift == r.is_drift and m.window_size == r.window_size
                continue
            assert m.statistic == pytest.approx(r.statistic, rel=1e-9, abs=1e-12), name
            assert m.p_value == pytest.approx(r.p_value, rel=1e-9), name
            assert m.is_drift == r.is_drift, name
    assert [w.any_drift for w in fleet] == [False, False, False, True]


@pytest.mark.parametrize("slice_rows", [8192, 37])
def test_in_process_fleet_scores_equal_in_memory_scores(store, suite, slice_rows):
    fleet = score_windows(suite, store, "resnet_classifier", hourly_windows(DAY, 4), slice_rows=slice_rows)
    assert [w.partitions for w in fleet] == [1, 1, 1, 1]
    _assert_same(fleet, store, suite)


def test_two_worker_dask_cluster_equals_in_process(store, suite):
    windows = hourly_windows(DAY, 4)
    local = score_windows(suite, store, "resnet_classifier", windows)
    with dask_client() as client:
        assert len(client.scheduler_info()["workers"]) == 2
        remote = score_windows(suite, store, "resnet_classifier", windows, cluster=client)
    for a, b in zip(local, remote):
        assert (a.since_ms, a.n) == (b.since_ms, b.n)
        for name in a.results:
            assert b.results[name].statistic == pytest.approx(a.results[name].statistic, rel=1e-9, abs=1e-12)
            assert b.results[name].is_drift == a.results[name].is_drift
    _assert_same(remote, store, suite)


def test_listing_and_reads_are_pruned_to_the_window(store):
    b = CountingBackend(store)
    since, until = hourly_windows(DAY, 4)[1]
    keys = list_files(b, "resnet_classifier", since, until)
    assert b.prefixes == ["model=resnet_classifier/date=2026-11-26/"]
    assert keys and all("/hour=01/" in k for k in keys)
    assert {partition_of(k) for k in keys} == {"model=resnet_classifier/date=2026-11-26/hour=01"}
    table = read_partition(b, "resnet_classifier", keys, since, until, columns=["ts_ms", "brightness"])  # a worker's read
    assert table.column_names == ["ts_ms", "brightness"] and table.num_rows == 300
    assert table["ts_ms"].to_numpy().min() >= since and table["ts_ms"].to_numpy().max() < until


def test_cli_scores_a_day_against_the_stored_baseline(store, tmp_path, capsys):
    import json

    from monitoring.analysis.baseline.store import save_baseline
    from monitoring.analysis.fleet.__main__ import main

    rng = np.random.default_rng(4)
    X = _sampler(rng, 1500, 0)
    save_baseline(store, "resnet_classifier", X, image_meta(rng, 1500))
    out = tmp_path / "day.json"
    assert main(["--store", str(store), "--model", "resnet_classifier", "--day", "2026-11-26", "--hours", "4",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [w["n"] for w in doc["windows"]] == [300, 300, 300, 300]
    assert [w["any_drift"] for w in doc["windows"]] == [False, False, False, True]
    assert doc["windows"][0]["label"] == "2026-11-26T00:00Z"
    assert set(doc["windows"][3]["methods"]) >= {"cluster_jsd", "centroid", "mmd", "domain_classifier"}
