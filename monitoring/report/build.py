"""Build the report: drift per method over time with the calibrated threshold, accuracy, metadata
drift table, a 2-D map of baseline vs window embeddings, and the explanations."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


def plot_drift(run: dict[str, Any], path: Path) -> str:
    plt = _mpl()
    wins = [w for w in run["windows"] if w.get("scored")]
    methods = [m for m in METHOD_TITLES if any(m in w["methods"] for w in wins)]
    fig, axes = plt.subplots(len(methods), 1, figsize=(9, 2.1 * len(methods)), sharex=True, squeeze=False)
    x = np.arange(len(wins))
    for ax, m in zip(axes[:, 0], methods):
        stat = np.array([w["methods"].get(m, {}).get("statistic", np.nan) for w in wins], dtype=float)
        thr = np.array([w["methods"].get(m, {}).get("threshold", np.nan) for w in wins], dtype=float)
        drift = np.array([bool(w["methods"].get(m, {}).get("is_drift")) for w in wins])
        lo = 0.5 if m == "domain_classifier" else min(0.0, np.nanmin(stat) if stat.size else 0.0)
        ax.fill_between(x, lo, thr, step="mid", color="tab:green", alpha=0.15, label="no-drift band (calibrated threshold)")
        ax.step(x, thr, where="mid", color="tab:green", lw=1, ls="--")
        ax.plot(x, stat, "-", color="0.4", lw=1)
        ax.scatter(x[~drift], stat[~drift], color="tab:blue", zorder=3, label="ok")
        ax.scatter(x[drift], stat[drift], color="tab:red", zorder=3, label="drift")
        ax.set_ylabel(m, fontsize=8)
        ax.set_title(METHOD_TITLES[m], fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xticks(x, [_short(w["label"]) for w in wins], rotation=30, ha="right", fontsize=7)
    fig.suptitle(f"Drift per method over time — {run['model']}", fontsize=11)
    fig.tight_layout()
    return _png(fig, path)


def plot_accuracy(run: dict[str, Any], path: Path) -> str | None:
    plt = _mpl()
    wins = run["windows"]
    acc = np.array([np.nan if w.get("accuracy") is None else w["accuracy"] for w in wins], dtype=float)
    if np.all(np.isnan(acc)):
        return None
    x = np.arange(len(wins))
    fig, ax = plt.subplots(figsize=(9, 2.6))
    ax.plot(x, acc, "o-", color="tab:purple")
    for i, w in enumerate(wins):
        if w.get("any_drift"):
            ax.axvspan(i - 0.5, i + 0.5, color="tab:red", alpha=0.08)
        if not np.isnan(acc[i]):
            ax.annotate(f"{acc[i]:.2f} (n={w.get('n_labeled', 0)})", (i, acc[i]), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_xticks(x, [_short(w["label"]) for w in wins], rotation=30, ha="right", fontsize=7)
    ax.set_title("Accuracy from actuals (red shading: drifted windows)", fontsize=9, loc="left")
    fig.tight_layout()
    return _png(fig, path)


def projector(X_ref: np.ndarray, seed: int = 0):
    """(name, fitted 2-D projection function): UMAP when installed, else PCA."""
    try:
        import umap  # type: ignore[import-not-found]

        reducer = umap.UMAP(n_components=2, random_state=seed).fit(X_ref)
        return "UMAP", reducer.transform
    except Exception:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(X_ref)
        return "PCA", pca.transform


def plot_map(baseline, windows: list[tuple[str, np.ndarray, pd.DataFrame]], path: Path, seed: int = 0) -> tuple[str, str]:
    """Three panels: by dataset (baseline / each window), by predicted label, by correctness."""
    plt = _mpl()
    rng = np.random.default_rng(seed)
    Xb = baseline.embeddings
    bi = rng.choice(len(Xb), min(len(Xb), MAP_POINTS_BASELINE), replace=False)
    name, proj = projector(Xb[bi], seed)
    Pb = proj(Xb[bi])
    bmeta = baseline.space_metadata(baseline.primary_space).iloc[bi]  # metadata rows of the mapped space
    parts = [("baseline", Pb, bmeta)]
    for label, X, meta in windows:
        idx = rng.choice(len(X), min(len(X), MAP_POINTS_WINDOW), replace=False)
        parts.append((label, proj(X[idx]), meta.iloc[idx]))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    cmap = plt.get_cmap("tab10")
    for i, (label, P, _m) in enumerate(parts):
        axes[0].scatter(P[:, 0], P[:, 1], s=6, alpha=0.35 if i == 0 else 0.6, color="0.6" if i == 0 else cmap((i - 1) % 10),
                        label=_short(label, 28))
    axes[0].set_title("by dataset", fontsize=9)
    axes[0].legend(fontsize=7, markerscale=2)
    preds = sorted({str(v) for _, _, m in parts for v in (m["pred_label"].dropna() if "pred_label" in m else [])})
    pc = {p: cmap(i % 10) for i, p in enumerate(preds[:10])}
    for i, (label, P, m) in enumerate(parts):
        col = [pc.get(str(v), (0.7, 0.7, 0.7, 1.0)) for v in (m["pred_label"] if "pred_label" in m else [None] * len(P))]
        axes[1].scatter(P[:, 0], P[:, 1], s=6, alpha=0.5, c=col, marker="o" if i == 0 else "^")
    for p, c in pc.items():
        axes[1].scatter([], [], color=c, label=p, s=12)
    axes[1].set_title("by predicted label (o baseline, ^ windows)", fontsize=9)
    if pc:
        axes[1].legend(fontsize=7, ncol=2)
    cc = {"correct": "tab:green", "wrong": "tab:red", "no label": "0.75"}
    for i, (label, P, m) in enumerate(parts):
        truth = m["label"] if "label" in m else pd.Series([None] * len(P), index=m.index)
        pred = m["pred_label"] if "pred_label" in m else pd.Series([None] * len(P), index=m.index)
        status = np.where(truth.isna() | pred.isna(), "no label", np.where(truth.astype(str) == pred.astype(str), "correct", "wrong"))
        for s_, c in cc.items():
            sel = status == s_
            axes[2].scatter(P[sel, 0], P[sel, 1], s=6, alpha=0.5, color=c, marker="o" if i == 0 else "^")
    for s_, c in cc.items():
        axes[2].scatter([], [], color=c, label=s_, s=12)
    axes[2].set_title("by correctness (actuals)", fontsize=9)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Embeddings, baseline vs windows ({name} fitted on the baseline)", fontsize=11)
    fig.tight_layout()
    return _png(fig, path), name


def _window_frames(store: Any, run: dict[str, Any], baseline, s3_endpoint_url: str | None):
    """(label, X, meta with pred_label/label) for every scored window, read back from the store."""
    from monitoring.actuals.labels import join_actuals, load_actuals
    from monitoring.baseline.sources import embeddings_from_column
    from monitoring.store.reader import read_records_df
    from monitoring.baseline.spaces import SPACE_BY_NAME

    col = SPACE_BY_NAME[baseline.primary_space].column

    act = load_actuals(store, s3_endpoint_url)
    out = []
    for w in run["windows"]:
        if not w.get("scored"):
            continue
        df = read_records_df(store, run["model"], w["start_ms"], w["end_ms"],
                             columns=["request_id", "model", "outcome", col, "pred_label"], s3_endpoint_url=s3_endpoint_url)
        df = df[df["outcome"].fillna("ok") == "ok"]
        if not len(df):
            continue
        X, mask = embeddings_from_column(df[col])
        if X.shape[0] == 0 or X.shape[1] != baseline.embeddings.shape[1]:
            continue
        meta = df[mask].reset_index(drop=True)[["request_id", "model", "pred_label"]]
        meta["label"] = join_actuals(meta, act) if len(act) else None
        out.append((w["label"], X, meta))
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _f(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return html.escape(str(x))


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.drift{color:#b00;font-weight:600}.ok{color:#070}
img{max-width:100%}code{background:#f5f5f5;padding:1px 4px}.small{font-size:12px;color:#555}"""


