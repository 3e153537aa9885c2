"""Build the report: one self-contained interactive HTML page (plotly) with drift per method over
time (calibrated band, alert levels, each point opening its window), accuracy, the metadata drift
table, a UMAP map of baseline vs windows per embedding space (colour by any field, hover shows the
input thumbnail), and per window the clusters ranked by their drift contribution with their most
typical requests. Static PNGs of the two time charts are written beside it for tickets and e-mail."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from monitoring.analysis.alerts.levels import ALERT_LEVELS, level_of, window_levels, worst_level
from monitoring.analysis.baseline.spaces import embeddings_from_column
from monitoring.analysis.scoring.result import ScoreRun, WindowScore, as_run

from .explorer import MAP_MAX_POINTS, WINDOW_COLUMNS, Space, WindowRows, build_space, report_spaces
from .page import document, table

from .generative import spaces_section

METHOD_TITLES = {
    "cluster_jsd": "Cluster JSD (k-means shares)",
    "centroid": "Centroid distance",
    "mmd": "MMD\u00b2 (RBF, random features)",
    "domain_classifier": "Domain classifier AUC",
    "metadata": "Metadata: max KS D",
}
MAP_POINTS_BASELINE = 800
MAP_POINTS_WINDOW = 300


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = buf.getvalue()
    path.write_bytes(data)
    _mpl().close(fig)
    return base64.b64encode(data).decode()


def _short(label: str, n: int = 22) -> str:
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def _num(x: float | None) -> float:
    return np.nan if x is None else float(x)


def plot_drift(run: ScoreRun, path: Path) -> str:
    plt = _mpl()
    wins = [w for w in run.windows if w.scored]
    methods = [m for m in METHOD_TITLES if any(m in w.methods for w in wins)]
    fig, axes = plt.subplots(len(methods), 1, figsize=(9, 2.1 * len(methods)), sharex=True, squeeze=False)
    x = np.arange(len(wins))
    for ax, m in zip(axes[:, 0], methods):
        rs = [w.methods.get(m) for w in wins]
        stat = np.array([np.nan if r is None else _num(r.statistic) for r in rs], dtype=float)
        thr = np.array([np.nan if r is None else _num(r.threshold) for r in rs], dtype=float)
        drift = np.array([r is not None and r.is_drift for r in rs])
        lo = 0.5 if m == "domain_classifier" else min(0.0, np.nanmin(stat) if stat.size else 0.0)
        ax.fill_between(x, lo, thr, step="mid", color="tab:green", alpha=0.15, label="no-drift band (calibrated threshold)")
        ax.step(x, thr, where="mid", color="tab:green", lw=1, ls="--")
        ax.plot(x, stat, "-", color="0.4", lw=1)
        ax.scatter(x[~drift], stat[~drift], color="tab:blue", zorder=3, label="ok")
        ax.scatter(x[drift], stat[drift], color="tab:red", zorder=3, label="drift")
        ax.set_ylabel(m, fontsize=8)
        ax.set_title(METHOD_TITLES[m], fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xticks(x, [_short(w.label) for w in wins], rotation=30, ha="right", fontsize=7)
    fig.suptitle(f"Drift per method over time — {run.model}", fontsize=11)
    fig.tight_layout()
    return _png(fig, path)


def _with_detail(windows: Iterable[WindowScore], key: str) -> Iterator[tuple[WindowScore, Any]]:
    """(window, detail) for each window whose detail ``key`` is present and not empty: the windows a
    per-window section has something to show for."""
    for w in windows:
        value = w.detail(key)
        if value:
            yield w, value


def estimated_accuracy_series(run: ScoreRun) -> dict[str, list] | None:
    """Windows with a label-free accuracy estimate (issue 23): labels, estimate, 95 % band, window index."""
    rows = [(i, w, w.detail("accuracy_estimate")) for i, w in enumerate(run.windows)
            if w.detail("accuracy_estimate", {}).get("estimated_accuracy") is not None]
    if not rows:
        return None
    return {"labels": [w.label for _, w, _ in rows], "estimate": [e["estimated_accuracy"] for _, _, e in rows],
            "low": [e["low"] for _, _, e in rows], "high": [e["high"] for _, _, e in rows],
            "is_drop": [bool(e.get("is_drop")) for _, _, e in rows], "window": [i for i, _, _ in rows]}


def quality_section(run: ScoreRun) -> str:
    """Data quality per window (issue 23): errors by kind, decode failures, image sizes/modes, output checks."""
    rows = []
    for w, q in _with_detail(run.windows, "data_quality"):
        sizes = q.get("image_sizes") or {}
        rows.append([html.escape(w.label), q["n_records"], f"{q['error_share']:.1%}",
                     html.escape(", ".join(f"{k} {v}" for k, v in q["errors_by_code"].items()) or "–"),
                     q["decode_failures"],
                     html.escape(", ".join(f"{k} {v}" for k, v in (sizes.get("top") or {}).items()) or "–"),
                     html.escape(", ".join(f"{k} {v:.0%}" for k, v in (q.get("image_modes") or {}).items()) or "–"),
                     html.escape(", ".join(f"{k} {v:.1%}" for k, v in (q.get("output_checks") or {}).items()) or "–")])
    if not rows:
        return ""
    return ("<h2>Data quality</h2><p class='small'>Every record of the window, failed ones included: counts, not tests.</p>"
            + table(["window", "records", "errors", "by code", "decode failures", "image sizes (top)", "modes as sent",
                     "output checks"], rows))


def segments_section(run: ScoreRun) -> str:
    """A table per window scored with ``--by``: each segment's size, verdict and estimate (empty without)."""
    parts = []
    for w, seg in _with_detail(run.windows, "segments"):
        c = seg["correction"]
        rows = [[html.escape(f"{seg['by']}={sv['value']}"), sv["n_records"],
                 _f(sv.get("estimated_accuracy"), ".2f"),
                 ("<span class='drift'>DRIFT: " + html.escape(", ".join(sv["drifted"])) + "</span>") if sv.get("any_drift")
                 else ("ok" if sv.get("scored") else html.escape(sv.get("skipped_reason", "not scored")))]
                for sv in seg["segments"]]
        parts.append(f"<h3>{html.escape(w.label)}</h3><p class='small'>Each segment scored with thresholds calibrated "
                     f"to its own size; Bonferroni across the {c['m']} tested segments (alpha {c['alpha_per_segment']:.3g} "
                     "per method).</p>" + table(["segment", "records", "est. accuracy", "verdict"], rows))
    return ("<h2>Segments</h2>" + "".join(parts)) if parts else ""


