"""Synthetic stores for the scoring and fleet tests (scoring/, fleet/): hours of embeddings that
drift from hour 3 on, written as the sidecar writes them, baselines beside them, and the checks that
two scoring paths gave the same numbers."""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from monitoring.analysis.fleet.synthetic import Sampler, records_table
from monitoring.ingest.store import StoreWriter, open_backend

DAY = 1_795_651_200_000  # 2026-11-26T00:00Z
MODEL = "resnet_classifier"


def span(since: int, hours: int) -> dict[str, Any]:
    """`score_run`'s arguments for ``hours`` hours from ``since``: one window an hour, no actuals."""
    return dict(since=since, until=since + hours * 3_600_000, every="1h", use_actuals=False)


#: The four hours from DAY that the module stores hold.
SPAN = span(DAY, 4)


def recent_hours() -> int:
    """The start of the hour three hours ago: the two hours from there are closed, so the sidecar's
    compaction makes their states."""
    return (int(time.time() * 1000) // 3_600_000 - 3) * 3_600_000


def shifted_sampler(d: int) -> Sampler:
    """Embeddings of width ``d`` around four fixed centres; from hour 3 every coordinate moves by 0.8."""
    centers = np.random.default_rng(9).standard_normal((4, d)) * 3

    def sample(rng: np.random.Generator, n: int, hour: int) -> np.ndarray:
        shift = 0.8 if hour >= 3 else 0.0  # hours 3.. drift
        return (centers[rng.integers(0, 4, n)] + rng.standard_normal((n, d)) + shift).astype(np.float32)

    return sample


def reweighted_sampler(d: int) -> Sampler:
    """Wide float32 embeddings around four fixed centres; from hour 3 the clusters' weights move and
    every coordinate shifts a little (a drift a projection of the space still sees)."""
    centers = np.random.default_rng(9).standard_normal((4, d)).astype(np.float32) * 3

    def sample(rng: np.random.Generator, n: int, hour: int) -> np.ndarray:
        drift = hour >= 3  # hours 3.. drift: cluster weights move and every coordinate shifts a little
        lab = rng.choice(4, size=n, p=[0.4, 0.4, 0.1, 0.1] if drift else [0.25] * 4)
        shift = np.float32(0.3 if drift else 0.0)
        return (centers[lab] + rng.standard_normal((n, d), dtype=np.float32) + shift).astype(np.float32)

    return sample


def image_meta(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """The image metadata fields the baselines and the records hold (brightness, contrast)."""
    return pd.DataFrame({"brightness": rng.normal(120, 20, n), "contrast": rng.normal(50, 8, n)})


def write_hours(root: Path, sample: Sampler, *, day: int = DAY, hours: int = 4, files: int = 2, per_file: int = 150,
                seed: int = 1, **writer_options: Any) -> StoreWriter:
    """Hours of records as the sidecar writes them (part files; ``writer_options`` go to the
    StoreWriter, so its defaults are the sidecar's); the caller compacts with the returned writer."""
    writer = StoreWriter(open_backend(root), **writer_options)
    rng = np.random.default_rng(seed)
    for h in range(hours):
        for f in range(files):
            ts = day + h * 3_600_000 + np.sort(rng.integers(0, 3_600_000, per_file))
            writer.write_parts(records_table(MODEL, sample(rng, per_file, h), ts, rng, f"h{h}f{f}"), f"{h:02d}-{f}")
    return writer


def compact_at_ingest(store: Any, spool: Path) -> None:
    """One compaction pass of the real sidecar (``store``: a path or a Backend; ``spool``: made here,
    left empty): the ingest hook that makes each closed hour's partition state."""
    from monitoring.ingest.sidecar.service import Sidecar

    spool.mkdir()
    svc = Sidecar(spool, store, compact_every=0)
    try:
        svc.compact()
    finally:
        svc.close()


def copy_store(store: Path, tmp_path: Path, *, states: bool = False) -> Path:
    """A copy of a module's store that one test may change; the stored partition states only if ``states``."""
    root = tmp_path / "copy"
    shutil.copytree(store, root, ignore=None if states else shutil.ignore_patterns("states"))
    return root


def assert_same_scores(a: list, b: list) -> None:
    """Two scorings of the same windows (fleet WindowScores) agree: rows, partitions, methods, verdicts, numbers."""
    for x, y in zip(a, b):
        assert (x.n, x.partitions) == (y.n, y.partitions) and set(x.results) == set(y.results)
        for k, r in x.results.items():
            assert r.is_drift == y.results[k].is_drift, k
            assert r.p_value == pytest.approx(y.results[k].p_value, rel=1e-9), k
            assert r.statistic == pytest.approx(y.results[k].statistic, rel=1e-9, abs=1e-12), k


@contextmanager
def dask_client() -> Iterator[Any]:
    """A client on a real two-worker Dask cluster (worker processes, loopback only)."""
    from distributed import Client, LocalCluster  # slow to import: only for the tests that use a cluster

    # The scheduler's HTTP server on a free loopback port: None still tries 8787 first and warns
    # when another test process's cluster holds it.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client
