"""Launch Arize Phoenix on an exported window (primary) and baseline (reference).

Runs inside the Phoenix venv (``arize-phoenix[embeddings]``, optional extra ``explore``; its pins
conflict with ours): ``python -m monitoring.explore.phoenix_app DIR --port P``. ``DIR`` holds the
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitoring.explore.phoenix_app")
    p.add_argument("directory", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6006)
    a = p.parse_args(argv)
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    import phoenix as px

    primary, reference = inferences(a.directory)
    session = px.launch_app(primary=primary, reference=reference, host=a.host, port=a.port, run_in_thread=True)
    print(f"phoenix: {session.url}  (window {len(primary.dataframe)} rows, baseline "
          f"{0 if reference is None else len(reference.dataframe)} rows; Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    px.close_app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
