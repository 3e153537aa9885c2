"""One scoring engine: `score` on rows in memory, on streamed partition states (in process and on
a real two-worker Dask cluster) gives the same verdicts; over its memory budget it streams; the
typed run serialises to the JSON `score --json` prints and reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis_testlib import (DAY, MODEL, SPAN, assert_same_scores, compact_at_ingest, copy_store, dask_client, image_meta,
                              recent_hours, shifted_sampler, span)
from monitoring.analysis.baseline.store import save_baseline
from monitoring.cli import main as cli_main
from monitoring.analysis.fleet.synthetic import write_day
from monitoring.analysis.scoring.result import ScoreRun
from monitoring.analysis.scoring.runner import estimate_memory_mb, score_model, score_run

D = 16
_sampler = shifted_sampler(D)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-store")
    write_day(root, MODEL, DAY, 4 * 400, _sampler, hours=4, files_per_hour=3, seed=1)
    rng = np.random.default_rng(0)
    X = _sampler(rng, 1500, 0)
    save_baseline(root, MODEL, X, image_meta(rng, 1500), detectors={"n_null": 200})
    return root


def _verdicts(run):
    return [{k: (m["is_drift"], m["p_value"], m["statistic"], m["window_size"]) for k, m in w["methods"].items()}
            for w in run["windows"]]


@pytest.fixture(scope="module")
def rows_run(store):
    return score_model(store, MODEL, engine="rows", **SPAN)


def test_rows_and_states_engines_give_equal_results(store, rows_run):
    states = score_model(store, MODEL, engine="states", **SPAN)
    assert [w["engine"] for w in rows_run["windows"]] == ["rows"] * 4
    assert [w["engine"] for w in states["windows"]] == ["states"] * 4
    assert [w["n"] for w in states["windows"]] == [w["n"] for w in rows_run["windows"]] == [400] * 4
    a, b = _verdicts(rows_run), _verdicts(states)
    assert [set(x) for x in a] == [set(x) for x in b] == [{"cluster_jsd", "centroid", "mmd", "domain_classifier", "metadata"}] * 4
    for wa, wb in zip(a, b):
        for k in wa:
            assert wa[k][0] == wb[k][0], k
            assert wa[k][3] == wb[k][3], k
            if k == "domain_classifier":  # the states keep a feature sample: another, equally valid draw
                continue
            assert wa[k][1] == pytest.approx(wb[k][1], rel=1e-9), k
            assert wa[k][2] == pytest.approx(wb[k][2], rel=1e-9, abs=1e-12), k
            assert wa[k][3] == wb[k][3], k
    assert [w["any_drift"] for w in states["windows"]] == [w["any_drift"] for w in rows_run["windows"]] == [False] * 3 + [True]
    assert [w["page"] for w in states["windows"]] == [w["page"] for w in rows_run["windows"]]
    assert states["windows"][3]["page"] in ("warning", "critical") and states["windows"][0]["page"] == "ok"


def test_raw_states_and_dask_paths_give_equal_results(store, tmp_path):
    """Raw partitions, states made at ingest, states made by a first run, and a Dask cluster: the same numbers."""
    from monitoring.analysis.baseline.store import load_baseline
    from monitoring.analysis.fleet import hourly_windows, score_windows
    from monitoring.analysis.fleet.states import StateCache, baseline_tag, write_partition_states
    from monitoring.ingest.store.backend import open_backend

    root = copy_store(store, tmp_path)
    backend = open_backend(root)
    b = load_baseline(backend, MODEL)
    suite, meta = b.fit_space("image"), b.fit_metadata()
    wins = hourly_windows(DAY, 4)
    raw = score_windows(suite, root, MODEL, wins, metadata=meta)
    # ingest: the sidecar's hook writes each closed hour's state for the latest baseline
    parts = sorted({k.rsplit("/", 1)[0] for k in (e.key for e in backend.list(f"model={MODEL}/"))})
    assert write_partition_states(backend, parts, now_ms=DAY + 10 * 3_600_000) == 4
    assert write_partition_states(backend, parts, now_ms=DAY + 10 * 3_600_000) == 0  # already there
    cache = StateCache(backend, MODEL, "image", baseline_tag(b, "image"))
    from_states = score_windows(suite, root, MODEL, wins, metadata=meta, states=cache)
    assert (cache.hits, cache.misses, cache.writes) == (4, 0, 0)
    assert_same_scores(raw, from_states)
    with dask_client() as client:
        remote = score_windows(suite, root, MODEL, wins, cluster=client, metadata=meta)
    assert_same_scores(raw, remote)
    assert [w.any_drift for w in raw] == [False, False, False, True]


def test_a_state_made_for_an_older_baseline_is_never_used(store, tmp_path):
    from monitoring.analysis.baseline.store import load_baseline
    from monitoring.analysis.drift.mergeable import states_from_bytes
    from monitoring.analysis.fleet import hourly_windows, score_windows
    from monitoring.analysis.fleet.states import StateCache, baseline_tag
    from monitoring.ingest.store.backend import open_backend

    root = copy_store(store, tmp_path, states=True)
    backend = open_backend(root)
    v1 = load_baseline(backend, MODEL)
    first = score_run(root, MODEL, engine="states", **SPAN)
    v1_keys = [e.key for e in backend.list("_monitoring/states/")]
    assert len(v1_keys) == 4 and all(f"baseline={baseline_tag(v1, 'image')}/" in k for k in v1_keys)
    # a newer baseline fitted on drifted data (hour 3's distribution): old states would say "no drift" there
    rng = np.random.default_rng(5)
    X = _sampler(rng, 1500, 3)
    save_baseline(root, MODEL, X, image_meta(rng, 1500), detectors={"n_null": 200})
    v2 = load_baseline(backend, MODEL)
    assert v2.version == v1.version + 1 and baseline_tag(v2, "image") != baseline_tag(v1, "image")
    # a v1 state copied under v2's name is refused too (the tag inside the file is checked)
    cache = StateCache(backend, MODEL, "image", baseline_tag(v2, "image"))
    part = v1_keys[0].split("/image/")[-1] if "/image/" in v1_keys[0] else None
    state, attrs = states_from_bytes(backend.read(v1_keys[0]))
    backend.write(cache.key(attrs["partition"]), backend.read(v1_keys[0]))
    second = score_run(root, MODEL, engine="states", **SPAN)
    raw_v2 = score_windows(v2.fit_space("image"), root, MODEL, hourly_windows(DAY, 4), metadata=v2.fit_metadata())
    for w, r in zip(second.windows, raw_v2):
        assert w.methods["centroid"].p_value == pytest.approx(r.results["centroid"].p_value, rel=1e-9)
        assert w.methods["centroid"].statistic == pytest.approx(r.results["centroid"].statistic, rel=1e-9)
    # against v2 (fitted on drifted data) the clean hours now drift and the drifted one does not
    assert [w.methods["centroid"].is_drift for w in second.windows] == [True, True, True, False]
    assert [w.methods["centroid"].is_drift for w in first.windows] == [False, False, False, True]
    v2_keys = [e.key for e in backend.list(f"_monitoring/states/model={MODEL}/space=image/baseline={baseline_tag(v2, 'image')}/")]
    assert len(v2_keys) == 4
    assert all(states_from_bytes(backend.read(k))[1]["baseline"] == baseline_tag(v2, "image") for k in v2_keys)


def test_a_partition_that_changed_is_read_again(store, tmp_path):
    from monitoring.analysis.fleet.synthetic import records_table
    from monitoring.ingest.store.backend import open_backend
    from monitoring.ingest.store.writer import StoreWriter

    root = copy_store(store, tmp_path, states=True)
    score_run(root, MODEL, engine="states", **SPAN)
    # late rows for hour 0 (a new file in that partition): its state must not be reused as is
    rng = np.random.default_rng(77)
    late = records_table(MODEL, _sampler(rng, 50, 0), DAY + np.sort(rng.integers(0, 3_600_000, 50)), rng, "late")
    StoreWriter(open_backend(root)).write_parts(late, "late")
    again = score_run(root, MODEL, engine="states", **SPAN)
    assert [w.n for w in again.windows] == [450, 400, 400, 400]


def test_dask_engine_equals_in_process(store):
    from monitoring.analysis.baseline.store import load_baseline
    from monitoring.analysis.fleet import hourly_windows, score_windows

    b = load_baseline(store, MODEL)
    suite, meta = b.fit_space("image"), b.fit_metadata()
    local = score_windows(suite, store, MODEL, hourly_windows(DAY, 4), metadata=meta)
    with dask_client() as client:
        remote = score_windows(suite, store, MODEL, hourly_windows(DAY, 4), cluster=client, metadata=meta)
    for x, y in zip(local, remote):
        assert x.n == y.n and set(x.results) == set(y.results) and "metadata" in x.results
        for k, r in x.results.items():
            assert r.is_drift == y.results[k].is_drift
            assert r.p_value == pytest.approx(y.results[k].p_value, rel=1e-9)


def test_over_its_memory_budget_score_streams_instead_of_holding_the_window(store, rows_run, monkeypatch):
    need = estimate_memory_mb(__import__("monitoring.ingest.store.backend", fromlist=["x"]).open_backend(store), MODEL, DAY,
                              DAY + 4 * 3_600_000)
    assert need > 0.5
    budget = 0.2  # MB: less than one hour window's records (about 1/4 of the range)
    import monitoring.analysis.fleet.score as fleet_score
    import monitoring.ingest.store.reader as reader

    def whole_range(*a, **k):  # a spy: the window-holding reader must not be reached
        raise AssertionError("read_records_df called: the window was read into memory")

    held = []
    real_read = fleet_score.read_partition

    def one_partition(*a, **k):
        t = real_read(*a, **k)
        held.append(t.num_rows)
        return t

    monkeypatch.setattr(reader, "read_records_df", whole_range)
    monkeypatch.setattr(fleet_score, "read_partition", one_partition)
    run = score_run(store, MODEL, memory_budget_mb=budget, use_states=False, **SPAN)  # raw partitions (the fixture may hold states)
    monkeypatch.undo()
    assert run.windowing["engine"] == "states"
    assert [w.engine for w in run.windows] == ["states"] * 4
    # one hour partition at a time (3 files of ~133 rows), never the 1600-row range
    assert held and max(held) <= 400 and sum(held) == 1600
    assert [w.any_drift for w in run.windows] == [w["any_drift"] for w in rows_run["windows"]]
    # same budget, whole budget: rows
    big = score_run(store, MODEL, memory_budget_mb=4096, **SPAN)
    assert big.windowing["engine"] == "rows"
    with pytest.raises(ValueError, match="--every-n 100.*memory budget"):
        score_run(store, MODEL, since=DAY, until=DAY + 4 * 3_600_000, every_n=100, memory_budget_mb=budget)
    with pytest.raises(ValueError, match="memory_budget_mb must be > 0, got 0"):
        score_run(store, MODEL, memory_budget_mb=0)


def test_typed_run_round_trips_to_the_json_score_prints(store, rows_run, capsys):
    run = ScoreRun.from_json(rows_run)
    assert run.to_json() == rows_run
    w = run.windows[3]
    assert w.any_drift and w.methods["centroid"].is_drift and w.methods["centroid"].space == "image"
    assert isinstance(w.methods["mmd"].p_value, float) and w.page in ("warning", "critical")
    rc = cli_main(["score", "--store", str(store), "--model", MODEL, "--since", str(DAY), "--until", str(DAY + 4 * 3_600_000),
                   "--every", "1h", "--json", "--no-save", "--no-actuals", "--memory-budget-mb", "0.2"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert [w["engine"] for w in printed["windows"]] == ["states"] * 4
    assert _verdicts(printed)[3].keys() == _verdicts(rows_run)[3].keys()
    assert ScoreRun.from_json(printed).to_json() == printed


def test_sidecar_compaction_writes_states_that_scoring_then_reads(tmp_path):
    from monitoring.analysis.fleet.states import STATES_PREFIX

    root = tmp_path / "store"
    day = recent_hours()  # two closed hours, a little while ago
    write_day(root, MODEL, day, 2 * 300, _sampler, hours=2, files_per_hour=2, seed=4)
    rng = np.random.default_rng(0)
    X = _sampler(rng, 1000, 0)
    save_baseline(root, MODEL, X, image_meta(rng, 1000), detectors={"n_null": 200})
    compact_at_ingest(root, tmp_path / "spool")
    from monitoring.ingest.store.backend import open_backend

    backend = open_backend(root)
    made = [e.key for e in backend.list(STATES_PREFIX)]
    assert len(made) == 2, made
    run = score_run(root, MODEL, engine="states", **span(day, 2))
    assert [w.n for w in run.windows] == [300, 300]
    assert sorted(e.key for e in backend.list(STATES_PREFIX)) == sorted(made)  # read, not rewritten
    assert [k for k in made if "/baseline=v1-" in k] == made


def test_sidecar_states_come_from_the_compacted_rows_without_a_reread(tmp_path):
    """The compaction hook maps the rows it just merged: no partition file is opened for states,
    and the state equals the one a read of the compacted file makes (same fingerprint: valid)."""
    from monitoring.analysis.baseline.store import load_baseline
    import io

    from monitoring.analysis.drift.mergeable import states_to_bytes
    from monitoring.analysis.fleet.score import PartitionTask, map_partition, partition_id
    from monitoring.analysis.fleet.states import StateCache, baseline_tag, fingerprint, partition_files
    from monitoring.ingest.store.backend import LocalBackend

    class Opens(LocalBackend):
        def __init__(self, root):
            super().__init__(root)
            self.opened = []

        def open_input(self, key):
            self.opened.append(key)
            return super().open_input(key)

    root = tmp_path / "store"
    day = recent_hours()
    write_day(root, MODEL, day, 2 * 300, _sampler, hours=2, files_per_hour=3, seed=5)
    rng = np.random.default_rng(0)
    X = _sampler(rng, 1000, 0)
    save_baseline(root, MODEL, X, image_meta(rng, 1000), detectors={"n_null": 200})
    backend = Opens(root)
    compact_at_ingest(backend, tmp_path / "spool")
    compacted = [e.key for e in backend.list(f"model={MODEL}/") if e.key.endswith(".parquet")]
    assert len(compacted) == 2 and all("/compact-" in k for k in compacted)
    # compaction read the 3 small parts of each hour once; nothing read the compacted files back
    assert not [k for k in backend.opened if "/compact-" in k], backend.opened
    b = load_baseline(backend, MODEL)
    cache = StateCache(backend, MODEL, "image", baseline_tag(b, "image"))
    files = partition_files(backend, {k.rsplit("/", 1)[0] for k in compacted})
    suite, meta = b.fit_space("image"), b.fit_metadata()
    for part, fl in files.items():
        got = cache.load(part, fingerprint(fl))
        assert got is not None, part
        task = PartitionTask(partition_id(part), 0, part, tuple(k for k, _ in fl), 0, 2**62)
        _, rows, reread = map_partition(task, suite, backend, MODEL, metadata=meta)
        assert got[0] == rows == 300
        assert set(got[1]) == set(reread) >= {"centroid", "mmd", "domain_classifier", "metadata"}
        # every array of the two states, bit for bit (the .npz bytes differ only in zip timestamps)
        a, c = np.load(io.BytesIO(states_to_bytes(got[1]))), np.load(io.BytesIO(states_to_bytes(reread)))
        assert sorted(a.files) == sorted(c.files) and len(a.files) > 4
        for f in a.files:
            np.testing.assert_array_equal(a[f], c[f], err_msg=f)
    assert (cache.hits, cache.misses) == (2, 0)


def test_save_scores_takes_the_typed_run(store, tmp_path):
    from monitoring.analysis.scoring import ScoreRun, load_latest_scores, save_scores, score_run

    run = score_run(store, MODEL, engine="rows", **span(DAY, 2))
    save_scores(tmp_path, run)
    back = load_latest_scores(tmp_path, MODEL)
    assert back == run.to_json(keep_results=False)
    assert ScoreRun.from_json(back).windows[0].methods["centroid"].p_value == run.windows[0].methods["centroid"].p_value
