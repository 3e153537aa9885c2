"""Drift-detector benchmark (P3): 10k baseline x 10k windows, d=128 and d=2048, four windows.

Data: mixture of 10 Gaussians (unit within-cluster sd, centres ~ N(0, I)). Windows: "clean"
(no drift: the right verdict is no alarm), "mild" = two cluster weights changed (0.10 -> 0.13
and 0.10 -> 0.07) + a 0.1 sd mean shift on every coordinate, "mix only" and "shift only" isolate
the two kinds of drift (right verdict on all three: drift).

    python bench/drift_bench.py                      # our detectors; writes bench/results/drift-<date>.{json,md}
    python bench/drift_bench.py --with-references    # + Evidently 0.7.23 / alibi-detect 0.13 in their own venvs

What is timed, for every method (ours and the references), same data, same alpha (0.01):
fit (building the detector on the baseline; Evidently's methods have no fit step), score (one
window against the fitted detector; for ours the first score at a new window size also draws
the bootstrap null, reported separately as "first"), and fit + first score together (what one
cold call costs). Medians over ``--repeats`` runs. Our whole suite per window (all four default
methods, what ``monitoring score`` runs per window) is timed too.

References are called through their drift APIs as their docs show, no report rendering:
Evidently's embedding drift methods (``distance``, ``model``, ...) are the callables
``EmbeddingsDriftMetric`` calls before it computes its t-SNE plot; alibi-detect's detectors
are built on the baseline (``KSDrift(x_ref, p_val=alpha)``) and scored with ``predict(x)``.
The reference libraries need conflicting pins (Evidently: pandas<3; alibi-detect: numpy<2), so
each gets a venv under build/bench-venvs/ and runs in a subprocess on the same .npy data; if a
venv cannot be built the report says so (there are no fallback numbers from other runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
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

from monitoring.analysis.drift import CentroidDistance, ClusterJSD, DomainClassifier, DriftSuite, MMDDrift  # noqa: E402

WINDOWS = ("clean", "mild", "mix_only", "shift_only")

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


RIGHT = {"clean": False, "mild": True, "mix_only": True, "shift_only": True}
ALPHA = 0.01


def _row(method: str, fit_s: list[float], first_s: list[float], score_s: list[float], verdicts: dict, results: dict | None = None) -> dict:
    return {
        "method": method,
        "fit_s": float(np.median(fit_s)),
        "first_score_s": float(np.median(first_s)),
        "score_s_median": float(np.median(score_s)),
        "fit_plus_score_s": float(np.median(np.add(fit_s, first_s))),
        "verdicts": verdicts,
        "results": results or {},
        "right": int(sum(verdicts[w] == RIGHT[w] for w in WINDOWS)),
    }


def run_ours(data: dict[str, np.ndarray], repeats: int) -> list[dict]:
    """Every detector: fit and first score timed ``repeats`` times on fresh objects, warm score per window."""
    rows = []
    for name in detectors():
        fit_s, first_s, score_s = [], [], []
        verdicts, stats = {}, {}
        for rep in range(repeats):
            det = detectors()[name]
            t = time.perf_counter()
            det.fit(data["ref"])
            fit_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            det.score(data["clean"])  # first score at this size also draws the null
            first_s.append(time.perf_counter() - t)
            for w in WINDOWS:
                t = time.perf_counter()
                r = det.score(data[w])
                score_s.append(time.perf_counter() - t)
                verdicts[w] = bool(r.is_drift)
                stats[w] = {"statistic": r.statistic, "threshold": r.threshold, "p_value": r.p_value}
        rows.append(_row(name, fit_s, first_s, score_s, verdicts, stats))
        print(f"  {name}: fit {np.median(fit_s):.2f}s score {np.median(score_s) * 1e3:.0f} ms verdicts {verdicts}", flush=True)
    return rows


def run_suite(data: dict[str, np.ndarray], repeats: int) -> dict:
    """The default DriftSuite (all four default methods), as ``monitoring score`` runs it per window."""
    fit_s, first_s, score_s, any_drift = [], [], [], {}
    for _ in range(repeats):
        suite = DriftSuite(metadata=False)
        t = time.perf_counter()
        suite.fit(data["ref"])
        fit_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        suite.score(data["clean"])
        first_s.append(time.perf_counter() - t)
        for w in WINDOWS:
            t = time.perf_counter()
            res = suite.score(data[w])
            score_s.append(time.perf_counter() - t)
            any_drift[w] = any(r.is_drift for r in res.values())
    row = _row("DriftSuite (4 default methods, any alarm)", fit_s, first_s, score_s, any_drift)
    row["methods"] = list(suite.detectors)
    print(f"  suite: fit {row['fit_s']:.2f}s score {row['score_s_median'] * 1e3:.0f} ms verdicts {any_drift}", flush=True)
    return row


# ---------------------------------------------------------------------------------------------
# reference libraries, each in its own venv, same .npy data, same alpha
REF_SCRIPT = r"""
import json, sys, time
import numpy as np
lib, data_dir, out, alpha, repeats, extra = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split(",")
WINDOWS = ("clean", "mild", "mix_only", "shift_only")
ref = np.load(f"{data_dir}/ref.npy"); wins = {w: np.load(f"{data_dir}/{w}.npy") for w in WINDOWS}
rows = []

