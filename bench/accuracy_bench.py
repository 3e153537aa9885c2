"""Label-free accuracy benchmark: our estimate vs NannyML's CBPE vs realized accuracy, on the demo's records.

    make demo                                    # or python -m bench.demo --workdir var/demo
    python bench/accuracy_bench.py --demo var/demo   # writes bench/results/accuracy-<date>.{json,md}

Same rows for both: the reference is the demo baseline's labelled sample (top-1 probability,
predicted and true label); each demo week's successful classifier records are one window (the
week's actuals give its realized accuracy, and are hidden from both estimators). Ours is
``monitoring.analysis.drift.accuracy`` through ``score_model(..., use_actuals=False)`` exactly as
``monitoring score --no-actuals`` runs it. NannyML 0.13.1 cannot share our lock (it needs
plotly<6), so it runs from build/venvs/nannyml (env/venv-nannyml.lock;
``make build/venvs/nannyml/.installed``) in a subprocess: bench/nannyml_cbpe.py.

"Miss" = estimate - realized: what each estimator gets wrong. A drifted week's miss is the price
of the CBPE assumption (calibration learnt on the baseline holds on the new inputs); the
relabelled week (concept shift) is the case neither can see.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "resnet_classifier"
NANNYML_PYTHON = ROOT / "build" / "venvs" / "nannyml" / "bin" / "python"


def realized(store: Path, windows: list) -> dict[str, dict]:
    """Realized accuracy per window from the posted actuals (what the estimators must not see)."""
    from monitoring.analysis.scoring.runner import score_model

    run = score_model(store, MODEL, windows=windows, use_actuals=True)
    return {w["label"]: {"accuracy": w["accuracy"], "n_labeled": w["n_labeled"]} for w in run["windows"]}


def rows_for_nannyml(store: Path, windows: list, out: Path) -> None:
    """reference.csv (baseline sample) and analysis.csv (each window's ok records, with truth for checking only)."""
    from monitoring.analysis.actuals.labels import join_actuals, load_actuals
    from monitoring.analysis.baseline.store import load_baseline
    from monitoring.ingest.store.reader import read_records_df

    b = load_baseline(store, MODEL)
    m = b.metadata.dropna(subset=["pred_top_prob", "pred_label", "label"])
    pd.DataFrame({"y_pred_proba": m["pred_top_prob"].astype(float), "y_pred": 1,
                  "y_true": (m["pred_label"].astype(str) == m["label"].astype(str)).astype(int)}).to_csv(out / "reference.csv", index=False)
    df = read_records_df(store, MODEL, columns=["request_id", "ts_ms", "outcome", "pred_label", "pred_top_prob"])
    df = df[(df["outcome"].fillna("ok") == "ok") & df["pred_top_prob"].notna()].reset_index(drop=True)
    truth = join_actuals(df, load_actuals(store))
    parts = []
    for w in windows:
        sel = (df["ts_ms"] >= w.start_ms) & (df["ts_ms"] < w.end_ms)
        parts.append(pd.DataFrame({"week": w.label, "y_pred_proba": df.loc[sel, "pred_top_prob"].astype(float), "y_pred": 1,
                                   "y_true": (df.loc[sel, "pred_label"].astype(str) == truth[sel].astype(str)).astype(int)}))
    pd.concat(parts).to_csv(out / "analysis.csv", index=False)


def run_nannyml(directory: Path) -> dict:
    if not NANNYML_PYTHON.exists():
        return {"error": f"{NANNYML_PYTHON} missing: make build/venvs/nannyml/.installed"}
    proc = subprocess.run([str(NANNYML_PYTHON), str(ROOT / "bench" / "nannyml_cbpe.py"), str(directory)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _f(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    from monitoring.analysis.scoring.runner import score_model
    from monitoring.analysis.scoring.windows import Window

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=ROOT / "var" / "demo", help="a finished demo's workdir (summary.json, store/)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    summary = json.loads((args.demo / "summary.json").read_text())
    store = Path(summary["store"])
    windows = [Window(w["label"], w["start_ms"], w["end_ms"]) for w in summary["windows"]]
    truth = realized(store, windows)
    t0 = time.perf_counter()
    ours = score_model(store, MODEL, windows=windows, use_actuals=False)
    ours_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        rows_for_nannyml(store, windows, Path(tmp))
        nml = run_nannyml(Path(tmp))
    nml_weeks = {w["week"]: w for w in nml.get("weeks", [])}
    rows = []
    for w in ours["windows"]:
        e = w.get("accuracy_estimate") or {}
        n = nml_weeks.get(w["label"], {})
        acc = truth[w["label"]]["accuracy"]
        rows.append({
            "week": w["label"], "n": e.get("n"), "realized": acc,
            "ours": e.get("estimated_accuracy"), "ours_low": e.get("low"), "ours_high": e.get("high"), "ours_drop": e.get("is_drop"),
            "ours_miss": None if acc is None or e.get("estimated_accuracy") is None else e["estimated_accuracy"] - acc,
            "nannyml": n.get("estimated_accuracy"), "nannyml_low": n.get("low"), "nannyml_high": n.get("high"),
            "nannyml_alert": n.get("alert"),
            "nannyml_miss": None if acc is None or n.get("estimated_accuracy") is None else n["estimated_accuracy"] - acc,
            "drift": w.get("drifted", []),
        })
    date = dt.date.today().isoformat()
    result = {"date": date, "demo": str(args.demo), "reference_rows": ours["baseline"]["n"], "ours_seconds_all_windows": round(ours_s, 2),
              "nannyml": {k: v for k, v in nml.items() if k != "weeks"}, "weeks": rows,
              "method": {"ours": "isotonic calibration of top-1 probability on the baseline's labels; band = 95% "
                                 "(Poisson-binomial sampling + bootstrap calibration sd)",
                         "nannyml": "CBPE classification_binary on (top-1 prob, claims-right, was-right); band = its default "
                                    "3 sampling-error sds"}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"accuracy-{date}.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Label-free accuracy: ours vs NannyML CBPE ({date})", "",
             f"Demo store {args.demo} (`python -m bench.demo` defaults); reference = baseline sample "
             f"({result['reference_rows']} labelled rows); NannyML {nml.get('nannyml', nml.get('error', '?'))}.", "",
             "| week | n | realized | ours [95% band] | ours miss | NannyML CBPE [band] | NannyML miss | drift verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['week']} | {r['n']} | {_f(r['realized'])} | {_f(r['ours'])} [{_f(r['ours_low'])}, {_f(r['ours_high'])}]"
                     f"{' drop' if r['ours_drop'] else ''} | {_f(r['ours_miss'], '+.3f')} | {_f(r['nannyml'])} "
                     f"[{_f(r['nannyml_low'])}, {_f(r['nannyml_high'])}] | {_f(r['nannyml_miss'], '+.3f')} | "
                     f"{', '.join(r['drift']) or 'none'} |")
    lines += ["", "miss = estimate - realized accuracy. Both estimators calibrate the top-1 probability on the same baseline "
              "rows and see no window label; both assume P(label | input) did not move, so the relabelled week "
              "(concept shift) is missed by construction. Blurred/darkened weeks: the calibration learnt on clean "
              "digits does not transfer exactly to corrupted ones (the model is over-confident on blur, under-"
              "confident on darkening here), which is the miss shown."]
    (args.out / f"accuracy-{date}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
