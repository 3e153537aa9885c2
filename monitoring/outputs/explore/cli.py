"""``python -m monitoring explore --model M [--since/--until] [--port P]``: export the window and
the baseline (as for Arize) and open them in Arize Phoenix, run from its own venv
(``make explore-venv`` -> build/venvs/phoenix; ``--phoenix-python`` or $PHOENIX_PYTHON to use another)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from monitoring.cli import add_store_args, command

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PHOENIX_PYTHON = ROOT / "build" / "venvs" / "phoenix" / "bin" / "python"


def _args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--since", default=None, help="window start (inclusive): ISO-8601 or epoch")
    p.add_argument("--until", default=None, help="window end (exclusive)")
    p.add_argument("--baseline-version", type=int, default=None)
    p.add_argument("--port", type=int, default=6006)
    p.add_argument("--workdir", default=None, help="where the exported files go (default var/explore/<model>)")
    p.add_argument("--phoenix-python", default=os.environ.get("PHOENIX_PYTHON", str(DEFAULT_PHOENIX_PYTHON)))


@command("explore", help="open the window and the baseline in Arize Phoenix (local, offline)", configure=_args)
def cmd_explore(args: argparse.Namespace) -> int:
    from monitoring.outputs.export.arize import write_arize
    from monitoring.outputs.export.frame import FEATURES, TAGS, align, baseline_frame, window_frame

    if not Path(args.phoenix_python).exists():
        print(f"error: no Phoenix venv at {args.phoenix_python}: run `make explore-venv` (or pass --phoenix-python)", file=sys.stderr)
        return 2
    work = Path(args.workdir or os.path.join("var", "explore", args.model))
    try:
        primary = window_frame(args.store, args.model, args.since, args.until, args.s3_endpoint_url)
        reference = align(baseline_frame(args.store, args.model, args.baseline_version, args.s3_endpoint_url), primary)
    except (ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_arize(primary, reference, work, list(FEATURES), list(TAGS))
    # Ctrl-C (or a plain `kill`) must stop Phoenix even where SIGINT arrives ignored: a background
    # job of a non-interactive shell inherits SIG_IGN, and Python then never raises KeyboardInterrupt.
    if threading.current_thread() is threading.main_thread():  # signal handlers live there only
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PHOENIX_WORKING_DIR=str(work / "phoenix"))
    proc = subprocess.Popen([args.phoenix_python, "-m", "monitoring.outputs.explore.phoenix_app", str(work), "--port", str(args.port)],
                            cwd=ROOT, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            # Phoenix's shutdown hung: do not leave it serving (and holding our stdout) after we exit.
            proc.kill()
            proc.wait()
            return 1
