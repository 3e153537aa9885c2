"""``python -m monitoring <command>``: one registry of subcommands, open to other modules.

Adding a command from another module::

    # monitoring/analysis/drift/cli.py
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
COMMAND_MODULES: list[str] = ["monitoring.ingest.sidecar.cli",
                              "monitoring.analysis.baseline.cli", "monitoring.analysis.scoring.cli", "monitoring.analysis.actuals.cli", "monitoring.outputs.report.cli",
                              "monitoring.outputs.export.cli", "monitoring.outputs.explore.cli", "monitoring.analysis.watch.cli"]


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
    from monitoring.ingest.store.reader import read_records, to_epoch_ms
    from monitoring.ingest.store.schema import RECORD_SCHEMA

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
