"""Score windows of captured records against a stored baseline; save and reload the results."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from monitoring.analysis.artifacts import read_json, scores_prefix, write_json
from monitoring.ingest.store.backend import open_backend
from monitoring.jsonable import to_jsonable
from monitoring.analysis.baseline.spaces import embeddings_from_column
from monitoring.analysis.baseline.spaces import SOURCE_COLUMNS, SPACE_BY_NAME, VECTOR_COLUMNS, qualified
from monitoring.analysis.baseline.store import METADATA_FIELDS, OUTPUT_COLUMNS, SETTINGS_COLUMNS, Baseline, load_baseline
from monitoring.analysis.drift.prompts import describe_prompt_shift, prompt_shift
from monitoring.analysis.drift.settings import describe_moves

from .result import MethodScore, ScoreRun, WindowScore
from .windows import Window, count_windows, iso, parse_every, time_windows

#: Windows with fewer scoreable rows than this are reported but not tested.
DEFAULT_MIN_WINDOW = 30
RESULT_FIELDS = ("statistic", "threshold", "p_value", "is_drift", "window_size")
RECORD_COLUMNS = list(dict.fromkeys(["request_id", "ts_ms", "outcome", *VECTOR_COLUMNS, *SOURCE_COLUMNS, "pred_label", "pred_top_prob",
                                     "pred_entropy", *METADATA_FIELDS, *SETTINGS_COLUMNS, *OUTPUT_COLUMNS, "prompt_hash", "prompt_text",
                                     "segment_attrs", "error_code", "error_message", "image_mode", "image_format"]))


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


@dataclass
class ModelFits:
    """Everything fitted on one baseline: a suite per embedding space, and the model-level
    metadata, settings and output detectors (each None when the baseline has nothing for it)."""

    baseline: Baseline
    spaces: dict[str, Any]
    metadata: Any = None
    settings: Any = None
    outputs: Any = None
    accuracy: Any = None  # AccuracyEstimator calibrated on the baseline's labels (issue 23), or None

    @classmethod
    def fit(cls, b: Baseline, *, full_width: bool = False) -> "ModelFits":
        """Fit every detector on ``b``. A space wider than the store's projection (128-d) is fitted
        on the projection of its sample (the suite records it as ``projection_``) and scores the
        store's projected column; ``full_width`` fits every space on the full embeddings."""
        from monitoring.analysis.drift.accuracy import fit_from_baseline
        from monitoring.ingest.store.projection import scoring_projection

        spaces = {name: b.fit_space(name, projection=scoring_projection(sp.embeddings.shape[1], full_width=full_width))
                  for name, sp in b.spaces.items()}
        return cls(b, spaces, b.fit_metadata(), b.fit_settings(), b.fit_outputs(), fit_from_baseline(b.metadata))

    def projection(self, space: str) -> Any:
        """The projection ``space``'s suite was fitted on (None: full width)."""
        return getattr(self.spaces[space], "projection_", None)

    def representation(self, space: str) -> str:
        """``"full"`` or ``"p128-s<seed>"``: what ``space`` is scored on (recorded in each run)."""
        from monitoring.ingest.store.projection import projection_spec

        return projection_spec(self.projection(space)) or "full"


def _result_dict(r: Any, space: str) -> dict[str, Any]:
    return {f: getattr(r, f) for f in RESULT_FIELDS} | {"space": space}