def build_report(store: Any, model: str, out_dir: str | os.PathLike[str], *, run: dict[str, Any] | None = None,
                 s3_endpoint_url: str | None = None, title: str | None = None) -> Path:
    """Write ``<out_dir>/report.html`` (+ PNGs) for ``run`` (default: the latest saved scores)."""
    from monitoring.artifacts import backend_of
    from monitoring.baseline.store import load_baseline
    from monitoring.scoring.runner import load_latest_scores

    backend = backend_of(store, s3_endpoint_url)
    if run is None:
        run = load_latest_scores(backend, model)
        if run is None:
            raise LookupError(f"no saved scores for {model}: run `python -m monitoring score --model {model} ...` first "
                              "(or pass windowing options to `report`)")
    baseline = load_baseline(backend, model, run["baseline"]["version"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = [w for w in run["windows"] if w.get("scored")]
    sec: list[str] = []
    t = title or f"Drift report — {model}"
    sec.append(f"<h1>{html.escape(t)}</h1>")
    b = run["baseline"]
    src = b.get("source") or {}
    sec.append(f"<p class='small'>Baseline v{b['version']}: {b['n']} rows × {b['dim']} dims from {html.escape(str(src.get('kind')))} "
               f"({html.escape(str(b.get('embedding_source')))}), built {html.escape(str(b.get('created_at')))}. Scores computed "
               f"{html.escape(str(run['created_at']))}; alpha per method {run['detectors'].get('alpha')}; thresholds calibrated to each "
               f"window's size from a bootstrap null of the baseline.</p>")
    # summary table
    rows = []
    for w in run["windows"]:
        m = w.get("methods", {})
        verdict = ("<span class='drift'>DRIFT: " + ", ".join(w["drifted"]) + "</span>") if w.get("any_drift") else (
            "<span class='ok'>ok</span>" if w.get("scored") else html.escape(w.get("skipped_reason", "not scored")))
        rows.append([html.escape(w["label"]), w["n"], _f(w.get("accuracy"), ".2f"),
                     _f(m.get("cluster_jsd", {}).get("statistic")), _f(m.get("centroid", {}).get("statistic")),
                     _f(m.get("mmd", {}).get("p_value")), _f(m.get("domain_classifier", {}).get("statistic")),
                     html.escape(str(w.get("explanation", {}).get("top_field") or "–")), verdict])
    sec.append("<h2>Summary</h2>" + _table(["window", "n", "accuracy", "JSD", "centroid dist", "MMD p", "AUC", "metadata top field", "verdict"], rows))
    sec.append("<h2>Drift per method over time</h2><p class='small'>Green band: below the threshold calibrated to the window's "
               "size (no-drift region); red points alarmed.</p>")
    if scored:
        sec.append(f"<img alt='drift over time' src='data:image/png;base64,{plot_drift(run, out / 'drift_over_time.png')}'>")
    acc_png = plot_accuracy(run, out / "accuracy.png")
    sec.append("<h2>Accuracy over time</h2>")
    sec.append(f"<img alt='accuracy' src='data:image/png;base64,{acc_png}'>" if acc_png else
               "<p>No actuals posted (<code>python -m monitoring actuals --file labels.csv</code>).</p>")
    # metadata table
    sec.append("<h2>Metadata drift</h2><p class='small'>Per window, fields sorted by KS statistic; p-values Bonferroni-adjusted.</p>")
    for w in scored:
        if not w.get("metadata_top"):
            continue
        rows = [[html.escape(f["field"]), _f(f["ks_statistic"]), _f(f["p_adjusted"], ".2g"), _f(f["psi"], ".2f"), _f(f["effect_size"], ".2f"),
                 _f(f["baseline_median"], ".4g"), _f(f["window_median"], ".4g"),
                 "<span class='drift'>drift</span>" if f["drifted"] else "ok"] for f in w["metadata_top"]]
        sec.append(f"<h3>{html.escape(w['label'])}</h3>" + _table(
            ["field", "KS D", "p (adj.)", "PSI", "shift (sd)", "baseline median", "window median", ""], rows))
    sec.append(spaces_section(run))  # per space, prompts, settings, outputs (monitoring/report/generative.py)
    # map
    sec.append("<h2>Embedding map</h2>")
    frames = _window_frames(backend, run, baseline, s3_endpoint_url)
    if frames:
        b64, name = plot_map(baseline, frames, out / "embedding_map.png")
        sec.append(f"<p class='small'>{name} fitted on the baseline sample; windows projected with it. Correctness uses posted actuals.</p>"
                   f"<img alt='embedding map' src='data:image/png;base64,{b64}'>")
    else:
        sec.append("<p>No scored window with embeddings.</p>")
    # explanations
    sec.append("<h2>Explanation</h2>")
    for w in scored:
        e = w.get("explanation", {})
        items = [f"<li><b>{html.escape(e.get('summary', ''))}</b></li>"]
        for c in e.get("clusters", [])[:3]:
            items.append(f"<li>cluster {c['cluster']} {c['direction']} {abs(c['delta']) * 100:.0f} points of share "
                         f"({c['window_count']} vs {c['expected_count']:.0f} expected); e.g. requests "
                         f"<code>{html.escape(', '.join(c['request_ids'][:5]))}</code></li>")
        if e.get("most_unusual_request_ids"):
            items.append("<li>least baseline-like requests (MMD witness): <code>"
                         + html.escape(", ".join(e["most_unusual_request_ids"][:5])) + "</code></li>")
        if e.get("most_window_like_request_ids"):
            items.append("<li>most window-like requests (domain classifier): <code>"
                         + html.escape(", ".join(e["most_window_like_request_ids"][:5])) + "</code></li>")
        sec.append(f"<h3>{html.escape(w['label'])}</h3><ul>{''.join(items)}</ul>")
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(t)}</title>"
           f"<style>{CSS}</style></head><body>{''.join(sec)}</body></html>")
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
