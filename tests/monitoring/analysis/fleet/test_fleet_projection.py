"""The stored seeded random projection (issue #28 item 3): recorded in each file's schema,
kept through compaction, read instead of the full embedding by a projected suite with the same
verdicts, and a store without it (written before it existed) still scores (falls back)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis_testlib import DAY, MODEL, image_meta, reweighted_sampler, write_hours
from monitoring.analysis.baseline.store import load_baseline, save_baseline
from monitoring.analysis.fleet import hourly_windows, score_windows
from monitoring.ingest.store.projection import DEFAULT_PROJECTION, META_PROJECTION, Projection, file_projection

D = 256
_sample = reweighted_sampler(D)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    projected = tmp_path_factory.mktemp("projected")
    old = tmp_path_factory.mktemp("unprojected")
    # as the sidecar writes them: part files, then one compaction pass; with and without the projection
    write_hours(projected, _sample, projection=DEFAULT_PROJECTION).compact()
    write_hours(old, _sample, projection=None).compact()
    rng = np.random.default_rng(4)
    X = _sample(rng, 1500, 0)
    meta = image_meta(rng, 1500)
    for root in (projected, old):
        save_baseline(root, MODEL, X, meta)
    return projected, old


def _files(root):
    return sorted(root.rglob("*.parquet"))


def test_each_file_records_the_projection_seed_and_holds_the_projected_column(stores):
    projected, old = stores
    files = _files(projected)
    assert files and all(f.name.startswith("compact-") for f in files)
    for f in files:
        meta = pq.read_schema(f).metadata
        spec = json.loads(meta[META_PROJECTION])
        assert spec == {"seed": DEFAULT_PROJECTION.seed, "dim": 128, "columns": ["embedding"]}
        assert file_projection(meta) == (DEFAULT_PROJECTION, ["embedding"])
        t = pq.read_table(f, columns=["embedding", "embedding__p128"])
        full = np.stack(t["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
        stored = np.stack(t["embedding__p128"].to_numpy(zero_copy_only=False))
        assert stored.shape == (len(full), 128)
        # the stored column is the seeded matrix applied to the full embedding, kept in the file
        np.testing.assert_allclose(stored, full @ Projection(DEFAULT_PROJECTION.seed, 128).matrix(D), rtol=1e-4, atol=1e-3)
    for f in _files(old):
        assert META_PROJECTION not in (pq.read_schema(f).metadata or {})
        assert "embedding__p128" not in pq.read_schema(f).names


def test_the_matrix_is_a_pure_function_of_seed_width_and_dim():
    a, b = Projection(7, 64).matrix(300), Projection(7, 64).matrix(300)
    assert a is b or np.array_equal(a, b)
    assert not np.array_equal(a, Projection(8, 64).matrix(300))
    assert a.shape == (300, 64) and a.dtype == np.float32
    with pytest.raises(ValueError, match="projection dim must be in 1..4096, got 0"):
        Projection(7, 0)


def test_projected_and_full_paths_give_the_same_verdicts(stores):
    projected, _ = stores
    baseline = load_baseline(projected, MODEL)
    full = score_windows(baseline.fit_suite(n_null=200), projected, MODEL, hourly_windows(DAY, 4))
    proj_suite = baseline.fit_suite(projection=DEFAULT_PROJECTION, n_null=200)
    assert proj_suite.projection_ == DEFAULT_PROJECTION
    proj = score_windows(proj_suite, projected, MODEL, hourly_windows(DAY, 4))
    assert [w.n for w in proj] == [w.n for w in full] == [300, 300, 300, 300]
    assert set(proj[0].results) == set(full[0].results) >= {"centroid", "mmd", "cluster_jsd", "domain_classifier", "metadata"}
    for a, b in zip(full, proj):
        assert {k: r.is_drift for k, r in a.results.items()} == {k: r.is_drift for k, r in b.results.items()}
        # metadata is not projected: identical numbers
        assert b.results["metadata"].p_value == a.results["metadata"].p_value
    assert [w.any_drift for w in proj] == [False, False, False, True]
    # an embedding method really scored the projected space: its statistic is not the full one
    assert proj[3].results["centroid"].statistic != full[3].results["centroid"].statistic


def test_store_written_before_projections_falls_back_to_the_full_column(stores):
    projected, old = stores
    suite = load_baseline(old, MODEL).fit_suite(projection=DEFAULT_PROJECTION, n_null=200)
    from_old = score_windows(suite, old, MODEL, hourly_windows(DAY, 4))
    from_new = score_windows(suite, projected, MODEL, hourly_windows(DAY, 4))
    assert [w.n for w in from_old] == [300, 300, 300, 300]
    for a, b in zip(from_old, from_new):  # same rows, projected in memory vs read: same numbers
        for k, r in a.results.items():
            assert b.results[k].is_drift == r.is_drift, k
            assert b.results[k].statistic == pytest.approx(r.statistic, rel=1e-4, abs=1e-6), k


def test_a_baseline_suite_without_projection_scores_the_full_column_of_a_projected_store(stores):
    projected, old = stores
    suite = load_baseline(old, MODEL).fit_suite(n_null=200)
    assert getattr(suite, "projection_", None) is None
    a = score_windows(suite, old, MODEL, hourly_windows(DAY, 4))
    b = score_windows(suite, projected, MODEL, hourly_windows(DAY, 4))
    for x, y in zip(a, b):  # same data, same full-width suite: the extra column changes nothing
        for k, r in x.results.items():
            assert y.results[k].statistic == pytest.approx(r.statistic, rel=1e-9, abs=1e-12), k


def test_cli_projected_flag(stores, tmp_path):
    from monitoring.analysis.fleet.__main__ import main

    projected, _ = stores
    out = tmp_path / "day.json"
    assert main(["--store", str(projected), "--model", MODEL, "--day", "2026-11-26", "--hours", "4", "--projected",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [w["any_drift"] for w in doc["windows"]] == [False, False, False, True]


def test_a_file_with_failed_requests_is_written_and_their_projection_is_null(tmp_path):
    """A failed request has no embedding: its projected entry is null, and the file still writes
    (Parquet cannot hold a null fixed-size list entry, which once stopped the sidecar's writes)."""
    import io

    import pyarrow as pa

    from monitoring.ingest.store.projection import add_projections

    emb = pa.array([[1.0] * 16, None, [2.0] * 16, []], pa.list_(pa.float32()))
    table, meta = add_projections(pa.table({"ts_ms": pa.array([1, 2, 3, 4], pa.int64()), "embedding": emb}))
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    back = pq.read_table(io.BytesIO(buf.getvalue()))
    col = DEFAULT_PROJECTION.column("embedding")
    rows = back[col].to_pylist()
    assert [r is None for r in rows] == [False, True, False, True]
    X = np.asarray([[1.0] * 16, [2.0] * 16], np.float32)
    np.testing.assert_allclose(np.asarray([rows[0], rows[2]]), DEFAULT_PROJECTION.apply(X), rtol=1e-5, atol=1e-6)
    assert file_projection(back.schema.metadata)[0] == DEFAULT_PROJECTION