def score_space(fits: ModelFits, space: str, ok: pd.DataFrame, min_window: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One space of one window: ``(JSON-able entry, DriftResults or None)``."""
    sp = SPACE_BY_NAME[space]
    b = fits.baseline
    entry: dict[str, Any] = {"column": sp.column, "embedding_source": b.spaces[space].source}
    if sp.column in ok.columns and len(ok):
        X, mask = embeddings_from_column(ok[sp.column], sp.column)
    else:
        X, mask = np.empty((0, 0), np.float32), np.zeros(len(ok), bool)
    rows = ok[mask].reset_index(drop=True)
    entry["n"] = int(len(rows))
    if len(rows) < min_window:
        entry.update(scored=False, skipped_reason=f"{len(rows)} records with a {space} embedding (< --min-window {min_window})",
                     any_drift=False, drifted=[], methods={}, explanation={})
        return entry, None
    dim = b.spaces[space].embeddings.shape[1]
    if X.shape[1] != dim:
        raise ValueError(f"records of {b.model} have {X.shape[1]}-d {sp.column} but baseline v{b.version}'s {space} space "
                         f"is {dim}-d: build a baseline from the served model")
    proj = fits.projection(space)
    Xs = X if proj is None else proj.apply(X)  # the same seeded matrix the store's writer used
    results = fits.spaces[space].score(Xs)
    if proj is not None and "centroid" in results:
        # the moved dimensions of a random projection name no input feature: leave them out
        results["centroid"].explanation.pop("top_dimensions", None)
    entry.update(scored=True, any_drift=any(r.is_drift for r in results.values()),
                 drifted=[k for k, r in results.items() if r.is_drift],
                 methods=to_jsonable({k: _result_dict(r, space) for k, r in results.items()}),
                 explanation=to_jsonable(explain(results, rows["request_id"].tolist())))
    if space == "prompt" and "cluster_jsd" in fits.spaces[space].detectors:
        base_meta = b.space_metadata(space)
        base_text = base_meta["prompt_text"].tolist() if "prompt_text" in base_meta.columns else []
        win_text = rows["prompt_text"].tolist() if "prompt_text" in rows.columns else []
        base_hash = base_meta["prompt_hash"].tolist() if "prompt_hash" in base_meta.columns else []
        win_hash = rows["prompt_hash"].tolist() if "prompt_hash" in rows.columns else []
        Xb = b.spaces[space].embeddings if proj is None else proj.apply(b.spaces[space].embeddings)
        entry["prompts"] = to_jsonable(prompt_shift(base_text, win_text, cluster_detector=fits.spaces[space].detectors["cluster_jsd"],
                                                    X_baseline=Xb, X_window=Xs,
                                                    baseline_hashes=base_hash, window_hashes=win_hash))
    return entry, results


def score_window(fits: ModelFits, df: pd.DataFrame, *, min_window: int = DEFAULT_MIN_WINDOW,
                 truth: pd.Series | None = None, reference_accuracy: float | None = None) -> dict[str, Any]:
    """Score one window's records in every space of the baseline, plus metadata, settings and outputs.

    ``methods`` holds the primary space's detectors and the model-level ones (``metadata``,
    ``settings``, ``outputs``); every result names its ``space``; ``spaces`` has each space's
    verdict, methods and explanation (``prompts`` for the prompt space).
    """
    from monitoring.analysis.actuals.labels import accuracy_of

    ok = df[df["outcome"].fillna("ok") == "ok"] if "outcome" in df.columns else df
    ok = ok.reset_index(drop=True)
    primary = fits.baseline.primary_space
    out: dict[str, Any] = {"n_records": int(len(df)), "n_errors": int(len(df) - len(ok)), "primary_space": primary}
    if truth is not None:
        acc, n_lab = accuracy_of(df["pred_label"], truth.loc[df.index])
    else:
        acc, n_lab = None, 0
    out["accuracy"], out["n_labeled"] = acc, n_lab
    from .quality import window_quality

    out["data_quality"] = to_jsonable(window_quality(df))
    estimate = estimate_window_accuracy(fits, ok)
    if estimate is not None:
        out["estimated_accuracy"] = estimate["estimated_accuracy"]
        out["accuracy_estimate"] = estimate
    spaces: dict[str, Any] = {}
    all_results: dict[str, Any] = {}
    for name in fits.spaces:
        spaces[name], res = score_space(fits, name, ok, min_window)
        if res is not None:
            all_results[name] = res
    out["spaces"] = spaces
    out["n"] = spaces[primary]["n"]
    scored = [k for k, v in spaces.items() if v["scored"]]
    if not scored:
        out.update(scored=False, skipped_reason="; ".join(f"{k}: {v['skipped_reason']}" for k, v in spaces.items()),
                   any_drift=False, drifted=[], methods={}, metadata_top=[], explanation={})
        return out
    methods: dict[str, Any] = dict(spaces[primary]["methods"]) if spaces[primary]["scored"] else {}
    model_level: dict[str, Any] = {}
    if fits.metadata is not None and len(ok) >= min_window:
        frame = ok.reindex(columns=fits.metadata.fields_).apply(pd.to_numeric, errors="coerce")
        if frame.notna().sum().sum() > 0:
            try:
                model_level["metadata"] = fits.metadata.score(frame)
            except ValueError:
                pass
    if fits.settings is not None and len(ok) >= min_window:
        try:
            model_level["settings"] = fits.settings.score(ok)
        except ValueError:
            pass
    if fits.outputs is not None and len(df) >= min_window:
        model_level["outputs"] = fits.outputs.score(df)
    space_of = {"metadata": "metadata", "settings": "settings", "outputs": "outputs"}
    methods.update(to_jsonable({k: _result_dict(r, space_of[k]) for k, r in model_level.items()}))
    out["methods"] = methods
    out["scored"] = True
    drifted = [qualified(name, m) for name in scored for m in spaces[name]["drifted"]]
    drifted += [k for k, r in model_level.items() if r.is_drift]
    if estimate is not None and estimate["is_drop"]:
        drifted.append("estimated_accuracy")
    out["drifted"] = drifted
    out["any_drift"] = bool(drifted)
    meta = model_level.get("metadata")
    out["metadata_top"] = to_jsonable([
        {k: f[k] for k in ("field", "ks_statistic", "p_adjusted", "psi", "effect_size", "baseline_median", "window_median", "drifted")}
        for f in meta.explanation.get("fields", [])] if meta is not None else [])
    if "settings" in model_level:
        out["settings"] = to_jsonable(model_level["settings"].explanation)
    if "outputs" in model_level:
        out["outputs"] = to_jsonable(model_level["outputs"].explanation)
    primary_results = dict(all_results.get(primary, {}))
    if meta is not None:
        primary_results["metadata"] = meta
    ids = ok["request_id"].tolist()
    if primary in all_results:
        sp_col = SPACE_BY_NAME[primary].column
        ids = ok[[v is not None and len(v) > 0 for v in ok[sp_col]]]["request_id"].tolist()
    expl = explain(primary_results, ids, acc, reference_accuracy) if primary_results else {}
    expl["summary"] = summarize_window(out, expl.get("summary", ""))
    out["explanation"] = to_jsonable(expl)
    out["_results"] = {"spaces": all_results, **model_level, **all_results.get(primary, {})}
    return out


def estimate_window_accuracy(fits: ModelFits, ok: pd.DataFrame) -> dict[str, Any] | None:
    """Label-free accuracy of a window's successful predictions (None: no calibration or no predictions)."""
    if fits.accuracy is None or "pred_top_prob" not in ok.columns:
        return None
    conf = pd.to_numeric(ok["pred_top_prob"], errors="coerce").dropna()
    return to_jsonable(fits.accuracy.estimate(conf.to_numpy())) if len(conf) else None