def plot_accuracy(run: ScoreRun, path: Path) -> str | None:
    plt = _mpl()
    wins = run.windows
    acc = np.array([_num(w.detail("accuracy")) for w in wins], dtype=float)
    if np.all(np.isnan(acc)):
        return None
    x = np.arange(len(wins))
    fig, ax = plt.subplots(figsize=(9, 2.6))
    est = estimated_accuracy_series(run)
    if est is not None:  # label-free estimate with its 95 % band, beside the realized accuracy
        ex = np.array(est["window"])
        ax.fill_between(ex, est["low"], est["high"], color="tab:green", alpha=0.15, linewidth=0)
        ax.plot(ex, est["estimate"], "s--", color="tab:green", markersize=3, label="estimated (no labels)")
    ax.plot(x, acc, "o-", color="tab:purple", label="realized (actuals)")
    for i, w in enumerate(wins):
        if w.any_drift:
            ax.axvspan(i - 0.5, i + 0.5, color="tab:red", alpha=0.08)
        if not np.isnan(acc[i]):
            ax.annotate(f"{acc[i]:.2f} (n={w.detail('n_labeled', 0)})", (i, acc[i]), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_xticks(x, [_short(w.label) for w in wins], rotation=30, ha="right", fontsize=7)
    ax.set_title("Accuracy from actuals and estimated without labels (red shading: drifted windows)", fontsize=9, loc="left")
    if est is not None:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _png(fig, path)


def _f(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return html.escape(str(x))


def _window_rows(backend: Any, run: ScoreRun, space: Space, s3_endpoint_url: str | None) -> list[WindowRows]:
    """Every scored window's rows in ``space`` (vectors + request details + posted actuals)."""
    from monitoring.analysis.actuals.labels import join_actuals, load_actuals
    from monitoring.ingest.store.reader import read_records_df
    from monitoring.ingest.store.schema import RECORD_SCHEMA

    act = load_actuals(backend, s3_endpoint_url)
    cols = [c for c in dict.fromkeys([*WINDOW_COLUMNS, space.column]) if c in RECORD_SCHEMA.names]
    out = []
    for i, w in enumerate(run.windows):
        if not w.scored:
            continue
        df = read_records_df(backend, run.model, w.start_ms, w.end_ms, columns=["model", *cols],
                             s3_endpoint_url=s3_endpoint_url)
        df = df[df["outcome"].fillna("ok") == "ok"]
        if not len(df):
            continue
        X, mask = embeddings_from_column(df[space.column], space.column)
        if X.shape[0] == 0:
            continue
        meta = df[mask].reset_index(drop=True)
        meta["label"] = join_actuals(meta, act) if len(act) else None
        out.append(WindowRows(i, w.label, X, meta.drop(columns=[space.column])))
    return out


def _drift_series(run: ScoreRun) -> list[dict[str, Any]]:
    """Per method: statistic, calibrated threshold, band floor, level and p-value of every scored window."""
    wins = [(i, w) for i, w in enumerate(run.windows) if w.scored]
    out: list[dict[str, Any]] = []
    for m, title in METHOD_TITLES.items():
        if not any(m in w.methods for _, w in wins):
            continue
        rs = [w.methods.get(m) for _, w in wins]
        stat = [None if r is None else r.statistic for r in rs]
        lo = 0.5 if m == "domain_classifier" else min([0.0] + [v for v in stat if v is not None])
        out.append({"method": m, "title": title, "labels": [w.label for _, w in wins], "window": [i for i, _ in wins],
                    "statistic": stat, "threshold": [None if r is None else r.threshold for r in rs], "lower": [lo] * len(wins),
                    "p_value": [None if r is None else r.p_value for r in rs],
                    "level": [level_of(r.to_json()) if r is not None else "ok" for r in rs],
                    "first": not out})
    return out


def _thumb(card: dict[str, Any]) -> str:
    t = card.get("thumbnail")
    return (f"<img alt='input thumbnail' src='data:image/jpeg;base64,{html.escape(t)}'>" if t
            else "<div class='noimg'>no thumbnail</div>")


def _example(card: dict[str, Any]) -> str:
    meta = ", ".join(f"{html.escape(k)} {_f(v, '.3g')}" for k, v in list(card["metadata"].items())[:4])
    return (f"<div class='ex'>{_thumb(card)}<b>{html.escape(str(card['request_id']))}</b><br>{html.escape(str(card['time'] or ''))}"
            f"<br>pred {html.escape(str(card['prediction']))} · label {html.escape(str(card['label']))}<br>{meta}</div>")


def _window_section(i: int, w: WindowScore, spaces: list[dict[str, Any]]) -> str:
    lv = window_levels(w)
    rows = [[html.escape(m), _f(r.statistic, ".4g"), _f(r.threshold, ".4g"), _f(r.p_value, ".2g"),
             f"<span class='{lv[m]}'>{lv[m]}</span>"] for m, r in w.methods.items()]
    e = w.detail("explanation", {})
    parts = [f"<section id='window-{i}'><h3>{html.escape(w.label)}</h3>",
             f"<p><b>{html.escape(e.get('summary', ''))}</b> — n={w.n}, accuracy {_f(w.detail('accuracy'), '.2f')}. "
             f"<button onclick='explorerShowWindow({i})'>show on the map</button></p>",
             table(["method", "statistic", "threshold", "p", "level"], rows)]
    for sp in spaces:
        sw = next((x for x in sp["windows"] if x["index"] == i), None)
        if sw is None:
            continue
        parts.append(f"<p class='small'>{html.escape(sp['name'])} space: clusters ranked by their share of the cluster JSD "
                     f"({sw['jsd']:.3f} over all {sw['n']} rows); open one for its most typical requests (closest to its centre).</p>")
        for c in sw["clusters"][:5]:
            ex = "".join(_example(x) for x in c["examples"]) or "<p class='small'>no request of this window is in it (it lost all its mass)</p>"
            parts.append(f"<details class='cluster'><summary>cluster {c['cluster']}: {c['contribution'] * 100:.0f}% of the drift, "
                         f"{c['direction']} ({c['window_count']} rows vs {c['expected_count']:.0f} expected; share "
                         f"{c['window_share']:.2f} vs {c['baseline_share']:.2f})</summary><div class='examples'>{ex}</div></details>")
    if e.get("most_unusual_request_ids"):
        parts.append("<p class='small'>least baseline-like requests (MMD witness): <code>"
                     + html.escape(", ".join(e["most_unusual_request_ids"][:5])) + "</code></p>")
    if e.get("most_window_like_request_ids"):
        parts.append("<p class='small'>most window-like requests (domain classifier): <code>"
                     + html.escape(", ".join(e["most_window_like_request_ids"][:5])) + "</code></p>")
    return "".join(parts) + "</section>"


def _map_section(si: int, sp: dict[str, Any]) -> str:
    opts = [("dataset", "dataset (baseline / window)"), ("pred", "predicted label"), ("correct", "correctness (actuals)"),
            ("cluster", "drift cluster")] + [(f, f) for f in sp["fields"]]
    sel = "".join(f"<option value='{html.escape(v)}'>{html.escape(t)}</option>" for v, t in opts)
    shown = ", ".join(f"{html.escape(d)} {s:,} of {n:,}" for d, s, n in zip(sp["datasets"], sp["n_shown"], sp["n_total"]))
    return (f"<h3>{html.escape(sp['name'])} embeddings <span class='small'>({html.escape(str(sp['column']))}, "
            f"{html.escape(str(sp['source']))})</span></h3>"
            f"<p class='small'>{sp['projection']} fitted on the baseline sample; windows projected with it. "
            f"<b class='sample-size'>Sample shown: {sum(sp['n_shown']):,} of {sum(sp['n_total']):,} points</b> ({shown}; uniform "
            f"per dataset, at most {MAP_MAX_POINTS:,}); cluster rankings use every row. Hover a point for its request and "
            f"input thumbnail, click to pin it.</p><p>colour by <select id='colorby-{si}'>{sel}</select> "
            f"<button onclick='explorerShowWindow(null)'>all windows</button></p>"
            f"<div class='mapwrap'><div class='map' id='map-{si}'></div><div class='details' id='details-{si}'>"
            f"<span class='small'>click a point</span></div></div>")


def build_report(store: Any, model: str, out_dir: str | os.PathLike[str], *, run: ScoreRun | dict[str, Any] | None = None,
                 s3_endpoint_url: str | None = None, title: str | None = None, projection: str = "umap",
                 max_points: int = MAP_MAX_POINTS) -> Path:
    """Write ``<out_dir>/report.html`` (+ two PNGs) for ``run`` (a typed run, or a saved run's JSON;
    default: the latest saved scores). The page reads the typed run.

    ``projection``: ``umap`` (default; PCA when umap-learn is missing) or ``pca``.
    ``max_points``: points drawn per map (sampled; the page states the sample size).
    """
    from monitoring.ingest.store.backend import open_backend
    from monitoring.analysis.baseline.store import load_baseline
    from monitoring.analysis.scoring.runner import load_latest_scores

    backend = open_backend(store, s3_endpoint_url)
    if run is None:
        run = load_latest_scores(backend, model)
        if run is None:
            raise LookupError(f"no saved scores for {model}: run `python -m monitoring score --model {model} ...` first "
                              "(or pass windowing options to `report`)")
    run = as_run(run)
    baseline = load_baseline(backend, model, run.baseline["version"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = [w for w in run.windows if w.scored]
    t = title or f"Drift report — {model}"
    sec = [f"<h1>{html.escape(t)}</h1>"]
    b = run.baseline
    src = b.get("source") or {}
    sec.append(f"<p class='small'>Baseline v{b['version']}: {b['n']} rows × {b['dim']} dims from {html.escape(str(src.get('kind')))} "
               f"({html.escape(str(b.get('embedding_source')))}), built {html.escape(str(b.get('created_at')))}. Scores computed "
               f"{html.escape(str(run.created_at))}; alpha per method {run.detectors.get('alpha')}; thresholds calibrated to each "
               f"window's size from a bootstrap null of the baseline. Alert levels: warning p ≤ {ALERT_LEVELS['warning']}, "
               f"critical p ≤ {ALERT_LEVELS['critical']}.</p>")
    rows = []
    for i, w in enumerate(run.windows):
        m = w.methods
        lvl = worst_level(window_levels(w))
        verdict = (f"<span class='{lvl}'>DRIFT ({lvl}): " + ", ".join(w.drifted) + "</span>") if w.any_drift else (
            "<span class='ok'>ok</span>" if w.scored else html.escape(w.detail("skipped_reason", "not scored")))
        label = f"<a href='#window-{i}'>{html.escape(w.label)}</a>" if w.scored else html.escape(w.label)
        est = w.detail("accuracy_estimate", {})
        est_cell = "–" if est.get("estimated_accuracy") is None else (
            f"{est['estimated_accuracy']:.2f} [{est['low']:.2f}, {est['high']:.2f}]"
            + (" <span class='warning'>drop</span>" if est.get("is_drop") else ""))
        def stat(k: str) -> float | None:
            return m[k].statistic if k in m else None

        rows.append([label, w.n, _f(w.detail("accuracy"), ".2f"), est_cell, _f(stat("cluster_jsd")), _f(stat("centroid")),
                     _f(m["mmd"].p_value if "mmd" in m else None), _f(stat("domain_classifier")),
                     html.escape(str(w.detail("explanation", {}).get("top_field") or "–")), verdict])
    sec.append("<h2>Summary</h2>" + table(["window", "n", "accuracy", "est. accuracy [95%]", "JSD", "centroid dist", "MMD p", "AUC", "metadata top field", "verdict"], rows))
    sec.append("<h2>Drift per method over time</h2><p class='small'>Green band: below the threshold calibrated to the window's "
               "size (no-drift region); orange points warning, red critical. Click a point to open its window.</p>")
    drift = _drift_series(run)
    sec.extend(f"<div class='drift-chart' id='drift-{d['method']}'></div>" for d in drift)
    if scored:
        plot_drift(run, out / "drift_over_time.png")
    acc_png = plot_accuracy(run, out / "accuracy.png")
    sec.append("<h2>Accuracy over time</h2>")
    accuracy = None
    if acc_png:
        lab = [(i, w) for i, w in enumerate(run.windows) if w.detail("accuracy") is not None]
        accuracy = {"labels": [w.label for _, w in lab], "accuracy": [w.detail("accuracy") for _, w in lab],
                    "n_labeled": [w.detail("n_labeled", 0) for _, w in lab], "window": [i for i, _ in lab]}
    estimated = estimated_accuracy_series(run)
    if acc_png or estimated:
        if estimated:
            sec.append("<p class='small'>Green: accuracy estimated without labels from the model's confidences, calibrated "
                       "on the baseline (95 % band). It assumes what inputs mean did not change: a relabelling "
                       "(concept shift) keeps the estimate up while the realized accuracy falls.</p>")
        sec.append("<div class='drift-chart' id='accuracy-chart'></div>")
    if not acc_png:
        sec.append("<p>No actuals posted (<code>python -m monitoring actuals --file labels.csv</code>).</p>")
    sec.append("<h2>Metadata drift</h2><p class='small'>Per window, fields sorted by KS statistic; p-values Bonferroni-adjusted.</p>")
    for w, top in _with_detail(scored, "metadata_top"):
        rows = [[html.escape(f["field"]), _f(f["ks_statistic"]), _f(f["p_adjusted"], ".2g"), _f(f["psi"], ".2f"), _f(f["effect_size"], ".2f"),
                 _f(f["baseline_median"], ".4g"), _f(f["window_median"], ".4g"),
                 "<span class='drift'>drift</span>" if f["drifted"] else "ok"] for f in top]
        sec.append(f"<h3>{html.escape(w.label)}</h3>" + table(
            ["field", "KS D", "p (adj.)", "PSI", "shift (sd)", "baseline median", "window median", ""], rows))
    sec.append(segments_section(run))  # score --by: per-segment verdicts (issue 23)
    sec.append(quality_section(run))
    sec.append(spaces_section(run))  # per space: verdicts, moved prompts, settings, outputs (report/generative.py)
    sec.append("<h2 id='map-section'>Embedding map</h2>")
    spaces = []
    for space in report_spaces(baseline):
        wins = _window_rows(backend, run, space, s3_endpoint_url)
        if wins:
            spaces.append(build_space(space, wins, cluster_config=baseline.detector_config, projection=projection,
                                      max_points=max_points))
    sec.extend(_map_section(si, sp) for si, sp in enumerate(spaces))
    if not spaces:
        sec.append("<p>No scored window with embeddings.</p>")
    sec.append("<h2>Windows</h2><p class='small'>Per window: each method's level, the drift clusters ranked by contribution "
               "with their most typical requests, and the requests the detectors single out.</p>")
    sec.extend(_window_section(i, w, spaces) for i, w in enumerate(run.windows) if w.scored)
    data = {"model": model, "drift": drift, "accuracy": accuracy, "estimated_accuracy": estimated, "spaces": spaces,
            "windows": {str(i): {"label": w.label} for i, w in enumerate(run.windows)}}
    path = out / "report.html"
    path.write_text(document(t, "".join(sec), data), encoding="utf-8")
    return path
