"""The sidecar's one argument parser and its command (``python -m monitoring sidecar``, and
``python -m monitoring.ingest.sidecar``, the entry the model processes use).

The command lines others start it with are built by :mod:`monitoring.capture.sidecar_command`, which
also owns the lock-file name and the default metrics port. The service is imported only when
the command runs (pyarrow, boto3), not when the parser is built.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from monitoring.cli import add_store_args, command, default_spool_dir
from monitoring.analysis.watch.cloudwatch import add_publish_args

from monitoring.capture.priority import DEFAULT_NICENESS, renice_process
from monitoring.capture.sidecar_command import DEFAULT_METRICS_PORT


def _niceness(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"niceness (--niceness / CAPTURE_NICENESS) must be an integer: 0 leaves the "
                                         f"priority, 19 is the lowest; got {text!r}") from None


def _retain_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not days > 0:
        raise argparse.ArgumentTypeError(f"retain days (--retain-days / CAPTURE_RETAIN_DAYS) must be a number > 0, got {text!r}")
    return days


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag of the sidecar (``python -m monitoring sidecar`` and ``python -m monitoring.ingest.sidecar``)."""
    p.add_argument("--spool", default=default_spool_dir(), help="spool directory (default: $MONITORING_SPOOL_DIR, $CAPTURE_SPOOL_DIR or var/spool)")
    add_store_args(p)
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("MONITORING_METRICS_PORT", DEFAULT_METRICS_PORT)), help=f"Prometheus port (default {DEFAULT_METRICS_PORT}; -1 disables; 0 picks a free port)")
    p.add_argument("--metrics-addr", default="127.0.0.1", help="address for the metrics server (default 127.0.0.1)")
    p.add_argument("--compact-every", type=float, default=300.0, metavar="S", help="seconds between compaction passes (0 disables; default 300)")
    p.add_argument("--retain-days", type=_retain_days, default=os.environ.get("CAPTURE_RETAIN_DAYS") or None, metavar="D",
                   help="drop capture partitions older than D days in the compaction pass (default: $CAPTURE_RETAIN_DAYS, else keep all)")
    p.add_argument("--datacapture-dir", default=None, help="also export SageMaker Data Capture JSON lines to this dir or s3:// prefix")
    p.add_argument("--datacapture-endpoint", default="local-endpoint", help="endpoint name in the Data Capture layout")
    p.add_argument("--datacapture-variant", default="AllTraffic", help="variant name in the Data Capture layout")
    p.add_argument("--niceness", type=_niceness, default=os.environ.get("CAPTURE_NICENESS") or str(DEFAULT_NICENESS),
                   metavar="N",
                   help="add N to this process's niceness at start: it yields the cores to inference "
                        "(default: $CAPTURE_NICENESS or 19; 0 leaves it; monitoring/capture/priority.py)")
    p.add_argument("--poll-interval", type=float, default=0.2, metavar="S", help="spool scan interval when idle")
    p.add_argument("--retry-max", type=float, default=30.0, metavar="S", help="max backoff between failed store writes")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S", help="on SIGTERM, keep ingesting the spool at most this long")
    p.add_argument("--once", action="store_true", help="ingest what is in the spool, compact, and exit")
    p.add_argument("--exit-with-pid", type=int, default=None, metavar="PID", help="drain and exit once process PID is gone (the tritonserver that started it)")
    # The watch loop (docs/watch.md): on by default, it scores only once the store has a baseline.
    p.add_argument("--no-watch", action="store_true", default=os.environ.get("MONITORING_WATCH", "1").strip().lower() in ("0", "false", "off", "no"),
                   help="do not score closed windows here (default: on; $MONITORING_WATCH=0 turns it off)")
    p.add_argument("--watch-every", default=os.environ.get("MONITORING_WATCH_EVERY", "1h"), metavar="PERIOD", help="window length (default: $MONITORING_WATCH_EVERY or 1h)")
    p.add_argument("--watch-interval", type=float, default=os.environ.get("MONITORING_WATCH_INTERVAL_S") or None,
                   metavar="S", help="seconds between watch passes (default: $MONITORING_WATCH_INTERVAL_S or a quarter window)")
    add_publish_args(p)


@command("sidecar", help="run the capture sidecar: spool segments -> Parquet store (+ Prometheus metrics)", configure=add_arguments)
def run(args: argparse.Namespace) -> int:
    group_nice = renice_process(args.niceness)  # first: the threads started below inherit it
    from monitoring.ingest.sidecar.service import Sidecar, SidecarBusy
    from monitoring.ingest.sidecar.watching import SidecarWatch

    sc = Sidecar(
        args.spool,
        args.store,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_addr=args.metrics_addr,
        compact_every=args.compact_every,
        retain_days=args.retain_days,
        s3_endpoint_url=args.s3_endpoint_url,
        datacapture=args.datacapture_dir,
        datacapture_endpoint=args.datacapture_endpoint,
        datacapture_variant=args.datacapture_variant,
        poll_interval=args.poll_interval,
        retry_max_s=args.retry_max,
        drain_timeout=args.drain_timeout,
        exit_with_pid=args.exit_with_pid,
        watch=None if args.no_watch else SidecarWatch(every=args.watch_every, interval_s=args.watch_interval,
                                                      cloudwatch_namespace=args.cloudwatch, cloudwatch_mode=args.cloudwatch_mode),
    )
    log = logging.getLogger("monitoring.ingest.sidecar")
    if args.niceness > 0:
        # Where a session shares the cores with others as a group (Linux autogroups), niceness
        # alone yields only to this session's own processes (monitoring/capture/priority.py).
        log.info("niceness +%d%s", args.niceness, f"; its session's autogroup at nice {group_nice}" if group_nice is not None
                 else "; autogroup not reniced (shared session, or none on this kernel): where the kernel groups "
                      "sessions, it yields only within its own")

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: draining the spool and stopping", signal.Signals(signum).name)
        sc.stop()

    # Before start(): a SIGTERM while it recovers/starts its metrics server must still drain.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sc.start()
    except SidecarBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.once:
            sc.drain(args.drain_timeout)
            if args.compact_every > 0:
                sc.compact()
            left = len(sc.pending_segments())
        else:
            if sc.metrics_port is not None:
                print(f"metrics port {sc.metrics_port}", file=sys.stderr, flush=True)
            left = sc.serve()
    finally:
        sc.close()
    log.info("sidecar stopped; %d segments left in the spool", left)
    return 0
