"""Score windows of captured records against a stored baseline; save and reload the results."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from monitoring.artifacts import backend_of, read_json, scores_prefix, write_json
from monitoring.drift.result import to_jsonable
from monitoring.baseline.sources import embeddings_from_column
from monitoring.baseline.store import METADATA_FIELDS, Baseline, load_baseline

from .windows import Window, count_windows, iso, parse_every, time_windows

#: Windows with fewer scoreable rows than this are reported but not tested.
DEFAULT_MIN_WINDOW = 30
RESULT_FIELDS = ("statistic", "threshold", "p_value", "is_drift", "window_size")
RECORD_COLUMNS = ["request_id", "ts_ms", "outcome", "embedding", "pred_label", "pred_top_prob", "pred_entropy", *METADATA_FIELDS]


def _ids(positions: Sequence[int], request_ids: Sequence[str]) -> list[str]:
    return [str(request_ids[int(p)]) for p in positions if 0 <= int(p) < len(request_ids)]


def explain(results: dict[str, Any], request_ids: Sequence[str], accuracy: float | None = None,
            reference_accuracy: float | None = None) -> dict[str, Any]:
    """What to tell a person: which inputs moved, which clusters, which requests; positions -> request ids."""
    out: dict[str, Any] = {}
    drifted = [k for k, r in results.items() if r.is_drift]
    parts = []
    meta = results.get("metadata")
    if meta is not None:
        e = meta.explanation
        out["top_field"] = e.get("top_field")
        out["drifted_fields"] = e.get("drifted_fields", [])
        moves = []
        for f in e.get("fields", []):
            if not f.get("drifted"):
                continue
            way = "lower" if f["window_median"] < f["baseline_median"] else "higher"
            moves.append(f"{f['field']} {way} than baseline (median {f['window_median']:.4g} vs {f['baseline_median']:.4g})")
        out["field_moves"] = moves
        if moves:
            parts.append("inputs: " + "; ".join(moves[:3]))
    cj = results.get("cluster_jsd")
    if cj is not None:
        out["clusters"] = [
            {k: c[k] for k in ("cluster", "direction", "delta", "window_count", "expected_count")}
            | {"request_ids": _ids(c.get("window_positions", []), request_ids)}
            for c in cj.explanation.get("top_clusters", [])
        ]
    mmd = results.get("mmd")
    if mmd is not None:
        out["most_unusual_request_ids"] = _ids(mmd.explanation.get("witness_top_positions", []), request_ids)
    dc = results.get("domain_classifier")
    if dc is not None:
        out["most_window_like_request_ids"] = _ids(dc.explanation.get("most_window_like_positions", []), request_ids)
    cen = results.get("centroid")
    if cen is not None:
        out["centroid_top_dimensions"] = cen.explanation.get("top_dimensions", [])[:5]
    emb = [k for k in drifted if k != "metadata"]
    head = ("embedding drift (" + ", ".join(emb) + ")") if emb else "no embedding drift"
    if accuracy is not None:
        acc = f"accuracy {accuracy:.2f}"
        if reference_accuracy is not None:
            acc += f" (first window {reference_accuracy:.2f})"
        parts.append(acc)
    out["summary"] = head + ("; " + "; ".join(parts) if parts else "")
    return out


def score_window(suite: Any, df: pd.DataFrame, *, metadata_cols: Sequence[str] | None, min_window: int = DEFAULT_MIN_WINDOW,
                 truth: pd.Series | None = None, reference_accuracy: float | None = None) -> dict[str, Any]:
    """Score one window's records (a frame with ``embedding``, metadata and ``request_id``)."""
    from monitoring.actuals.labels import accuracy_of

    ok = df[df["outcome"].fillna("ok") == "ok"] if "outcome" in df.columns else df
    X, mask = embeddings_from_column(ok["embedding"]) if len(ok) else (np.empty((0, 0), np.float32), np.zeros(0, bool))
    rows = ok[mask].reset_index(drop=True)
    out: dict[str, Any] = {"n_records": int(len(df)), "n_errors": int(len(df) - len(ok)), "n": int(len(rows))}
    if truth is not None:
        acc, n_lab = accuracy_of(df["pred_label"], truth.loc[df.index])
    else:
        acc, n_lab = None, 0
    out["accuracy"], out["n_labeled"] = acc, n_lab
    if len(rows) < min_window:
        out.update(scored=False, skipped_reason=f"{len(rows)} scoreable records (< --min-window {min_window})",
                   any_drift=False, drifted=[], methods={}, metadata_top=[], explanation={})
        return out
    meta = None
    if metadata_cols and getattr(suite, "metadata_fitted_", False):
        meta = rows[[c for c in suite.metadata.fields_ if c in rows.columns]].apply(pd.to_numeric, errors="coerce")
        if meta.shape[1] < len(suite.metadata.fields_) or meta.notna().sum().sum() == 0:
            meta = None
    results = suite.score(X, meta)
    out["scored"] = True
    out["any_drift"] = any(r.is_drift for r in results.values())
    out["drifted"] = [k for k, r in results.items() if r.is_drift]
    out["methods"] = to_jsonable({k: {f: getattr(r, f) for f in RESULT_FIELDS} for k, r in results.items()})
    if "metadata" in results:
        out["metadata_top"] = [
            {k: f[k] for k in ("field", "ks_statistic", "p_adjusted", "psi", "effect_size", "baseline_median", "window_median", "drifted")}
            for f in results["metadata"].explanation.get("fields", [])
        ]
    else:
        out["metadata_top"] = []
    out["metadata_top"] = to_jsonable(out["metadata_top"])
    out["explanation"] = to_jsonable(explain(results, rows["request_id"].tolist(), acc, reference_accuracy))
    out["_results"] = results  # in-process callers (report) get the full DriftResults; not saved
    return out