def bench(name, make, predict, note=""):
    # make(ref) -> fitted detector (timed as fit); predict(det, x) -> bool (timed as score)
    fit_s, first_s, score_s, verdicts = [], [], [], {}
    for _ in range(repeats):
        t = time.perf_counter(); det = make(ref); fit_s.append(time.perf_counter() - t)
        t = time.perf_counter(); predict(det, wins["clean"]); first_s.append(time.perf_counter() - t)
        for w in WINDOWS:
            t = time.perf_counter(); verdicts[w] = bool(predict(det, wins[w])); score_s.append(time.perf_counter() - t)
    rows.append({"method": name, "fit_s": fit_s, "first_score_s": first_s, "score_s": score_s, "verdicts": verdicts, "note": note})
    print(f"  {name}: score {np.median(score_s):.2f}s verdicts {verdicts}", flush=True)

if lib == "evidently":
    import pandas as pd
    from evidently.legacy.metrics.data_drift import embedding_drift_methods as m
    cols = [f"e{i}" for i in range(ref.shape[1])]
    # EmbeddingsDriftMetric.calculate calls drift_method(current, reference) and then draws a
    # t-SNE plot; the drift method alone is the detector. Frames are copied per call because
    # model() adds a column to both.
    def ev(method):
        return lambda det, x: method(pd.DataFrame(x, columns=cols), det.copy())[1]
    q = 1.0 - alpha
    no_fit = lambda r: pd.DataFrame(r, columns=cols)
    bench("Evidently distance(bootstrap, q=1-alpha)", no_fit, ev(m.distance(bootstrap=True, quantile_probability=q)), "euclidean centroid distance, 100-draw bootstrap")
    bench("Evidently model(bootstrap, q=1-alpha)", no_fit, ev(m.model(bootstrap=True, quantile_probability=q)), "SGD domain classifier, AUC vs 100 random-score AUCs")
    bench("Evidently model() default (AUC > 0.55)", no_fit, ev(m.model()), "Evidently's default for >= 1000 rows; fixed threshold, no alpha")
    bench("Evidently distance() default (> 0.2)", no_fit, ev(m.distance()), "fixed threshold, no alpha")
    if "evidently-mmd" in extra:
        bench("Evidently mmd(bootstrap, q=alpha)", no_fit, ev(m.mmd(bootstrap=True, quantile_probability=alpha)), "dense (N+n)^2 kernel")
elif lib == "alibi":
    from alibi_detect.cd import KSDrift
    bench("alibi-detect KSDrift (p_val=alpha, Bonferroni)", lambda r: KSDrift(r, p_val=alpha), lambda det, x: det.predict(x)["data"]["is_drift"], "per-feature KS, Bonferroni over features")
    if "alibi-mmd" in extra:
        from alibi_detect.cd import MMDDrift
        bench("alibi-detect MMDDrift (torch, 100 permutations)", lambda r: MMDDrift(r, backend="pytorch", p_val=alpha, n_permutations=100), lambda det, x: det.predict(x)["data"]["is_drift"], "exact kernel, permutation test")
    if "alibi-lsdd" in extra:
        from alibi_detect.cd import LSDDDrift
        bench("alibi-detect LSDDDrift (torch, 100 permutations)", lambda r: LSDDDrift(r, backend="pytorch", p_val=alpha, n_permutations=100), lambda det, x: det.predict(x)["data"]["is_drift"], "least-squares density difference")
