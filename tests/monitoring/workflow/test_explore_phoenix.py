"""`python -m monitoring explore`: Arize Phoenix (its own venv) starts locally, loads the window as
primary and the baseline as reference with the image embedding, serves its UI; Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import free_port
from monitoring.cli import main as cli_main
from workflow_testlib import DAY, MODEL, ROOT, T0

PHOENIX = ROOT / "build" / "venvs" / "phoenix"
QUERY = ("{ model { primaryInferences { name recordCount } referenceInferences { name recordCount } "
         "embeddingDimensions { edges { node { name } } } } }")


def graphql(port: int) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": QUERY}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read()


def test_phoenix_starts_loads_both_sets_and_serves_its_ui(digit_store, labels_csv, tmp_path):
    if not (PHOENIX / ".installed").exists():
        if os.environ.get("REQUIRE_EXPORT_VENVS") == "1":
            raise RuntimeError("build/venvs/phoenix missing: run `make explore-venv`")
        pytest.skip("needs the Phoenix venv (`make explore-venv`; `make test` builds it)")
    store, _ = digit_store
    assert cli_main(["actuals", "--file", str(labels_csv), "--store", str(store)]) == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "monitoring", "explore", "--model", MODEL, "--store", str(store),
                             "--since", str(T0 + DAY), "--until", str(T0 + 2 * DAY), "--port", str(port),
                             "--workdir", str(tmp_path / "explore")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 600  # generous: on 2 busy cores (xdist workers) start-up took 5 min
        data = None
        while data is None:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                data = graphql(port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        model = data["data"]["model"]
        assert model["primaryInferences"] == {"name": "window", "recordCount": 200}  # the blurred day
        assert model["referenceInferences"] == {"name": "baseline", "recordCount": 1000}
        assert [e["node"]["name"] for e in model["embeddingDimensions"]["edges"]] == ["image_embedding"]
        status, page = get(port, "/")
        assert status == 200 and b"<title>" in page
        asset = re.search(rb'src="(/assets/index-[^"]+\.js)"', page)
        assert asset and get(port, asset.group(1).decode())[0] == 200
        # the exported primary set carries the thumbnails Phoenix links to
        import pandas as pd

        df = pd.read_parquet(tmp_path / "explore" / "primary.parquet")
        assert len(df) == 200 and df["image_link"].str.startswith("data:image/jpeg;base64,").all()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0 and "window 200 rows, baseline 1000 rows" in out
    with pytest.raises(OSError):
        graphql(port)
