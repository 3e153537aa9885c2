"""``python -m monitoring watch``: score each window as it closes and publish the results."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from monitoring.cli import add_store_args, command
from monitoring.analysis.watch.cloudwatch import add_publish_args, publishers_from


def _args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--model", action="append", default=None, help="model to watch (repeatable; default: every model with a baseline)")
    p.add_argument("--every", default=os.environ.get("MONITORING_WATCH_EVERY", "1h"), metavar="PERIOD",
                   help="window length, aligned like `score --every`: 1h, 6h, 1d, ... (default: $MONITORING_WATCH_EVERY or 1h)")
    p.add_argument("--lookback", type=int, default=48, metavar="N", help="look at the last N closed windows (default 48)")
    p.add_argument("--since", default=None, help="look back to this time instead (ISO-8601 or epoch), e.g. to backfill")
    p.add_argument("--min-window", type=int, default=30, help="windows with fewer records are recorded, not tested (default 30)")
    p.add_argument("--interval", type=float, default=None, metavar="S", help="seconds between passes (default: a quarter window, 5 s to 5 min)")
    p.add_argument("--once", action="store_true", help="one pass and exit (cron, CI, tests); exit 1 on errors")
    p.add_argument("--json", action="store_true", help="print each pass as one JSON line")
    add_publish_args(p)


@command("watch", help="score every window as it closes (remembering what was scored) and publish the results", configure=_args)
def cmd_watch(args: argparse.Namespace) -> int:
    from monitoring.ingest.store.backend import open_backend
    from monitoring.ingest.store.reader import to_epoch_ms
    from monitoring.analysis.watch.loop import PassReport, WatchSettings, Watcher

    try:
        settings = WatchSettings(every=args.every, models=args.model, lookback_windows=args.lookback,
                                 since_ms=to_epoch_ms(args.since), min_window=args.min_window, interval_s=args.interval)
        pubs = publishers_from(args.cloudwatch, args.cloudwatch_mode)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # EMF lines own stdout: the pass summaries go to stderr then.
    out = sys.stderr if args.cloudwatch and args.cloudwatch_mode == "emf" else sys.stdout
    w = Watcher(open_backend(args.store, args.s3_endpoint_url), settings, pubs)

    def show(rep: PassReport) -> None:
        if args.json:
            print(json.dumps(rep.to_json()), file=out, flush=True)
            return
        n = sum(len(v) for v in rep.scored.values())
        print(f"{rep.to_json()['now']}: {len(rep.models)} model(s), {n} window(s) scored, {rep.claimed_elsewhere} "
              f"claimed by another watcher, {rep.published} metric points published", file=out, flush=True)
        for model, wins in rep.scored.items():
            for x in wins:
                print(f"  {model} {x['start']} .. {x['end']}  {x['records']} records  alert level {x['alert_level']}"
                      + ("" if x["scored"] else "  (too few records: not tested)"), file=out)
        for e in rep.errors:
            print(f"  error: {e}", file=sys.stderr)

    if args.once:
        rep = w.pass_once()
        show(rep)
        return 1 if rep.errors else 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger(__name__).info("watching %s every %s", w.backend.url(), settings.every)
    w.run(stop, show)
    return 0
