"""Launch Arize Phoenix on an exported window (primary) and baseline (reference).

Runs inside the Phoenix venv (``arize-phoenix[embeddings]``, optional extra ``explore``; its pins
conflict with ours): ``python -m monitoring.outputs.explore.phoenix_app DIR --port P``. ``DIR`` holds the
files ``export --to arize`` writes (same column conventions: Phoenix's ``Schema`` is Arize's).
Needs only pandas and phoenix; no network: Phoenix serves its UI from the wheel, telemetry off.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pandas as pd

#: Phoenix settings that keep it local: no telemetry, a private working dir, this host only.
OFFLINE_ENV = {"PHOENIX_TELEMETRY_ENABLED": "false", "DO_NOT_TRACK": "1"}


def inferences(directory: Path):
    """(primary, reference or None) as ``px.Inferences`` from the exported files."""
    import phoenix as px

    spec = json.loads((directory / "schema.json").read_text())["schema"]
    kw = dict(spec)
    kw["embedding_feature_column_names"] = {k: px.EmbeddingColumnNames(**v) for k, v in spec["embedding_feature_column_names"].items()}
    schema = px.Schema(**kw)

    def load(name: str) -> pd.DataFrame:
        df = pd.read_parquet(directory / f"{name}.parquet")
        df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
        return df

    primary = px.Inferences(load("primary"), schema, name="window")
    ref = px.Inferences(load("reference"), schema, name="baseline") if (directory / "reference.parquet").exists() else None
    return primary, ref


CLOSE_TIMEOUT_S = 20.0


def _unused_loopback_port() -> int:
    # Not serving.launch.server.free_port: this program runs in Phoenix's own venv, without our deps.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.outputs.explore.phoenix_app")
    p.add_argument("directory", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6006)
    a = p.parse_args(argv)
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    # Phoenix's OTLP collector otherwise takes the fixed port 4317 on every interface: a second
    # Phoenix (or any OTLP collector) on the host would make this one fail to start.
    os.environ.setdefault("PHOENIX_GRPC_PORT", str(_unused_loopback_port()))
    import phoenix as px

    primary, reference = inferences(a.directory)
    session = px.launch_app(primary=primary, reference=reference, host=a.host, port=a.port, run_in_thread=True)
    print(f"phoenix: {session.url}  (window {len(primary.dataframe)} rows, baseline "
          f"{0 if reference is None else len(reference.dataframe)} rows; Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    # Phoenix's own shutdown waits on its server threads, with no bound of its own: give it a
    # bounded time, then leave without it.
    closer = threading.Thread(target=px.close_app, daemon=True)
    closer.start()
    closer.join(CLOSE_TIMEOUT_S)
    if closer.is_alive():
        print(f"phoenix: did not stop within {CLOSE_TIMEOUT_S:.0f} s; exiting anyway", flush=True)
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
