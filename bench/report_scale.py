"""The interactive report at scale: a window of 100,000 captured requests (+ a 10,000-row
baseline), the report built from the store, then opened in headless Chromium.

Measures what a user waits for and downloads: report build time (read + projection + clusters),
HTML size, points drawn, and the time until the page is interactive in Chromium. Synthetic
64-d embeddings (Gaussian clusters, the window shifted), real store, real report code.

    python bench/report_scale.py [--rows 100000] [--projection umap|pca]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "monitoring" / "workflow"))

from monitoring.analysis.baseline import save_baseline  # noqa: E402
from monitoring.outputs.report.build import build_report  # noqa: E402
from monitoring.analysis.scoring.runner import save_scores, score_model  # noqa: E402
from monitoring.ingest.store import LocalBackend, StoreWriter, records_to_table  # noqa: E402

MODEL = "scale_clf"
T0 = 1_714_953_600_000


def synthetic(n: int, rng: np.random.Generator, shift: float) -> tuple[np.ndarray, np.ndarray]:
    centres = np.random.default_rng(1).normal(scale=4.0, size=(10, 64))
    lab = rng.integers(0, 10, n)
    return (centres[lab] + rng.normal(size=(n, 64)) + shift).astype(np.float32), lab


def build_store(store: Path, rows: int) -> None:
    import pandas as pd

    from monitoring.capture.record import thumbnail
    from PIL import Image

    rng = np.random.default_rng(0)
    thumb = thumbnail(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    writer = StoreWriter(LocalBackend(store))
    X, lab = synthetic(rows, rng, shift=0.3)
    for start in range(0, rows, 20_000):
        recs = [{"schema_version": 1, "request_id": f"r{i:06d}", "model": MODEL, "model_version": "1", "ts_ms": T0 + i * 100,
                 "outcome": "ok", "embedding": X[i], "embedding_source": "synthetic", "pred_label": str(int(lab[i])),
                 "brightness": float(rng.normal(120, 10)), "thumbnail": thumb} for i in range(start, min(rows, start + 20_000))]
        writer.write_parts(records_to_table(recs), f"part{start}")
    Xb, lb = synthetic(10_000, rng, shift=0.0)
    meta = pd.DataFrame({"brightness": rng.normal(125, 10, len(Xb)), "pred_label": [str(int(v)) for v in lb]})
    save_baseline(store, MODEL, Xb, meta, source={"kind": "bench"}, embedding_source="synthetic")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--projection", choices=["umap", "pca"], default="umap")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = p.parse_args(argv)
    work = ROOT / "build" / "bench" / "report-scale"
    shutil.rmtree(work, ignore_errors=True)
    store = work / "store"
    t = time.perf_counter()
    build_store(store, a.rows)
    t_store = time.perf_counter() - t
    run = score_model(store, MODEL, every_n=a.rows)
    save_scores(store, run)
    t = time.perf_counter()
    path = build_report(store, MODEL, work / "report", projection=a.projection)
    t_report = time.perf_counter() - t
    html = path.read_text()
    from browser_testlib import chromium_driver, open_report, wait_for

    d = chromium_driver()
    try:
        t = time.perf_counter()
        open_report(d, path)
        n_points = wait_for(d, "document.querySelectorAll('#map-0 .scatterlayer .point').length")
        t_ready = time.perf_counter() - t
        t = time.perf_counter()
        d.execute_script("const s = document.getElementById('colorby-0'); s.value = 'brightness'; s.dispatchEvent(new Event('change'))")
        wait_for(d, "document.querySelectorAll('#map-0 .colorbar').length === 1")
        t_recolor = time.perf_counter() - t
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        d.quit()
    sample = html[html.index("Sample shown:"):html.index("</b>", html.index("Sample shown:"))]
    res = {"benchmark": "report at scale", "date": dt.date.today().isoformat(), "window_rows": a.rows, "baseline_rows": 10_000,
           "projection": a.projection, "cpu_count": os.cpu_count(), "store_write_s": t_store, "report_build_s": t_report,
           "html_mb": len(html.encode()) / 1e6, "points_drawn": n_points, "sample_statement": sample,
           "chromium_ready_s": t_ready, "chromium_recolor_s": t_recolor, "console_errors": len(errors)}
    a.out.mkdir(parents=True, exist_ok=True)
    stem = f"report-scale-{a.projection}-{res['date']}"
    (a.out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    text = (f"# Interactive report at scale — {res['date']}\n\n"
            f"A window of {a.rows:,} captured requests (64-d embeddings, thumbnails) and a 10,000-row baseline in a real store; "
            f"report built with {a.projection.upper()}, opened in headless Chromium. {os.cpu_count()} CPU cores, shared machine "
            "(times are noisy).\n\n| measure | value |\n|---|---|\n"
            f"| report build (read, projection, clusters, page) | {t_report:.1f} s |\n| HTML size | {res['html_mb']:.1f} MB |\n"
            f"| points drawn | {n_points:,} ({sample}) |\n| Chromium: open to map drawn | {t_ready:.1f} s |\n"
            f"| Chromium: recolour by a field | {t_recolor:.2f} s |\n| console errors | {len(errors)} |\n")
    (a.out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