def summarize_window(w: dict[str, Any], primary_summary: str) -> str:
    """One line over every space: which spaces drifted (and how prompts moved), settings, outputs."""
    parts = []
    for name, sp in w["spaces"].items():
        if sp.get("scored") and sp["drifted"]:
            line = f"{name} drift ({', '.join(sp['drifted'])})"
            if "prompts" in sp and sp["prompts"].get("available"):
                line += " -- " + describe_prompt_shift(sp["prompts"])
            parts.append(line)
    if not parts:
        parts.append("no embedding drift")
    head = primary_summary.split(";", 1)
    if len(head) == 2:  # keep the metadata / accuracy details of the primary explanation
        parts.append(head[1].strip())
    if w.get("settings", {}).get("drifted_fields"):
        parts.append("settings: " + "; ".join(describe_moves(w["settings"])))
    if w.get("outputs", {}).get("drifted_checks"):
        parts.append("outputs: " + ", ".join(w["outputs"]["drifted_checks"]))
    est = w.get("accuracy_estimate")
    if est and est.get("is_drop"):
        parts.append(f"estimated accuracy {est['estimated_accuracy']:.2f} [{est['low']:.2f}, {est['high']:.2f}] "
                     f"below baseline {est['reference_accuracy']:.2f} - {est['max_drop']:.2f} (no labels needed)")
    return "; ".join(parts)


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