json.dump(rows, open(out, "w"))
"""


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


def run_references(data: dict[str, np.ndarray], d: int, repeats: int, extra: list[str]) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    ddir = ROOT / "build" / "bench-data" / f"d{d}"
    ddir.mkdir(parents=True, exist_ok=True)
    for k in ("ref", *WINDOWS):
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
            subprocess.run([str(py), str(script), name, str(ddir), str(out), str(ALPHA), str(repeats), ",".join(extra)],
                           check=True, timeout=3600)
        except (subprocess.SubprocessError, OSError) as exc:
            problems.append(f"{name}: reference run failed ({exc})")
            continue
        for r in json.loads(out.read_text()):
            row = _row(r["method"], r["fit_s"], r["first_score_s"], r["score_s"], r["verdicts"])
            row["note"] = r.get("note", "")
            row["version"] = reference_version(py, name)
            rows.append(row)
    return rows, problems


def reference_version(py: Path, name: str) -> str:
    pkg = {"evidently": "evidently", "alibi": "alibi-detect"}[name]
    code = f"import importlib.metadata as m; print(m.version({pkg!r}), 'numpy', m.version('numpy'))"
    try:
        return subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "unknown"


def fmt_s(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def verdict_cell(v: dict) -> str:
    return "".join(("D" if v[w] else ".") for w in WINDOWS)


def markdown(report: dict) -> str:
    dims = report["config"]["dims"]
    right = verdict_cell(RIGHT)
    lines = [
        f"# Drift benchmark {report['date']}",
        "",
        f"{report['config']['n_ref']} baseline rows vs {report['config']['n_window']}-row windows, mixture of 10 "
        f"Gaussians; mild drift = two cluster weights 0.10->0.13/0.07 + 0.1 sd shift on every coordinate. "
        f"Machine: {report['machine']}; load average at start {report.get('loadavg_start')}, at end "
        f"{report.get('loadavg_end')} (shared machine: seconds are noisy, every number in a row is from this run). "
        f"alpha = {ALPHA} for every method that has one. Medians over {report['config']['repeats']} repeats: fit (fresh "
        "detector on the baseline), score (one window, fitted detector; ours with its null cached), first = first "
        "score at a new window size (ours: draws the null), fit+score = fit + first score (one cold call).",
        "",
        f"Verdicts on the four windows clean / mild / mix-only / shift-only, D = drift, . = none; the right answer "
        f"is **{right}**. \"right\" counts windows with the right verdict (of 4).",
    ]
    for d in dims:
        ours = report["ours"][str(d)]
        suite = report["suite"][str(d)]
        refs = (report.get("references") or {}).get(str(d), [])
        lines += ["", f"## d = {d}", "", "| method | fit | score | first score | fit+score | verdicts | right |",
                  "|---|---|---|---|---|---|---|"]
        for r in [*ours, suite, *refs]:
            name = r["method"] + (f" ({r['version'].split(' ')[0]})" if r.get("version") else "")
            fit = "— (no fit step)" if r["method"].startswith("Evidently") else fmt_s(r["fit_s"])
            lines.append(f"| {name} | {fit} | {fmt_s(r['score_s_median'])} | {fmt_s(r['first_score_s'])} | "
                         f"{fmt_s(r['fit_plus_score_s'])} | `{verdict_cell(r['verdicts'])}` | {r['right']}/4 |")
        if refs:
            lines += ["", f"Same-run ratios at d = {d}: reference time / our suite time (score per window; fit+score "
                          "cold), so > 1 means ours is faster:", "", "| reference | score ratio | fit+score ratio |",
                      "|---|---|---|"]
            for r in refs:
                lines.append(f"| {r['method']} | {r['score_s_median'] / suite['score_s_median']:.1f} | "
                             f"{r['fit_plus_score_s'] / suite['fit_plus_score_s']:.1f} |")
    if report.get("with_references"):
        probs = report.get("reference_problems") or []
        lines += ["", "Reference versions: " + "; ".join(sorted({f"{r['method'].split(' ')[0]} {r['version']}" for d in dims
                                                               for r in report["references"].get(str(d), [])})) + "."]
        if probs:
            lines += ["", "Reference run problems: " + "; ".join(probs)]
    else:
        lines += ["", "References were not run in this invocation (pass --with-references); there are no reference "
                      "numbers from other runs in this report."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 2048])
    ap.add_argument("--n-ref", type=int, default=10000)
    ap.add_argument("--n-window", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-references", action="store_true")
    ap.add_argument("--reference-extras", default="",
                    help="comma list of heavy references to add: evidently-mmd, alibi-mmd, alibi-lsdd")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)

    date = dt.date.today().isoformat()
    report: dict = {
        "date": date,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, numpy {np.__version__}, "
                   f"scikit-learn {importlib.metadata.version('scikit-learn')}, scipy {importlib.metadata.version('scipy')}",
        "config": {"dims": args.dims, "n_ref": args.n_ref, "n_window": args.n_window, "repeats": args.repeats, "alpha": 0.01},
        "ours": {},
        "references": {},
        "suite": {},
        "with_references": bool(args.with_references),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    problems: list[str] = []
    for d in args.dims:
        print(f"d={d}: generating data", flush=True)
        data = make_data(d, args.n_ref, args.n_window)
        report["ours"][str(d)] = run_ours(data, args.repeats)
        report["suite"][str(d)] = run_suite(data, args.repeats)
        if args.with_references:
            extra = [x for x in args.reference_extras.split(",") if x]
            rows, probs = run_references(data, d, args.repeats, extra)
            report["references"][str(d)] = rows
            problems += probs
    if args.with_references:
        report["reference_problems"] = problems
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"drift-{date}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.out / f"drift-{date}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
