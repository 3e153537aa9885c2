"""Drift-detector benchmark: 10k baseline x 10k window, d=128 and d=2048, clean vs mild drift.

Data: mixture of 10 Gaussians (unit within-cluster sd, centres ~ N(0, I)). "mild drift" = two
cluster weights changed (0.10 -> 0.13 and 0.10 -> 0.07) + a 0.1 sd mean shift on every
coordinate; "mix only" and "shift only" windows isolate the two kinds of drift.

    python bench/drift_bench.py                      # our detectors; writes bench/results/drift-<date>.{json,md}
    python bench/drift_bench.py --with-references    # + Evidently 0.7.23 / alibi-detect 0.13 in their own venvs

The reference libraries need conflicting pins (Evidently: pandas<3; alibi-detect: numpy<2), so
each gets a venv under build/bench-venvs/ and runs in a subprocess on the same .npy data. If a
venv cannot be built, the report says so and lists the anchors from shared/notes/drift-facts.md,
labelled as anchors (other run, same kind of machine), not as same-run numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.drift import CentroidDistance, ClusterJSD, DomainClassifier, MMDDrift  # noqa: E402

WINDOWS = ("clean", "mild", "mix_only", "shift_only")

ANCHORS = [  # from shared/notes/drift-facts.md, measured 2026-11-22 on a 2-core machine (not this run)
    ("Evidently 0.7.23 model() (default)", "0.5 s", "9.4-14.5 s", "missed the drift at d=2048"),
    ("Evidently distance()", "5 ms", "46 ms", "alarms on clean data (fixed threshold)"),
    ("Evidently distance() + bootstrap", "0.28 s", "7.8 s", "right on both"),
    ("Evidently ratio()", "0.34 s", "5.3 s", "missed"),
    ("Evidently mmd()", "5.6 s (2.3 GB)", "12.9 s (2.7 GB)", "missed"),
    ("alibi-detect 0.13 KSDrift (Bonferroni)", "0.2-0.5 s", "3.5-8.1 s", "right on both"),
    ("alibi-detect LSDDDrift", "17-24 s", "18-25 s", "right on both"),
    ("alibi-detect MMDDrift (torch CPU, 100 perms)", "242 s", "242 s (5.6 GB RSS)", "right on both"),
]

VENVS = {
    "evidently": ["evidently==0.7.23", "pandas<3"],
    "alibi": ["alibi-detect[torch]==0.13.0", "numpy<2", "numba<0.60", "scikit-image<0.25", "torch==2.13.0"],
}


def make_data(d: int, n_ref: int, n_win: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = 10
    centers = rng.standard_normal((k, d)).astype(np.float32)

    def sample(n: int, weights: np.ndarray, shift: float) -> np.ndarray:
        lab = rng.choice(k, size=n, p=weights)
        x = rng.standard_normal((n, d), dtype=np.float32)
        x += centers[lab]
        if shift:
            x += np.float32(shift)
        return x

    base_w = np.full(k, 0.1)
    drift_w = base_w.copy()
    drift_w[0], drift_w[1] = 0.13, 0.07
    return {
        "ref": sample(n_ref, base_w, 0.0),
        "clean": sample(n_win, base_w, 0.0),
        "mild": sample(n_win, drift_w, 0.1),
        "mix_only": sample(n_win, drift_w, 0.0),
        "shift_only": sample(n_win, base_w, 0.1),
    }


def detectors() -> dict[str, object]:
    return {
        "ClusterJSD (k=10)": ClusterJSD(n_clusters=10),
        "CentroidDistance (euclidean)": CentroidDistance(),
        "MMDDrift (RFF 512)": MMDDrift(n_features=512),
        "DomainClassifier (logistic, PCA 64)": DomainClassifier(classifier="logistic"),
        "DomainClassifier (LDA, PCA 64)": DomainClassifier(classifier="lda"),
    }


def run_ours(data: dict[str, np.ndarray], repeats: int) -> list[dict]:
    rows = []
    for name, det in detectors().items():
        t = time.perf_counter()
        det.fit(data["ref"])
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        det.score(data["clean"])  # first score at this size also draws the null
        first_s = time.perf_counter() - t
        verdicts, stats, times = {}, {}, []
        for w in WINDOWS:
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                r = det.score(data[w])
                ts.append(time.perf_counter() - t)
            times.extend(ts)
            verdicts[w] = bool(r.is_drift)
            stats[w] = {"statistic": r.statistic, "threshold": r.threshold, "p_value": r.p_value}
        rows.append(
            {
                "method": name,
                "fit_s": fit_s,
                "first_score_s": first_s,
                "score_s_median": float(np.median(times)),
                "verdicts": verdicts,
                "results": stats,
                "correct": (not verdicts["clean"]) and verdicts["mild"],
            }
        )
        print(f"  {name}: fit {fit_s:.2f}s score {np.median(times) * 1e3:.0f} ms verdicts {verdicts}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# optional reference libraries
REF_SCRIPT = r'''
import json, sys, time
import numpy as np
lib, data_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
ref = np.load(f"{data_dir}/ref.npy"); wins = {w: np.load(f"{data_dir}/{w}.npy") for w in ("clean", "mild")}
rows = []
def timed(name, fn):
    res = {}
    ts = []
    for w, x in wins.items():
        t = time.perf_counter(); res[w] = bool(fn(x)); ts.append(time.perf_counter() - t)
    rows.append({"method": name, "score_s_median": float(np.median(ts)), "verdicts": res,
                 "correct": (not res["clean"]) and res["mild"]})
if lib == "evidently":
    import pandas as pd
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as m
    from evidently.legacy.metrics import EmbeddingsDriftMetric
    from evidently.legacy.report import Report
    cols = [f"e{i}" for i in range(ref.shape[1])]
    def ev(method):
        def f(x):
            from evidently.legacy.pipeline.column_mapping import ColumnMapping
            mapping = ColumnMapping(embeddings={"emb": cols})
            rep = Report(metrics=[EmbeddingsDriftMetric("emb", drift_method=method)])
            rep.run(reference_data=pd.DataFrame(ref, columns=cols), current_data=pd.DataFrame(x, columns=cols), column_mapping=mapping)
            return rep.as_dict()["metrics"][0]["result"]["drift_detected"]
        return f
    timed("Evidently model() [report incl. t-SNE]", ev(m.model()))
    timed("Evidently distance()", ev(m.distance()))
    timed("Evidently distance(bootstrap=True)", ev(m.distance(bootstrap=True)))
elif lib == "alibi":
    from alibi_detect.cd import KSDrift, MMDDrift
    ks = KSDrift(ref, p_val=0.05)
    timed("alibi-detect KSDrift (Bonferroni)", lambda x: ks.predict(x)["data"]["is_drift"])
json.dump(rows, open(out, "w"))
'''


def build_venv(name: str, log) -> Path | None:
    venv = ROOT / "build" / "bench-venvs" / name
    py = venv / "bin" / "python"
    marker = venv / ".ok"
    if marker.exists():
        return py
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=log, stderr=log)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *VENVS[name]], check=True, stdout=log, stderr=log, timeout=900)
        marker.write_text("ok\n")
        return py
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"  could not build the {name} venv ({exc}); see {log.name}", flush=True)
        return None


def run_references(data: dict[str, np.ndarray], d: int) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    ddir = ROOT / "build" / "bench-data" / f"d{d}"
    ddir.mkdir(parents=True, exist_ok=True)
    for k in ("ref", "clean", "mild"):
        np.save(ddir / f"{k}.npy", data[k])
    script = ROOT / "build" / "bench-data" / "reference_runner.py"
    script.write_text(REF_SCRIPT)
    for name in VENVS:
        with open(ROOT / "build" / f"bench-venv-{name}.log", "a") as log:
            py = build_venv(name, log)
        if py is None:
            problems.append(f"{name}: venv could not be built")
            continue
        out = ddir / f"{name}.json"
        try:
            subprocess.run([str(py), str(script), name, str(ddir), str(out)], check=True, timeout=1800)
            rows.extend(json.loads(out.read_text()))
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            problems.append(f"{name}: reference run failed ({exc})")
    return rows, problems


def fmt_s(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def markdown(report: dict) -> str:
    dims = report["config"]["dims"]
    lines = [
        f"# Drift benchmark {report['date']}",
        "",
        f"{report['config']['n_ref']} baseline rows vs {report['config']['n_window']}-row windows, mixture of 10 "
        f"Gaussians; mild drift = two cluster weights 0.10->0.13/0.07 + 0.1 sd shift on every coordinate. "
        f"Machine: {report['machine']}. Score = median over {report['config']['repeats']} runs x 4 windows "
        f"(null cached); first score includes drawing the null for a new window size. alpha = 0.01.",
        "Verdicts: clean / mild / mix-only / shift-only (D = drift, . = no drift; right = . D D D).",
        "",
        "| method | " + " | ".join(f"fit d={d} | score d={d} | verdicts d={d}" for d in dims) + " |",
        "|---|" + "---|---|---|" * len(dims),
    ]
    methods = [r["method"] for r in report["ours"][str(dims[0])]]
    for i, m in enumerate(methods):
        cells = []
        for d in dims:
            r = report["ours"][str(d)][i]
            v = "".join("D" if r["verdicts"][w] else "." for w in WINDOWS)
            cells += [fmt_s(r["fit_s"]), f"{fmt_s(r['score_s_median'])} (first {fmt_s(r['first_score_s'])})", v + (" ✓" if r["correct"] else " ✗")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    refs = report.get("references") or {}
    if any(refs.get(str(d)) for d in dims):
        lines += ["", "## Same-run references", "", "| method | d | score | clean/mild verdict |", "|---|---|---|---|"]
        for d in dims:
            for r in refs.get(str(d), []):
                v = "".join("D" if r["verdicts"][w] else "." for w in ("clean", "mild"))
                lines.append(f"| {r['method']} | {d} | {fmt_s(r['score_s_median'])} | {v} {'✓' if r['correct'] else '✗'} |")
    if report.get("reference_problems") is not None or not refs:
        lines += [
            "",
            "## Anchors (NOT this run: shared/notes/drift-facts.md, 2-core machine, same data recipe)",
            "",
            "| library · method | d=128 | d=2048 | verdicts |",
            "|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {v} |" for a, b, c, v in ANCHORS]
        if report.get("reference_problems"):
            lines += ["", "Reference run problems: " + "; ".join(report["reference_problems"])]
        elif not refs:
            lines += ["", "References were not run in this session (pass --with-references)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 2048])
    ap.add_argument("--n-ref", type=int, default=10000)
    ap.add_argument("--n-window", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-references", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)

    date = dt.date.today().isoformat()
    report: dict = {
        "date": date,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, numpy {np.__version__}",
        "config": {"dims": args.dims, "n_ref": args.n_ref, "n_window": args.n_window, "repeats": args.repeats, "alpha": 0.01},
        "ours": {},
        "references": {},
    }
    problems: list[str] = []
    for d in args.dims:
        print(f"d={d}: generating data", flush=True)
        data = make_data(d, args.n_ref, args.n_window)
        report["ours"][str(d)] = run_ours(data, args.repeats)
        if args.with_references:
            rows, probs = run_references(data, d)
            report["references"][str(d)] = rows
            problems += probs
    if args.with_references:
        report["reference_problems"] = problems
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"drift-{date}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.out / f"drift-{date}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