#: Default memory budget of ``score``: a range whose records would take more than this in memory
#: is scored by streaming mergeable states partition by partition instead of reading it whole.
DEFAULT_MEMORY_BUDGET_MB = 2048.0
#: Records in memory take about this many times their Parquet bytes (Arrow table + pandas frame
#: + the window's float32 matrix); float embeddings barely compress, so the bytes are a fair guide.
MEMORY_PER_PARQUET_BYTE = 3.0


def estimate_memory_mb(backend: Any, model: str, since_ms: int | None, until_ms: int | None) -> float:
    """What reading ``model``'s records in [since, until) into one frame would take, in MB (from the listing)."""
    from monitoring.ingest.store.reader import list_files

    keys = set(list_files(backend, model, since_ms, until_ms))
    size = 0
    for day in {"/".join(k.split("/")[:2]) + "/" for k in keys}:  # one listing per day, as list_files does
        size += sum(e.size for e in backend.list(day) if e.key in keys)
    return size * MEMORY_PER_PARQUET_BYTE / 1e6


def score_model(store: Any, model: str, **kw: Any) -> dict[str, Any]:
    """Score ``model``'s records window by window; returns the run as a JSON-able dict.

    The same arguments as :func:`score_run`, whose typed :class:`ScoreRun` this serialises
    (``ScoreRun.from_json`` reads it back).
    """
    keep = bool(kw.get("keep_results", False))
    return score_run(store, model, **kw).to_json(keep_results=keep)


