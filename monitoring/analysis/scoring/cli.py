"""``python -m monitoring score``: drift (and accuracy) per window, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from monitoring.cli import add_store_args, command
from monitoring.analysis.scoring.result import MethodScore, ScoreRun, WindowScore, as_run

TABLE_METHODS = ("cluster_jsd", "centroid", "mmd", "domain_classifier", "metadata")


def _args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--baseline-version", type=int, default=None, help="default: the latest baseline")
    p.add_argument("--since", default=None, help="start (inclusive): ISO-8601 (naive = UTC), epoch s or ms")
    p.add_argument("--until", default=None, help="end (exclusive), same formats")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--every", default=None, metavar="PERIOD", help="aligned time windows: 1h, 6h, 1d, 1w, ...")
    g.add_argument("--every-n", type=int, default=None, metavar="N", help="windows of N consecutive records")
    g.add_argument("--window", action="append", default=None, metavar="LABEL=SINCE..UNTIL",
                   help="an explicit window (repeatable), e.g. week1=2024-05-06..2024-05-13")
    p.add_argument("--min-window", type=int, default=30, help="windows with fewer records are listed, not tested (default 30)")
    p.add_argument("--no-actuals", action="store_true", help="leave accuracy out")
    p.add_argument("--no-save", action="store_true", help="do not write the run to <store>/_monitoring/scores/")
    p.add_argument("--webhook", default=None, metavar="URL", help="POST a JSON summary here when a window alarms")
    p.add_argument("--json", action="store_true", help="one JSON object: model, baseline, windows[{start, end, n, accuracy, methods{...}, ...}]")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 3 when any window alarms (for CI/cron)")
    p.add_argument("--by", default=None, metavar="FIELD",
                   help="also score every segment (request parameter segment.FIELD), Bonferroni-corrected across segments")
    p.add_argument("--max-segments", type=int, default=None, metavar="N",
                   help="with --by: score the N-1 largest segments per window, pool the rest as (other) (default 10)")
    p.add_argument("--memory-budget-mb", type=float, default=2048.0, metavar="MB",
                   help="a range whose records would take more memory than this is scored by streaming partition states "
                        "(same verdicts, no row-level explanations) instead of in memory (default 2048)")
    p.add_argument("--full-width", action="store_true",
                   help="score every embedding space on its full vectors; by default a space wider than 128-d is scored "
                        "on the store's seeded 128-d projection (1/16 of the bytes; docs/drift.md)")


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def describe_quality(q: dict) -> str:
    from monitoring.analysis.scoring.quality import describe_quality as describe

    return describe(q) if q else ""


def _estimate(w: WindowScore) -> str:
    """``0.93 [0.90,0.95]`` (``!`` when it dropped), or ``-`` without a calibrated estimate."""
    e = w.detail("accuracy_estimate")
    if not e or e.get("estimated_accuracy") is None:
        return "-"
    return f"{e['estimated_accuracy']:.2f} [{e['low']:.2f},{e['high']:.2f}]" + ("!" if e.get("is_drop") else " ")


def _typed_methods(methods: dict | None) -> dict[str, MethodScore]:
    """A space's or segment's ``methods`` table (rendered details) as MethodScores."""
    return {k: MethodScore.from_json(k, v) for k, v in (methods or {}).items()}


def _stat(methods: dict[str, MethodScore], k: str, spec: str = ".3f") -> str:
    r = methods.get(k)
    if r is None or r.statistic is None:
        return "-"
    return format(r.statistic, spec) + ("*" if r.is_drift else " ")


def _p(methods: dict[str, MethodScore], k: str) -> str:
    r = methods.get(k)
    return _fmt(None if r is None else r.p_value, ".3f")


def format_table(run: ScoreRun | dict) -> str:
    """A human table: one line per window (reads the typed run; a saved run's JSON is read into one)."""
    run = as_run(run)
    b = run.baseline
    spaces = b.get("spaces") or {}
    if len(spaces) > 1:
        lines = [f"model {run.model}  baseline v{b['version']} (spaces: "
                 + ", ".join(f"{k} n={v['n']} dim={v['dim']}" for k, v in spaces.items()) + ")"]
    else:
        lines = [f"model {run.model}  baseline v{b['version']} (n={b['n']}, dim={b['dim']})"]
    head = f"{'window':<34} {'n':>6} {'acc':>5} {'est acc [95% band]':>18}  {'JSD':>11} {'centroid':>11} {'MMD p':>7} {'AUC':>11} {'meta top':>18}  verdict"
    lines.append(head)
    lines.append("-" * len(head))
    for w in run.windows:
        label = w.label if len(w.label) <= 34 else w.label[:33] + "~"
        m = w.methods
        acc = _fmt(w.detail("accuracy"), ".2f")
        if not w.scored:
            lines.append(f"{label:<34} {w.n:>6} {acc:>5} {_estimate(w):>18}  (not scored: {w.detail('skipped_reason')})")
            continue
        top = w.detail("explanation", {}).get("top_field") or "-"
        meta_flag = "*" if "metadata" in m and m["metadata"].is_drift else " "
        verdict = ("DRIFT: " + ",".join(w.drifted)) if w.any_drift else "ok"
        spaces = w.detail("spaces", {})
        primary = w.detail("primary_space")
        if len(spaces) > 1:
            label = f"{label[:26]} [{primary or 'image'}]"
        lines.append(f"{label:<34} {w.n:>6} {acc:>5} {_estimate(w):>18}  {_stat(m, 'cluster_jsd'):>11} "
                     f"{_stat(m, 'centroid'):>11} {_p(m, 'mmd'):>7} {_stat(m, 'domain_classifier'):>11} {top + meta_flag:>18}  {verdict}")
        for name, sp in spaces.items():  # the other embedding spaces, one line each
            if name == primary or len(spaces) < 2:
                continue
            if not sp.get("scored"):
                lines.append(f"{'  ' + name + ' space':<34} {sp['n']:>6} {'':>24}  (not scored: {sp.get('skipped_reason')})")
                continue
            sm = _typed_methods(sp["methods"])
            lines.append(f"{'  ' + name + ' space':<34} {sp['n']:>6} {'':>5} {'':>18}  {_stat(sm, 'cluster_jsd'):>11} {_stat(sm, 'centroid'):>11} "
                         f"{_p(sm, 'mmd'):>7} {_stat(sm, 'domain_classifier'):>11} {'':>18}  "
                         + (("DRIFT: " + ",".join(sp["drifted"])) if sp["any_drift"] else "ok"))
        seg = w.detail("segments")
        if seg:  # --by: one line per segment
            c = seg["correction"]
            for sv in seg["segments"]:
                name = f"  {seg['by']}={sv['value']}"
                name = name if len(name) <= 34 else name[:33] + "~"
                if not sv.get("scored"):
                    lines.append(f"{name:<34} {sv['n_records']:>6} {'':>24}  (not scored: {sv.get('skipped_reason')})")
                    continue
                sm = _typed_methods(sv.get("methods"))
                lines.append(f"{name:<34} {sv['n']:>6} {'':>5} {_fmt(sv.get('estimated_accuracy'), '.2f'):>18}  "
                             f"{_stat(sm, 'cluster_jsd'):>11} {_stat(sm, 'centroid'):>11} {_p(sm, 'mmd'):>7} "
                             f"{_stat(sm, 'domain_classifier'):>11} {'':>18}  "
                             + (("DRIFT: " + ",".join(sv["drifted"])) if sv.get("any_drift") else "ok")
                             + f"  [bonferroni m={c['m']}, alpha {c['alpha_per_segment']:.3g}]")
        dq = describe_quality(w.detail("data_quality", {}))
        if dq:
            lines.append(f"  data quality: {dq}")
    lines.append("* = above the threshold calibrated to the window's size, per embedding space (alpha per method "
                 f"{run.detectors.get('alpha')}); meta top = metadata field that moved most; est acc = accuracy estimated "
                 "without labels from calibrated confidences (! = band below the baseline's accuracy by more than its margin)")
    for w in run.windows:
        if w.scored and w.any_drift:
            lines.append(f"  {w.label}: {w.detail('explanation', {}).get('summary', '')}")
    return "\n".join(lines)


@command("score", help="score windows of captured records against the baseline (+ accuracy from actuals)", configure=_args)
def cmd_score(args: argparse.Namespace) -> int:
    from monitoring.analysis.scoring.runner import save_scores, score_run
    from monitoring.analysis.scoring.windows import parse_window_spec

    try:
        windows = [parse_window_spec(s) for s in args.window] if args.window else None
        typed = score_run(args.store, args.model, baseline_version=args.baseline_version, since=args.since, until=args.until,
                          every=args.every, every_n=args.every_n, windows=windows, min_window=args.min_window,
                          use_actuals=not args.no_actuals, s3_endpoint_url=args.s3_endpoint_url,
                          by=args.by, max_segments=args.max_segments, memory_budget_mb=args.memory_budget_mb,
                          full_width=args.full_width)
    except (ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = typed.to_json(keep_results=False)
    if not args.no_save:
        run["saved_as"] = save_scores(args.store, run, args.s3_endpoint_url)
    if args.webhook:
        from monitoring.analysis.alerts.webhook import alarm_payload, post_webhook

        payload = alarm_payload(typed)
        if payload is not None:
            try:
                status = post_webhook(args.webhook, payload)
                run["webhook"] = {"url": args.webhook, "status": status}
                if status >= 300:
                    print(f"warning: webhook {args.webhook} answered HTTP {status}", file=sys.stderr)
            except OSError as e:
                run["webhook"] = {"url": args.webhook, "error": str(e)}
                print(f"warning: webhook {args.webhook} failed: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(run))
    else:
        print(format_table(typed))
        if run.get("saved_as"):
            print(f"saved {run['saved_as']}")
    if args.fail_on_drift and any(w.any_drift for w in typed.windows):
        return 3
    return 0
