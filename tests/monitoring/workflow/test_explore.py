"""`python -m monitoring explore`: Arize Phoenix (its own venv) starts locally on the blurred day
(the window, 200 rows, primary) and the baseline (1000 rows, reference) with the image embedding;
its GraphQL API and UI answer; a person's clicks in a real headless Chromium reach the image
embedding's UMAP view and a metadata dimension's drift view; Ctrl-C stops it. One Phoenix for the
whole file (module fixture): its start-up (UMAP, numba compiling) is most of the file's time.

In the browser, every page renders without Phoenix's error page, every GraphQL answer the page got
is free of errors, and the point cloud holds points of the window and of the baseline. Phoenix's
UI sends GraphQL enum literals that the server's graphql-core/strawberry pair must parse: a
mismatched pair (the old env/venv-phoenix.lock) answers the API test but shows "Something went
wrong" on every page, which only a browser sees.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser_testlib import CHROMEDRIVER, CHROMIUM, chromium_driver, graphql_responses, wait_for
from tests.conftest import free_port
from workflow_testlib import DAY, MODEL, ROOT, T0, store_with_actuals

PHOENIX_PYTHON = os.environ.get("PHOENIX_PYTHON") or str(ROOT / "build" / "venvs" / "phoenix" / "bin" / "python")
ERROR_PAGE = "Something went wrong"
#: UMAP on the 2-core CI machine (numba compiles on first use) takes a while; generous on purpose.
UMAP_WAIT_S = 240.0

QUERY = ("{ model { primaryInferences { name recordCount } referenceInferences { name recordCount } "
         "embeddingDimensions { edges { node { name } } } } }")


def graphql(port: int, query: str = QUERY) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read()


def _loaded(port: int) -> bool:
    try:
        return graphql(port, "{ model { primaryInferences { recordCount } } }")["data"]["model"]["primaryInferences"]["recordCount"] > 0
    except OSError:
        return False


@dataclass
class Explorer:
    url: str  # the address it printed, the one a user opens
    port: int
    log: Path  # its output
    workdir: Path  # where it exported the two sets
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def explorer(store_template, tmp_path_factory):
    """A running `monitoring explore` on the blurred day (200 rows) against the baseline."""
    if not os.path.exists(PHOENIX_PYTHON):
        if os.environ.get("REQUIRE_EXPORT_VENVS") == "1":
            raise RuntimeError("build/venvs/phoenix missing: run `make explore-venv`")
        pytest.skip("needs the Phoenix venv (`make explore-venv`; `make test` builds it)")
    root = tmp_path_factory.mktemp("explore-browser")
    store, _ = store_with_actuals(store_template, root)
    port = free_port()
    log = open(root / "explore.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "monitoring", "explore", "--model", MODEL, "--store", str(store),
                             "--since", str(T0 + DAY), "--until", str(T0 + 2 * DAY), "--port", str(port),
                             "--workdir", str(root / "explore"), "--phoenix-python", PHOENIX_PYTHON],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # generous: on 2 busy cores (xdist workers) start-up took 5 min
        url = None
        while url is None or not _loaded(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"Phoenix did not come up:\n{log.read()[-3000:]}")
            time.sleep(0.5)
            # the address the command prints is the one a user opens
            m = re.search(r"^phoenix: (http://\S+)", (root / "explore.log").read_text(), re.M)
            url = m and m.group(1)
        assert url.rstrip("/").endswith(f":{port}"), url
        yield Explorer(url, port, root / "explore.log", root / "explore", proc)
    finally:
        if proc.poll() is None:  # test_ctrl_c_stops_it did not run (or failed)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_phoenix_loads_both_sets_and_serves_its_ui(explorer):
    model = graphql(explorer.port)["data"]["model"]
    assert model["primaryInferences"] == {"name": "window", "recordCount": 200}  # the blurred day
    assert model["referenceInferences"] == {"name": "baseline", "recordCount": 1000}
    assert [e["node"]["name"] for e in model["embeddingDimensions"]["edges"]] == ["image_embedding"]
    status, page = get(explorer.port, "/")
    assert status == 200 and b"<title>" in page
    asset = re.search(rb'src="(/assets/index-[^"]+\.js)"', page)
    assert asset and get(explorer.port, asset.group(1).decode())[0] == 200
    # the exported primary set carries the thumbnails Phoenix links to
    import pandas as pd

    df = pd.read_parquet(explorer.workdir / "primary.parquet")
    assert len(df) == 200 and df["image_link"].str.startswith("data:image/jpeg;base64,").all()


@pytest.fixture(scope="module")
def driver():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise RuntimeError("chromium / chromedriver not found: run `make browser` (apt-get install chromium chromium-driver)")
        pytest.skip("needs Debian's chromium + chromium-driver (`make browser`; `make test` installs them)")
    d = chromium_driver(loopback=True, perf_log=True)
    yield d
    d.quit()


def _no_error_page(driver, seen: list[tuple[str, dict]]) -> None:
    """No error page on screen, and no GraphQL answer so far carried errors."""
    text = driver.execute_script("return document.body.innerText")
    assert ERROR_PAGE not in text, text[:2000]
    failed = [(op, r["errors"]) for op, r in seen if r.get("errors")]
    assert failed == [], failed


def _response(driver, seen: list, operation: str, timeout_s: float) -> dict:
    """The page's answer to ``operation`` (waits for it); ``seen`` collects every answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen.extend(graphql_responses(driver))
        hits = [r for op, r in seen if op == operation and "unavailable" not in r]
        if hits:
            return hits[-1]
        text = driver.execute_script("return document.body && document.body.innerText") or ""
        assert ERROR_PAGE not in text, text[:2000]
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page got no answer to {operation}; it got {[op for op, _ in seen]}")
        time.sleep(0.2)