def score_run(
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
    by: str | None = None,
    max_segments: int | None = None,
    memory_budget_mb: float | None = DEFAULT_MEMORY_BUDGET_MB,
    engine: str = "auto",
    use_states: bool = True,
    full_width: bool = False,
) -> ScoreRun:
    """Score ``model``'s records window by window against its baseline: one engine, two ways in.

    Windows: ``windows`` (explicit), else ``every_n`` records, else ``every`` ("1h", "1d", "1w"),
    else one window over [since, until). Accuracy per window comes from posted actuals.

    ``engine``: ``"rows"`` reads the range into memory and scores each window's rows (full
    explanations: request ids, prompts, settings, outputs); ``"states"`` streams each hour
    partition into the detectors' mergeable states (:mod:`monitoring.analysis.fleet`) and never holds a
    window, so memory does not grow with the window; verdicts are the same (docs/fleet.md).
    ``"auto"`` (default) picks ``rows`` unless the range would take more than ``memory_budget_mb``.
    ``use_states`` (states engine): reuse and write the per-hour states under ``_monitoring/states/``.
    ``by``: also score every segment of each window (monitoring/analysis/scoring/segments.py; rows engine only).
    ``full_width``: score every space on its full embeddings; by default a space wider than the
    store's seeded projection (128-d) is scored on it (:meth:`ModelFits.fit`), on every engine.
    """
    from monitoring.analysis.actuals.labels import join_actuals, load_actuals
    from monitoring.ingest.store.reader import read_records_df, to_epoch_ms

    if engine not in ("auto", "rows", "states"):
        raise ValueError(f"engine must be 'auto', 'rows' or 'states', got {engine!r}")
    if memory_budget_mb is not None and not memory_budget_mb > 0:
        raise ValueError(f"memory_budget_mb must be > 0, got {memory_budget_mb}")
    backend = open_backend(store, s3_endpoint_url)
    b = baseline or load_baseline(backend, model, baseline_version)
    fits = ModelFits.fit(b, full_width=full_width)
    since_ms, until_ms = to_epoch_ms(since), to_epoch_ms(until)
    if windows:
        lo, hi = min(w.start_ms for w in windows), max(w.end_ms for w in windows)
        since_ms = lo if since_ms is None else max(since_ms, lo)
        until_ms = hi if until_ms is None else min(until_ms, hi)
    if engine == "auto":
        over = memory_budget_mb is not None and estimate_memory_mb(backend, model, since_ms, until_ms) > memory_budget_mb
        engine = "states" if over else "rows"
    if engine == "states":
        if by is not None:
            raise ValueError(f"--by {by!r}: segments need the records in memory; the range is over the memory budget "
                             f"({memory_budget_mb} MB): score a shorter range or raise the budget")
        if every_n:
            raise ValueError(f"--every-n {every_n}: windows of N records need the records in memory; the range is over "
                             f"the memory budget ({memory_budget_mb} MB): use --every or --window, or raise the budget")
        out_windows, windowing = _stream_windows(backend, fits, model, every=every, windows=windows, since_ms=since_ms,
                                                 until_ms=until_ms, min_window=min_window, use_states=use_states)
        has_actuals = False
    else:
        out_windows, windowing, has_actuals = _row_windows(backend, fits, model, read_records_df, join_actuals, load_actuals,
                                                           every=every, every_n=every_n, windows=windows, since_ms=since_ms,
                                                           until_ms=until_ms, min_window=min_window, use_actuals=use_actuals,
                                                           keep_results=keep_results, by=by, max_segments=max_segments)
    now = time.time()
    return ScoreRun(
        model=model,
        store=str(backend.url()),
        created_at=dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
        created_ms=int(now * 1000),
        baseline={k: b.manifest.get(k) for k in ("version", "n", "dim", "created_at", "embedding_source", "source")}
        | {"primary_space": b.primary_space,
           "spaces": {k: {"n": int(len(v.embeddings)), "dim": int(v.embeddings.shape[1]), "embedding_source": v.source,
                          "scored_on": fits.representation(k)}
                      for k, v in b.spaces.items()}},
        detectors=b.detector_config,
        windowing=dict(windowing, since_ms=since_ms, until_ms=until_ms, min_window=min_window, engine=engine),
        has_actuals=has_actuals,
        windows=out_windows,
    )


