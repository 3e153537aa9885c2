"""``python -m monitoring <command>``: one registry of subcommands, open to other modules.

Adding a command from another module::

    # monitoring/drift/cli.py
    from monitoring.cli import command

    def _args(p):                       # argparse.ArgumentParser of the subcommand
        p.add_argument("--model", required=True)

    @command("score", help="score a window against the baseline", configure=_args)
    def score(args) -> int:             # argparse.Namespace -> exit status
        ...
        return 0

and list the module in :data:`COMMAND_MODULES` (imported when the parser is built, so
``python -m monitoring`` only imports what it needs: keep heavy imports inside the command
function). ``register(name, run, help=..., configure=...)`` is the same without a decorator.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], "int | None"]


@dataclass(frozen=True)
class Command:
    name: str
    run: Run
    help: str
    configure: Configure | None = None


#: name -> Command, in registration order (the order ``--help`` shows them).
COMMANDS: dict[str, Command] = {}

#: Modules that register more commands; imported by :func:`build_parser`.
COMMAND_MODULES: list[str] = ["monitoring.baseline.cli", "monitoring.scoring.cli", "monitoring.actuals.cli", "monitoring.report.cli",
                              "monitoring.export.cli", "monitoring.explore.cli", "monitoring.watch.cli"]


def register(name: str, run: Run, *, help: str, configure: Configure | None = None) -> Command:
    """Register subcommand ``name``. Re-registering the same function is a no-op; a different
    function under a taken name is an error."""
    old = COMMANDS.get(name)
    if old is not None and old.run is not run:
        if getattr(old.run, "__qualname__", None) == getattr(run, "__qualname__", None) and getattr(old.run, "__module__", None) == getattr(run, "__module__", None):
            pass  # the same module imported twice (e.g. as __main__ and by name)
        else:
            raise ValueError(f"subcommand {name!r} is already registered by {old.run.__module__}.{old.run.__qualname__}")
    cmd = Command(name, run, help, configure)
    COMMANDS[name] = cmd
    return cmd


def command(name: str, *, help: str, configure: Configure | None = None) -> Callable[[Run], Run]:
    """Decorator form of :func:`register`."""

    def deco(fn: Run) -> Run:
        register(name, fn, help=help, configure=configure)
        return fn

    return deco


def build_parser() -> argparse.ArgumentParser:
    for mod in COMMAND_MODULES:
        importlib.import_module(mod)
    parser = argparse.ArgumentParser(prog="python -m monitoring", description="Capture, store and drift tools of the serving platform.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.configure is not None:
            cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    rc = args._run(args)
    return int(rc or 0)


# -- shared defaults ---------------------------------------------------------------------------
def default_spool_dir() -> str:
    return os.environ.get("MONITORING_SPOOL_DIR") or os.environ.get("CAPTURE_SPOOL_DIR") or os.path.join("var", "spool")


def default_store() -> str:
    return os.environ.get("MONITORING_STORE") or os.path.join("var", "store")


def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--store`` and ``--s3-endpoint-url``, for commands reading the capture store."""
    p.add_argument("--store", default=default_store(), help="store: directory or s3://bucket/prefix (default: $MONITORING_STORE or var/store)")
    p.add_argument("--s3-endpoint-url", default=os.environ.get("MONITORING_S3_ENDPOINT_URL"), help="S3-compatible endpoint (default: $MONITORING_S3_ENDPOINT_URL)")


# -- sidecar -----------------------------------------------------------------------------------
def _retain_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not days > 0:
        raise argparse.ArgumentTypeError(f"retain days (--retain-days / CAPTURE_RETAIN_DAYS) must be a number > 0, got {text!r}")
    return days


def _sidecar_args(p: argparse.ArgumentParser) -> None:
    from monitoring.sidecar.service import DEFAULT_METRICS_PORT

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
    from monitoring.watch.cloudwatch import add_publish_args

    add_publish_args(p)


@command("sidecar", help="run the capture sidecar: spool segments -> Parquet store (+ Prometheus metrics)", configure=_sidecar_args)
def cmd_sidecar(args: argparse.Namespace) -> int:
    from monitoring.sidecar.service import Sidecar, SidecarBusy
    from monitoring.sidecar.watching import SidecarWatch

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
    log = logging.getLogger("monitoring.sidecar")

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


# -- records -----------------------------------------------------------------------------------
def _records_args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--since", default=None, help="start (inclusive): ISO-8601 (naive = UTC), epoch seconds or epoch ms")
    p.add_argument("--until", default=None, help="end (exclusive), same formats")
    p.add_argument("--json", action="store_true", help="print one JSON object: count, columns, time range, ...")
    p.add_argument("--head", type=int, default=0, metavar="N", help="also show the first N records (embeddings left out)")


@command("records", help="show what was captured for a model", configure=_records_args)
def cmd_records(args: argparse.Namespace) -> int:
    from monitoring.capture.fields import VECTOR_FIELDS
    from monitoring.store.reader import read_records, to_epoch_ms
    from monitoring.store.schema import RECORD_SCHEMA

    scalar_cols = [c for c in RECORD_SCHEMA.names if c not in VECTOR_FIELDS]  # vectors are large: not read
    try:
        since, until = to_epoch_ms(args.since), to_epoch_ms(args.until)
        table = read_records(args.store, args.model, since, until, columns=scalar_cols, s3_endpoint_url=args.s3_endpoint_url)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ts = table["ts_ms"].to_pylist()
    info = {
        "model": args.model,
        "store": str(args.store),
        "count": table.num_rows,
        "columns": RECORD_SCHEMA.names,
        "since_ms": since,
        "until_ms": until,
        "first_ts_ms": min(ts) if ts else None,
        "last_ts_ms": max(ts) if ts else None,
        "schema_versions": sorted(set(table["schema_version"].to_pylist())),
    }
    head = table.slice(0, args.head).to_pylist() if args.head > 0 else []
    if args.json:
        if head:
            info["head"] = head
        print(json.dumps(info, default=str))
        return 0
    print(f"model {args.model}: {info['count']} records in {args.store}")
    if ts:
        print(f"time range (ms): {info['first_ts_ms']} .. {info['last_ts_ms']}")
    print("columns: " + ", ".join(info["columns"]))
    for row in head:
        print(json.dumps(row, default=str))
    return 0
