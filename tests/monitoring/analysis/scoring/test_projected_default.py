"""The seeded 128-d projection is the default representation for a wide embedding space
(issue #28): ``monitoring score`` (rows and states engines), ``monitoring.analysis.fleet`` and the sidecar's
states at ingest all score it; raw partitions, stored states and a Dask cluster give the same
numbers; ``--full-width`` keeps the old path; a state made for one representation (or baseline)
is never used for another."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis_testlib import (DAY, MODEL, SPAN, assert_same_scores, compact_at_ingest, copy_store, dask_client, image_meta,
                              recent_hours, reweighted_sampler, span, write_hours)
from monitoring.analysis.baseline.store import load_baseline, save_baseline
from monitoring.analysis.drift.mergeable import states_from_bytes
from monitoring.analysis.fleet import hourly_windows, score_windows
from monitoring.analysis.fleet.states import STATES_PREFIX, StateCache, baseline_tag
from monitoring.analysis.scoring.runner import ModelFits, score_model, score_run
from monitoring.ingest.store import open_backend
from monitoring.ingest.store.projection import DEFAULT_PROJECTION, Projection, projection_spec, scoring_projection

D = 256  # wider than the 128-d projection: projected by default
P128 = projection_spec(DEFAULT_PROJECTION)
_sample = reweighted_sampler(D)


def _baseline(root, seed=4, hour=0):
    rng = np.random.default_rng(seed)
    save_baseline(root, MODEL, _sample(rng, 1500, hour), image_meta(rng, 1500), detectors={"n_null": 200})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide-store")
    write_hours(root, _sample).compact()  # the StoreWriter's default: the sidecar's, with the projection
    _baseline(root)
    return root


def test_the_default_representation_is_the_projection_for_wide_spaces_only(store):
    assert scoring_projection(2048) == DEFAULT_PROJECTION and scoring_projection(129) == DEFAULT_PROJECTION
    assert scoring_projection(128) is None and scoring_projection(16) is None
    assert scoring_projection(2048, full_width=True) is None
    b = load_baseline(store, MODEL)
    fits = ModelFits.fit(b)
    assert fits.projection("image") == DEFAULT_PROJECTION and fits.representation("image") == P128 == "p128-s20261203"
    # the suite was fitted on the projected sample: its centroid lives in 128 dimensions
    assert fits.spaces["image"].detectors["centroid"].centroid_.shape == (128,)
    full = ModelFits.fit(b, full_width=True)
    assert full.projection("image") is None and full.representation("image") == "full"
    assert full.spaces["image"].detectors["centroid"].centroid_.shape == (D,)


def _numbers(run):
    return [{k: (m.is_drift, m.p_value, m.statistic, m.window_size) for k, m in w.methods.items()} for w in run.windows]


def test_rows_and_states_engines_score_the_projection_with_the_same_verdicts(store, tmp_path):
    root = copy_store(store, tmp_path)
    rows = score_run(root, MODEL, engine="rows", **SPAN)
    states = score_run(root, MODEL, engine="states", **SPAN)
    assert rows.baseline["spaces"]["image"]["scored_on"] == states.baseline["spaces"]["image"]["scored_on"] == P128
    assert [w.n for w in rows.windows] == [w.n for w in states.windows] == [300] * 4
    a, b = _numbers(rows), _numbers(states)
    assert [set(x) for x in a] == [set(x) for x in b] == [{"cluster_jsd", "centroid", "mmd", "domain_classifier", "metadata"}] * 4
    for wa, wb in zip(a, b):
        for k in wa:
            assert wa[k][0] == wb[k][0] and wa[k][3] == wb[k][3], k
            if k == "domain_classifier":  # the states keep a feature sample: another, equally valid draw
                continue
            # the rows engine projects the window in memory, the states engine reads the column the
            # writer projected file by file: the same matrix, float32 products in another order
            assert wa[k][2] == pytest.approx(wb[k][2], rel=1e-4, abs=1e-6), k
            assert wa[k][1] == pytest.approx(wb[k][1], abs=0.02), k
    assert [w.any_drift for w in rows.windows] == [w.any_drift for w in states.windows] == [False, False, False, True]
    assert [w.page for w in rows.windows] == [w.page for w in states.windows]
    # the projected statistic is not the full-width one: the default really changed the space
    full = score_run(root, MODEL, engine="states", full_width=True, use_states=False, **SPAN)
    assert full.baseline["spaces"]["image"]["scored_on"] == "full"
    assert [w.any_drift for w in full.windows] == [False, False, False, True]
    assert full.windows[3].methods["centroid"].statistic != pytest.approx(states.windows[3].methods["centroid"].statistic, rel=1e-3)
    # no moved "dimension" of a random projection is named in an explanation
    w3 = score_model(root, MODEL, engine="rows", **SPAN)["windows"][3]
    assert w3["explanation"].get("centroid_top_dimensions", []) == []


def test_raw_ingest_states_and_dask_give_equal_results_on_the_projection(store, tmp_path):
    from monitoring.analysis.fleet.states import write_partition_states

    root = copy_store(store, tmp_path)
    backend = open_backend(root)
    b = load_baseline(backend, MODEL)
    fits = ModelFits.fit(b)
    suite, meta = fits.spaces["image"], fits.metadata
    assert suite.projection_ == DEFAULT_PROJECTION
    wins = hourly_windows(DAY, 4)
    raw = score_windows(suite, root, MODEL, wins, metadata=meta)
    assert [w.any_drift for w in raw] == [False, False, False, True]
    # ingest: the sidecar's hook makes each closed hour's state on the projection, by default
    parts = sorted({e.key.rsplit("/", 1)[0] for e in backend.list(f"model={MODEL}/")})
    assert write_partition_states(backend, parts, now_ms=DAY + 10 * 3_600_000) == 4
    made = [e.key for e in backend.list(STATES_PREFIX)]
    assert len(made) == 4 and all(f"baseline={baseline_tag(b, 'image', DEFAULT_PROJECTION)}/" in k for k in made)
    assert all(states_from_bytes(backend.read(k))[1]["representation"] == P128 for k in made)
    cache = StateCache.for_suite(backend, MODEL, "image", b, suite)
    from_states = score_windows(suite, root, MODEL, wins, metadata=meta, states=cache)
    assert (cache.hits, cache.misses, cache.writes) == (4, 0, 0)
    assert_same_scores(raw, from_states)
    # and `monitoring score` (states engine) merges exactly those states: nothing new written
    run = score_run(root, MODEL, engine="states", **SPAN)
    assert sorted(e.key for e in backend.list(STATES_PREFIX)) == sorted(made)
    for w, r in zip(run.windows, raw):
        assert w.methods["centroid"].p_value == pytest.approx(r.results["centroid"].p_value, rel=1e-9)
    with dask_client() as client:
        remote = score_windows(suite, root, MODEL, wins, cluster=client, metadata=meta)
    assert_same_scores(raw, remote)


def test_a_state_made_for_another_representation_or_an_older_baseline_is_never_used(store, tmp_path):
    root = copy_store(store, tmp_path)
    backend = open_backend(root)
    v1 = load_baseline(backend, MODEL)
    projected = score_run(root, MODEL, engine="states", **SPAN)  # writes the projected states
    full = score_run(root, MODEL, engine="states", full_width=True, **SPAN)  # must not read them
    tags = {baseline_tag(v1, "image"), baseline_tag(v1, "image", DEFAULT_PROJECTION),
            baseline_tag(v1, "image", Projection(DEFAULT_PROJECTION.seed + 1, 128)), baseline_tag(v1, "image", Projection(7, 64))}
    assert len(tags) == 4  # full width, the default projection, another seed, another dim: four tags
    keys = [e.key for e in backend.list(STATES_PREFIX)]
    assert len(keys) == 8  # four hours x two representations, side by side
    raw_full = score_windows(v1.fit_space("image"), root, MODEL, hourly_windows(DAY, 4), metadata=v1.fit_metadata())
    for w, r in zip(full.windows, raw_full):
        assert w.methods["centroid"].statistic == pytest.approx(r.results["centroid"].statistic, rel=1e-9)
    assert [w.methods["centroid"].statistic for w in full.windows] != [w.methods["centroid"].statistic for w in projected.windows]
    # a projected state copied under the full-width name, or under another seed's, is refused
    # (the representation is checked inside the file, not only in its name)
    proj_keys = sorted(k for k in keys if baseline_tag(v1, "image", DEFAULT_PROJECTION) in k)
    full_cache = StateCache.for_suite(backend, MODEL, "image", v1, v1.fit_space("image"))
    other = Projection(DEFAULT_PROJECTION.seed + 1, 128)
    other_cache = StateCache(backend, MODEL, "image", baseline_tag(v1, "image", other), projection_spec(other))
    for k in proj_keys:
        part = states_from_bytes(backend.read(k))[1]["partition"]
        backend.write(full_cache.key(part), backend.read(k))
        backend.write(other_cache.key(part), backend.read(k))
    again = score_run(root, MODEL, engine="states", full_width=True, **SPAN)
    for w, r in zip(again.windows, raw_full):  # recomputed from the rows, not the copied projected states
        assert w.methods["centroid"].statistic == pytest.approx(r.results["centroid"].statistic, rel=1e-9)
    files = {e.key: e for e in backend.list(f"model={MODEL}/")}
    from monitoring.analysis.fleet.states import fingerprint, partition_files

    fl = partition_files(backend, {k.rsplit("/", 1)[0] for k in files})
    assert all(other_cache.load(p, fingerprint(f)) is None for p, f in fl.items())
    # a newer baseline (fitted on drifted data) never reads v1's projected states
    _baseline(root, seed=5, hour=3)
    v2 = load_baseline(backend, MODEL)
    assert baseline_tag(v2, "image", DEFAULT_PROJECTION) != baseline_tag(v1, "image", DEFAULT_PROJECTION)
    second = score_run(root, MODEL, engine="states", **SPAN)
    assert [w.methods["centroid"].is_drift for w in projected.windows] == [False, False, False, True]
    assert [w.methods["centroid"].is_drift for w in second.windows] == [True, True, True, False]
    v2_keys = [e.key for e in backend.list(STATES_PREFIX) if baseline_tag(v2, "image", DEFAULT_PROJECTION) in e.key]
    assert len(v2_keys) == 4


def test_sidecar_states_at_ingest_are_made_on_the_projection(tmp_path):
    """The compaction hook makes the state the default scoring path reads (projected, valid)."""
    from monitoring.analysis.fleet.states import fingerprint, partition_files

    root = tmp_path / "store"
    day = recent_hours()  # two closed hours, a little while ago
    write_hours(root, _sample, day=day, hours=2, files=3, per_file=100, seed=6)
    _baseline(root)
    compact_at_ingest(root, tmp_path / "spool")
    backend = open_backend(root)
    made = [e.key for e in backend.list(STATES_PREFIX)]
    b = load_baseline(backend, MODEL)
    assert len(made) == 2 and all(f"baseline={baseline_tag(b, 'image', DEFAULT_PROJECTION)}/" in k for k in made), made
    run = score_run(root, MODEL, engine="states", **span(day, 2))
    assert [w.n for w in run.windows] == [300, 300]
    assert sorted(e.key for e in backend.list(STATES_PREFIX)) == sorted(made)  # read, not rewritten
    fits = ModelFits.fit(b)
    cache = StateCache.for_suite(backend, MODEL, "image", b, fits.spaces["image"])
    fl = partition_files(backend, {k.rsplit("/", 1)[0] for k in (e.key for e in backend.list(f"model={MODEL}/"))})
    assert all(cache.load(p, fingerprint(f)) is not None for p, f in fl.items())


def test_fleet_cli_scores_the_projection_by_default_and_full_width_on_request(store, tmp_path):
    from monitoring.analysis.fleet.__main__ import main

    root = copy_store(store, tmp_path)
    out = tmp_path / "day.json"
    args = ["--store", str(root), "--model", MODEL, "--day", "2026-11-26", "--hours", "4", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["scored_on"] == P128 and [w["any_drift"] for w in doc["windows"]] == [False, False, False, True]
    assert main([*args, "--full-width"]) == 0
    full = json.loads(out.read_text())
    assert full["scored_on"] == "full" and [w["any_drift"] for w in full["windows"]] == [False, False, False, True]
    assert doc["windows"][3]["methods"]["centroid"]["statistic"] != full["windows"][3]["methods"]["centroid"]["statistic"]
    with pytest.raises(SystemExit):
        main([*args, "--full-width", "--projected"])


def test_score_cli_full_width_flag(store, tmp_path, capsys):
    from monitoring.cli import main as cli_main

    root = copy_store(store, tmp_path)
    base = ["score", "--store", str(root), "--model", MODEL, "--since", str(DAY), "--until", str(DAY + 4 * 3_600_000),
            "--every", "1h", "--json", "--no-save", "--no-actuals"]
    assert cli_main(base) == 0
    default = json.loads(capsys.readouterr().out)
    assert cli_main([*base, "--full-width"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert default["baseline"]["spaces"]["image"]["scored_on"] == P128
    assert full["baseline"]["spaces"]["image"]["scored_on"] == "full"
    assert [w["any_drift"] for w in default["windows"]] == [w["any_drift"] for w in full["windows"]] == [False] * 3 + [True]
