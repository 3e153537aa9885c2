"""``python -m monitoring report --model M``."""

from __future__ import annotations

import argparse
import os
import sys

from monitoring.cli import add_store_args, command


def _args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None, help="output directory (default var/reports/<model>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--every", default=None, metavar="PERIOD", help="score now with these time windows (default: the latest saved scores)")
    g.add_argument("--every-n", type=int, default=None, metavar="N", help="score now with N-record windows")
    p.add_argument("--since", default=None)
    p.add_argument("--until", default=None)
    p.add_argument("--title", default=None)
    p.add_argument("--projection", choices=["umap", "pca"], default="umap", help="2-D map projection (default umap; PCA if umap-learn is missing)")
    p.add_argument("--max-points", type=int, default=None, help="points drawn per map, sampled (default 6000)")


@command("report", help="write a self-contained interactive HTML drift report (+ PNGs)", configure=_args)
def cmd_report(args: argparse.Namespace) -> int:
    from monitoring.outputs.report.build import build_report
    from monitoring.analysis.scoring.runner import load_latest_scores, save_scores, score_run

    out = args.out or os.path.join("var", "reports", args.model)
    try:
        run = None
        if args.every or args.every_n or args.since or args.until or load_latest_scores(args.store, args.model, args.s3_endpoint_url) is None:
            run = score_run(args.store, args.model, since=args.since, until=args.until, every=args.every or (None if args.every_n else "1d"),
                           every_n=args.every_n, s3_endpoint_url=args.s3_endpoint_url)
            save_scores(args.store, run, args.s3_endpoint_url)
        path = build_report(args.store, args.model, out, run=run, s3_endpoint_url=args.s3_endpoint_url, title=args.title,
                            projection=args.projection, **({"max_points": args.max_points} if args.max_points else {}))
    except (ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