def _row_windows(backend: Any, fits: ModelFits, model: str, read_records_df: Any, join_actuals: Any, load_actuals: Any, *,
                 every: str | None, every_n: int | None, windows: Sequence[Window] | None, since_ms: int | None,
                 until_ms: int | None, min_window: int, use_actuals: bool,
                 keep_results: bool, by: str | None = None,
                 max_segments: int | None = None) -> tuple[list[WindowScore], dict[str, Any], bool]:
    """The in-memory engine: read the range once, score each window's rows."""
    b = fits.baseline
    df = read_records_df(backend, model, since_ms, until_ms, columns=RECORD_COLUMNS + ["model"])
    for name, sp in b.spaces.items():  # fail before scoring anything when a space's width changed
        col = SPACE_BY_NAME[name].column
        if len(df) and df[col].notna().any():
            width = len(next(v for v in df[col] if v is not None))
            if width != sp.embeddings.shape[1]:
                raise ValueError(f"records of {model} have {width}-d {col} but baseline v{b.version}'s {name} space has "
                                 f"{sp.embeddings.shape[1]}-d: build a baseline from the served model")
    truth = None
    if use_actuals:
        act = load_actuals(backend)
        if len(act):
            truth = join_actuals(df, act)
            if truth.notna().sum() == 0:
                truth = None
    ts = df["ts_ms"].to_numpy(dtype=np.int64)
    wins, windowing = make_windows(ts, every=every, every_n=every_n, windows=windows, since_ms=since_ms, until_ms=until_ms)
    out_windows = []
    first_acc = None
    seg_fits = None
    if by is not None:
        from .segments import DEFAULT_MAX_SEGMENTS, SegmentFits, cap_segments, describe_segments, score_segments

        from monitoring.capture.attributes import NAME_RE
        if not NAME_RE.match(by):
            raise ValueError(f"--by {by!r}: a segment attribute name matches [a-z][a-z0-9_]{{0,31}}")
        cap_segments(pd.Series([], dtype=object), max_segments or DEFAULT_MAX_SEGMENTS)  # check the cap early
        # segments in the window's own representation (no space projected: full width or all narrow)
        seg_fits = SegmentFits(b, full_width=all(fits.projection(name) is None for name in fits.spaces))
    for w in wins:
        if w.positions is not None:
            sub = df.iloc[w.positions[0]:w.positions[1]]
        else:
            sub = df[(ts >= w.start_ms) & (ts < w.end_ms)]
        res = score_window(fits, sub, min_window=min_window, truth=truth, reference_accuracy=first_acc)
        if seg_fits is not None:
            res["segments"] = score_segments(seg_fits, sub, by, min_window=min_window,
                                             max_segments=max_segments or DEFAULT_MAX_SEGMENTS)
            moved = describe_segments(res["segments"])
            if moved and res.get("explanation") is not None:
                res["explanation"]["summary"] = (res["explanation"].get("summary", "") + "; " + moved).lstrip("; ")
        if first_acc is None and res.get("accuracy") is not None:
            first_acc = res["accuracy"]
        if not keep_results:
            res.pop("_results", None)
        entry = WindowScore.from_json(dict(res, label=w.label, start_ms=int(w.start_ms), end_ms=int(w.end_ms)))
        entry.engine = "rows"
        out_windows.append(entry)
    return out_windows, windowing, truth is not None