def make_windows(ts: np.ndarray, *, every: str | None, every_n: int | None, windows: Sequence[Window] | None,
                 since_ms: int | None, until_ms: int | None) -> tuple[list[Window], dict[str, Any]]:
    if windows:
        return list(windows), {"kind": "explicit"}
    if every_n:
        return count_windows(ts, every_n), {"kind": "count", "every_n": int(every_n)}
    if every:
        return time_windows(ts, parse_every(every), since_ms, until_ms), {"kind": "time", "every": every}
    if ts.size == 0 and (since_ms is None or until_ms is None):
        return [], {"kind": "range"}
    a = since_ms if since_ms is not None else int(ts.min())
    b = until_ms if until_ms is not None else int(ts.max()) + 1
    return [Window(f"{iso(a)} .. {iso(b)}", a, b)], {"kind": "range"}


def score_model(
    store: Any,
    model: str,
    *,
    baseline_version: int | None = None,
    baseline: Baseline | None = None,
    since: Any = None,
    until: Any = None,
    every: str | None = None,
    every_n: int | None = None,
    windows: Sequence[Window] | None = None,
    min_window: int = DEFAULT_MIN_WINDOW,
    use_actuals: bool = True,
    s3_endpoint_url: str | None = None,
    keep_results: bool = False,
) -> dict[str, Any]:
    """Score ``model``'s records window by window; returns the run as a JSON-able dict.

    Windows: ``windows`` (explicit), else ``every_n`` records, else ``every`` ("1h", "1d", "1w"),
    else one window over [since, until). Accuracy per window comes from posted actuals.
    """
    from monitoring.actuals.labels import join_actuals, load_actuals
    from monitoring.store.reader import read_records_df, to_epoch_ms

    backend = backend_of(store, s3_endpoint_url)
    b = baseline or load_baseline(backend, model, baseline_version)
    suite = b.fit_suite()
    since_ms, until_ms = to_epoch_ms(since), to_epoch_ms(until)
    if windows:
        lo, hi = min(w.start_ms for w in windows), max(w.end_ms for w in windows)
        since_ms = lo if since_ms is None else max(since_ms, lo)
        until_ms = hi if until_ms is None else min(until_ms, hi)
    df = read_records_df(backend, model, since_ms, until_ms, columns=RECORD_COLUMNS + ["model"])
    if len(df) and df["embedding"].notna().any():
        width = len(next(v for v in df["embedding"] if v is not None))
        if width != b.manifest["dim"]:
            raise ValueError(f"records of {model} have {width}-d embeddings but baseline v{b.version} has "
                             f"{b.manifest['dim']}-d: build a baseline from the served model")
    truth = None
    if use_actuals:
        act = load_actuals(backend)
        if len(act):
            truth = join_actuals(df, act)
            if truth.notna().sum() == 0:
                truth = None
    ts = df["ts_ms"].to_numpy(dtype=np.int64)
    wins, windowing = make_windows(ts, every=every, every_n=every_n, windows=windows, since_ms=since_ms, until_ms=until_ms)
    meta_cols = b.manifest.get("metadata_columns")
    out_windows = []
    first_acc = None
    for w in wins:
        if w.positions is not None:
            sub = df.iloc[w.positions[0]:w.positions[1]]
        else:
            sub = df[(ts >= w.start_ms) & (ts < w.end_ms)]
        res = score_window(suite, sub, metadata_cols=meta_cols, min_window=min_window, truth=truth, reference_accuracy=first_acc)
        entry = {"label": w.label, "start": iso(w.start_ms), "end": iso(w.end_ms), "start_ms": int(w.start_ms), "end_ms": int(w.end_ms)}
        entry.update(res)
        if first_acc is None and res.get("accuracy") is not None:
            first_acc = res["accuracy"]
        if not keep_results:
            entry.pop("_results", None)
        out_windows.append(entry)
    now = time.time()
    return {
        "model": model,
        "store": str(backend.url()),
        "created_at": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
        "created_ms": int(now * 1000),
        "baseline": {k: b.manifest.get(k) for k in ("version", "n", "dim", "created_at", "embedding_source", "source")},
        "detectors": b.detector_config,
        "windowing": dict(windowing, since_ms=since_ms, until_ms=until_ms, min_window=min_window),
        "has_actuals": truth is not None,
        "windows": out_windows,
    }


def save_scores(store: Any, run: dict[str, Any], s3_endpoint_url: str | None = None) -> str:
    """Write the run as ``run-<ms>.json`` and ``latest.json`` under the model's scores prefix."""
    backend = backend_of(store, s3_endpoint_url)
    clean = dict(run, windows=[{k: v for k, v in w.items() if k != "_results"} for w in run["windows"]])
    p = scores_prefix(run["model"])
    key = f"{p}run-{run['created_ms']:013d}.json"
    write_json(backend, key, clean)
    write_json(backend, f"{p}latest.json", clean)
    return key


def load_latest_scores(store: Any, model: str, s3_endpoint_url: str | None = None) -> dict[str, Any] | None:
    backend = backend_of(store, s3_endpoint_url)
    key = f"{scores_prefix(model)}latest.json"
    if not backend.exists(key):
        return None
    return read_json(backend, key)
