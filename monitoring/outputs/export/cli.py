"""``python -m monitoring export --to arize|fiddler|datacapture --model M [--since/--until] --out DIR``."""

from __future__ import annotations

import argparse
import os
import sys

from monitoring.cli import add_store_args, command


def _args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--to", required=True, choices=["arize", "fiddler", "datacapture"])
    p.add_argument("--model", required=True)
    p.add_argument("--since", default=None, help="window start (inclusive): ISO-8601 or epoch")
    p.add_argument("--until", default=None, help="window end (exclusive)")
    p.add_argument("--out", default=None, help="output directory (default var/exports/<to>/<model>)")
    p.add_argument("--baseline-version", type=int, default=None, help="arize/fiddler: the reference set (default: latest)")
    p.add_argument("--no-baseline", action="store_true", help="arize/fiddler: export the window only")
    p.add_argument("--endpoint", default="local-endpoint", help="datacapture: endpoint name in the key layout")
    p.add_argument("--variant", default="AllTraffic", help="datacapture: variant name in the key layout")


@command("export", help="export a window (+ baseline, actuals) for Arize, Fiddler or SageMaker Model Monitor", configure=_args)
def cmd_export(args: argparse.Namespace) -> int:
    from monitoring.outputs.export.frame import FEATURES, TAGS, align, baseline_frame, window_frame

    out = args.out or os.path.join("var", "exports", args.to, args.model)
    try:
        if args.to == "datacapture":
            return _datacapture(args, out)
        primary = window_frame(args.store, args.model, args.since, args.until, args.s3_endpoint_url)
        reference = None if args.no_baseline else align(
            baseline_frame(args.store, args.model, args.baseline_version, args.s3_endpoint_url), primary)
        if args.to == "arize":
            from monitoring.outputs.export.arize import write_arize

            paths = write_arize(primary, reference, out, list(FEATURES), list(TAGS))
        else:
            from monitoring.outputs.export.fiddler import write_fiddler

            paths = write_fiddler(primary, reference, out, args.model, list(FEATURES), list(TAGS))
    except (ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.to}: {len(primary)} window rows" + ("" if reference is None else f", {len(reference)} baseline rows"))
    if args.to == "arize" and reference is not None and reference["actual_label"].isna().all():
        print("  reference not written: the baseline has no actual labels, which Arize requires for a TRAINING set")
    for p in paths:
        print(f"  {p}")
    return 0


def _datacapture(args: argparse.Namespace, out: str) -> int:
    """Data Capture JSON lines of the window + Model Monitor ground truth for its posted actuals."""
    from monitoring.analysis.actuals.labels import load_actuals
    from monitoring.outputs.export.groundtruth import export_groundtruth
    from monitoring.ingest.store import open_backend
    from monitoring.ingest.store.datacapture import export_records
    from monitoring.ingest.store.reader import read_records

    recs = read_records(args.store, args.model, args.since, args.until, s3_endpoint_url=args.s3_endpoint_url).drop_columns(
        ["thumbnail"]).to_pylist()  # every embedding space travels in the events (issue 23); thumbnails do not
    if not recs:
        raise ValueError(f"no captured record for {args.model} in the window")
    dest = open_backend(out, args.s3_endpoint_url)
    name = f"{args.model}-export"
    keys = export_records(dest, recs, name, args.endpoint, args.variant, vectors=True)
    ids = {r["request_id"] for r in recs}
    act = load_actuals(open_backend(args.store, args.s3_endpoint_url), args.s3_endpoint_url)
    act = act[act["request_id"].isin(ids)]
    gt = export_groundtruth(dest, act, "groundtruth", name) if len(act) else []
    print(f"datacapture: {len(recs)} events in {len(keys)} file(s), {len(act)} ground-truth labels in {len(gt)} file(s) under {out}")
    for k in keys + gt:
        print(f"  {k}")
    return 0