def _stream_windows(backend: Any, fits: ModelFits, model: str, *, every: str | None, windows: Sequence[Window] | None,
                    since_ms: int | None, until_ms: int | None, min_window: int,
                    use_states: bool = True) -> tuple[list[WindowScore], dict[str, Any]]:
    """The streaming engine: every space's detectors (and metadata) from per-partition mergeable states.

    ``use_states``: read the state stored for each whole hour (made at ingest or by an earlier
    run) when it was made for this baseline from these files, and store the ones computed here."""
    from monitoring.analysis.fleet.score import score_windows as stream_score
    from monitoring.ingest.store.reader import list_files, partition_start_ms

    if windows:
        wins, windowing = list(windows), {"kind": "explicit"}
    else:
        if since_ms is None or until_ms is None:  # the range's hours, from the listing (no rows read)
            starts = [s for s in (partition_start_ms(k) for k in list_files(backend, model, since_ms, until_ms)) if s is not None]
            if not starts:
                return [], {"kind": "time" if every else "range"}
            since_ms = min(starts) if since_ms is None else since_ms
            until_ms = max(starts) + 3_600_000 if until_ms is None else until_ms
        if every:
            wins, windowing = time_windows(np.empty(0, np.int64), parse_every(every), since_ms, until_ms), {"kind": "time", "every": every}
        else:
            wins, windowing = [Window(f"{iso(since_ms)} .. {iso(until_ms)}", since_ms, until_ms)], {"kind": "range"}
    pairs = [(int(w.start_ms), int(w.end_ms)) for w in wins]
    primary = fits.baseline.primary_space
    from monitoring.analysis.fleet.states import StateCache

    per_space = {}
    for name, suite in fits.spaces.items():
        cache = StateCache.for_suite(backend, model, name, fits.baseline, suite) if use_states else None
        per_space[name] = stream_score(suite, backend, model, pairs, embedding_column=SPACE_BY_NAME[name].column,
                                       min_window=max(2, min_window), metadata=fits.metadata if name == primary else None,
                                       states=cache)
    out = []
    for i, w in enumerate(wins):
        spaces: dict[str, Any] = {}
        methods: dict[str, MethodScore] = {}
        drifted: list[str] = []
        for name, results in per_space.items():
            fw = results[i]
            emb = {k: r for k, r in fw.results.items() if k != "metadata"}
            entry: dict[str, Any] = {"column": SPACE_BY_NAME[name].column, "embedding_source": fits.baseline.spaces[name].source,
                                     "n": int(fw.n)}
            if not emb:
                entry.update(scored=False, skipped_reason=f"{fw.n} records with a {name} embedding (< --min-window {min_window})",
                             any_drift=False, drifted=[], methods={}, explanation={})
            else:
                ms = {k: MethodScore.from_result(k, name, r) for k, r in emb.items()}
                entry.update(scored=True, any_drift=any(m.is_drift for m in ms.values()),
                             drifted=[k for k, m in ms.items() if m.is_drift], methods={k: m.to_json() for k, m in ms.items()},
                             explanation={})
                drifted += [qualified(name, k) for k in entry["drifted"]]
                if name == primary:
                    methods.update(ms)
            if name == primary and "metadata" in fw.results:
                methods["metadata"] = MethodScore.from_result("metadata", "metadata", fw.results["metadata"])
                if fw.results["metadata"].is_drift:
                    drifted.append("metadata")
            spaces[name] = entry
        n = spaces[primary]["n"] if primary in spaces else 0
        scored = any(sp["scored"] for sp in spaces.values())
        details: dict[str, Any] = {"primary_space": primary, "accuracy": None, "n_labeled": 0, "spaces": spaces}
        if not scored:
            details["skipped_reason"] = "; ".join(f"{k}: {v['skipped_reason']}" for k, v in spaces.items())
        meta = per_space[primary][i].results.get("metadata") if primary in per_space else None
        details["metadata_top"] = to_jsonable([
            {k: f[k] for k in ("field", "ks_statistic", "p_adjusted", "psi", "effect_size", "baseline_median", "window_median", "drifted")}
            for f in meta.explanation.get("fields", [])] if meta is not None else [])
        ws = WindowScore(label=w.label, start_ms=int(w.start_ms), end_ms=int(w.end_ms), n=int(n), scored=scored,
                         any_drift=bool(drifted), drifted=drifted, methods=methods, engine="states", details=details)
        expl = {"top_field": meta.explanation.get("top_field") if meta is not None else None}
        expl["summary"] = summarize_window(ws.to_json(), "")
        ws.details["explanation"] = to_jsonable(expl)
        out.append(ws)
    return out, windowing


def save_scores(store: Any, run: dict[str, Any] | ScoreRun, s3_endpoint_url: str | None = None) -> str:
    """Write the run (its JSON dict, or a typed :class:`ScoreRun`) as ``run-<ms>.json`` and
    ``latest.json`` under the model's scores prefix."""
    if isinstance(run, ScoreRun):
        run = run.to_json(keep_results=False)
    backend = open_backend(store, s3_endpoint_url)
    clean = dict(run, windows=[{k: v for k, v in w.items() if k != "_results"} for w in run["windows"]])
    p = scores_prefix(run["model"])
    key = f"{p}run-{run['created_ms']:013d}.json"
    write_json(backend, key, clean)
    write_json(backend, f"{p}latest.json", clean)
    return key


def load_latest_scores(store: Any, model: str, s3_endpoint_url: str | None = None) -> dict[str, Any] | None:
    backend = open_backend(store, s3_endpoint_url)
    key = f"{scores_prefix(model)}latest.json"
    if not backend.exists(key):
        return None
    return read_json(backend, key)
