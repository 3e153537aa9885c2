"""``python -m monitoring.analysis.fleet``: score a day of a model's records in hourly windows.

    python -m monitoring.analysis.fleet --store s3://bucket/capture --model resnet_classifier --day 2026-11-26
    python -m monitoring.analysis.fleet --store s3://bucket/capture --model resnet_classifier --day 2026-11-26 \\
        --cluster tcp://scheduler:8786                 # map step on a Dask cluster

The suite is fitted on the model's stored baseline (latest, or ``--baseline-version``), like
``monitoring score``; the windows' summaries are printed as JSON (``--out`` writes them too).
An embedding wider than 128-d is scored on the store's seeded 128-d projection unless
``--full-width`` is given (``scored_on`` in the output says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from monitoring.analysis.alerts.levels import page_level
from monitoring.analysis.baseline.store import load_baseline
from monitoring.jsonable import to_jsonable
from monitoring.ingest.store.projection import projection_spec, scoring_projection
from monitoring.analysis.fleet.score import FleetWindowResult, hourly_windows, score_windows, window_label


def summary(model: str, windows: list[FleetWindowResult], scored_on: str = "full") -> dict[str, Any]:
    return to_jsonable({
        "model": model,
        "scored_on": scored_on,
        "windows": [
            {
                "label": window_label(w.since_ms),
                "start_ms": w.since_ms,
                "end_ms": w.until_ms,
                "n": w.n,
                "partitions": w.partitions,
                "scored": bool(w.results),
                "any_drift": w.any_drift,
                "page": page_level({k: {"p_value": r.p_value} for k, r in w.results.items()}),
                "methods": {k: {"statistic": r.statistic, "threshold": r.threshold, "p_value": r.p_value,
                                "is_drift": r.is_drift} for k, r in w.results.items()},
            }
            for w in windows
        ],
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitoring.analysis.fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="capture store: a directory or s3://bucket/prefix")
    ap.add_argument("--model", required=True)
    ap.add_argument("--day", required=True, help="first hour's day (ISO date or time, UTC)")
    ap.add_argument("--hours", type=int, default=24, help="number of hourly windows (default 24)")
    ap.add_argument("--cluster", default=None, help="Dask scheduler address (default: in this process)")
    ap.add_argument("--baseline-version", type=int, default=None)
    ap.add_argument("--min-window", type=int, default=20, help="windows with fewer rows are not scored")
    ap.add_argument("--s3-endpoint-url", default=None)
    ap.add_argument("--full-width", action="store_true",
                    help="score the full embedding; by default an embedding wider than 128-d is scored on the store's "
                         "seeded random projection (128-d: about 1/16 of the bytes read; files without it are "
                         "projected in memory with the same matrix)")
    ap.add_argument("--projected", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.hours < 1:
        ap.error(f"--hours must be >= 1, got {a.hours}")
    baseline = load_baseline(a.store, a.model, a.baseline_version, s3_endpoint_url=a.s3_endpoint_url)
    if a.projected and a.full_width:
        ap.error("--projected and --full-width contradict each other (projected is the default)")
    projection = scoring_projection(baseline.embeddings.shape[1], full_width=a.full_width)
    suite = baseline.fit_suite(projection=projection)
    windows = score_windows(suite, a.store, a.model, hourly_windows(a.day, a.hours), cluster=a.cluster,
                            min_window=a.min_window, s3_endpoint_url=a.s3_endpoint_url)
    text = json.dumps(summary(a.model, windows, projection_spec(projection) or "full"), indent=2)
    if a.out is not None:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