def _wait(driver, script: str, timeout_s: float):
    """wait_for, failing at once with the page's text where Phoenix shows its error page instead."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = driver.execute_script("return document.body && document.body.innerText") or ""
        assert ERROR_PAGE not in text, text[:2000]
        try:
            return wait_for(driver, script, min(1.0, max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def _point_pixels(png: bytes) -> tuple[int, int]:
    """(cyan, purple) pixel counts of a screenshot: Phoenix's primary and reference point colours."""
    import io

    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return int(((g > 150) & (b > 150) & (r < 120)).sum()), int(((r > 150) & (b > 180) & (g < 170)).sum())


def _open_model_page(driver, url: str, seen: list) -> None:
    """Open the printed address: Phoenix's home sends a session with inferences to its model page."""
    graphql_responses(driver)  # what an earlier page got is not this test's
    driver.get(url)
    _response(driver, seen, "ModelInferencesPageQuery", 60)
    _no_error_page(driver, seen)
    _wait(driver, "location.pathname === '/model'", 30)
    _wait(driver, "document.body.innerText.includes('Model Schema') && "
                  "Array.from(document.querySelectorAll('a')).some(a => a.textContent === 'image_embedding')", 60)
    _no_error_page(driver, seen)


def test_embedding_page_shows_window_and_baseline_points(explorer, driver, tmp_path):
    url, log = explorer.url, explorer.log
    seen: list[tuple[str, dict]] = []
    _open_model_page(driver, url, seen)
    schema = _response(driver, seen, "ModelInferencesPageQuery", 1)["data"]["model"]
    names = {e["dimension"]["name"] for e in schema["dimensions"]["edges"]}
    assert {"brightness", "contrast", "sharpness"} <= names
    # the user clicks the embedding: the UMAP view
    driver.find_element("link text", "image_embedding").click()
    _wait(driver, "location.pathname.startsWith('/model/embeddings/')", 30)
    umap = _response(driver, seen, "EmbeddingPageUMAPQuery", UMAP_WAIT_S)["data"]["embedding"]["UMAPPoints"]
    window = [p for p in umap["data"] if p["eventId"].endswith("PRIMARY")]
    baseline = [p for p in umap["referenceData"] if p["eventId"].endswith("REFERENCE")]
    assert len(window) == 200 == len(umap["data"])  # the blurred day, every row
    assert 0 < len(baseline) <= 1000 and len(baseline) == len(umap["referenceData"])  # Phoenix samples the baseline
    assert all({"x", "y", "z"} <= set(p["coordinates"]) for p in window + baseline)
    assert window[0]["embeddingMetadata"]["linkToData"].startswith("data:image/jpeg;base64,")
    assert {p["eventMetadata"]["actualLabel"] for p in window} - {None}  # posted actuals reached Phoenix
    # ...and the page drew them: the WebGL canvas of the point cloud, the legend of both sets
    _wait(driver, "Array.from(document.querySelectorAll('canvas')).some(c => c.width > 200 && c.height > 200)", 60)
    _wait(driver, "document.body.innerText.includes('primary') && document.body.innerText.includes('reference')", 30)
    seen.extend(graphql_responses(driver))
    _no_error_page(driver, seen)
    # the pixels: Phoenix colours primary points cyan and reference points purple (its legend);
    # the canvas shows both (polls: the first frames may still be drawing)
    canvas = max(driver.find_elements("css selector", "canvas"), key=lambda c: c.size["width"] * c.size["height"])
    deadline = time.monotonic() + 30
    while True:
        cyan, purple = _point_pixels(canvas.screenshot_as_png)
        if (cyan > 20 and purple > 20) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert cyan > 20 and purple > 20, (cyan, purple)
    driver.save_screenshot(str(tmp_path / "phoenix-embedding.png"))
    assert "Traceback" not in log.read_text()


def test_metadata_dimension_drift_view_loads(explorer, driver):
    url, log = explorer.url, explorer.log
    seen: list[tuple[str, dict]] = []
    _open_model_page(driver, url, seen)
    driver.find_element("link text", "brightness").click()
    _wait(driver, "location.pathname.startsWith('/model/dimensions/')", 30)
    drift = _response(driver, seen, "DimensionDriftTimeSeriesQuery", 60)["data"]["embedding"]["driftTimeSeries"]["data"]
    assert [p for p in drift if p["value"] is not None], drift  # PSI of the window's days against the baseline
    bars = _response(driver, seen, "DimensionDriftBreakdownSegmentBarChartQuery", 60)["data"]["dimension"]
    counts = [s["counts"] for s in bars["segmentsComparison"]["segments"]]
    assert sum(c["primaryValue"] or 0 for c in counts) == 200
    assert sum(c["referenceValue"] or 0 for c in counts) == 1000
    _wait(driver, "document.body.innerText.includes('brightness') && document.querySelectorAll('svg .recharts-surface, svg.recharts-surface').length > 0", 60)
    seen.extend(graphql_responses(driver))
    _no_error_page(driver, seen)
    assert "Traceback" not in log.read_text()


def test_ctrl_c_stops_it(explorer):
    """Last in the file: it stops the file's Phoenix. SIGINT, as Ctrl-C in a terminal, ends the
    command cleanly (status 0, after saying what it loaded) and the port stops answering."""
    explorer.proc.send_signal(signal.SIGINT)
    assert explorer.proc.wait(timeout=120) == 0, explorer.log.read_text()[-3000:]
    assert "window 200 rows, baseline 1000 rows" in explorer.log.read_text()
    with pytest.raises(OSError):
        graphql(explorer.port)
