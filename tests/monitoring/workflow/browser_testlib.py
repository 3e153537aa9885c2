"""Driving a report in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

``make browser`` installs them when missing; ``make test`` runs it first and sets
REQUIRE_BROWSER=1 so a missing browser fails the suite instead of skipping the test.

Also a tool: ``python tests/monitoring/workflow/browser_testlib.py REPORT.html OUT.png`` hovers a
point of the map and saves the screenshot (how docs/img/explorer.png is made).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")


def chromium_driver(width: int = 1400, height: int = 1000, loopback: bool = False, perf_log: bool = False):
    """A headless Chromium WebDriver with browser console logging and a fresh profile.

    Every host name resolves to nothing, so a page can reach no network; ``loopback=True`` still
    lets it reach 127.0.0.1 and localhost (a local server under test). ``perf_log=True`` records the DevTools
    network events (``driver.get_log("performance")``), to read the page's own responses.
    """
    import atexit
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
    atexit.register(profile.cleanup)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    rules = "MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1, EXCLUDE localhost" if loopback else "")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
              f"--host-resolver-rules={rules}", "--no-first-run", "--disable-extensions", "--disable-quic",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={profile.name}"):
        opts.add_argument(a)
    if loopback:
        # Phoenix draws its point cloud with WebGL; without a GPU that is SwiftShader, which Chromium
        # now enables only on request. The page is our own local server, the content trusted.
        opts.add_argument("--enable-unsafe-swiftshader")
    prefs = {"browser": "ALL"}
    if perf_log:
        prefs["performance"] = "ALL"
    opts.set_capability("goog:loggingPrefs", prefs)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def wait_for(driver, script: str, timeout_s: float = 60.0):
    """Poll a JS expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = driver.execute_script("return " + script)
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for: {script}")
        time.sleep(0.1)



def graphql_responses(driver) -> list[tuple[str, dict]]:
    """(operation, response JSON) for every /graphql POST the page completed since the last call,
    read from the DevTools performance log (a driver made with ``perf_log=True``): the page's own
    responses, as its components received them."""
    import json
    import re

    # a request's start and its end may come in different calls: the open ones live on the driver
    pending, out = driver.__dict__.setdefault("_graphql_pending", {}), []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent" and params["request"]["url"].split("?")[0].endswith("/graphql"):
            body = params["request"].get("postData") or ""
            m = re.search(r"(?:query|mutation)\s+(\w+)", body)
            pending[params["requestId"]] = m.group(1) if m else "?"
        elif msg["method"] == "Network.loadingFinished" and params["requestId"] in pending:
            from selenium.common.exceptions import WebDriverException

            op = pending.pop(params["requestId"])
            try:
                body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": params["requestId"]})["body"]
            except WebDriverException as e:  # the page that asked has been navigated away: its bodies are gone
                out.append((op, {"unavailable": str(e).splitlines()[0]}))
                continue
            out.append((op, json.loads(body)))
        elif msg["method"] == "Network.loadingFailed" and params["requestId"] in pending:
            if params.get("canceled"):  # the app dropped it (navigation), nobody waits for its answer
                pending.pop(params["requestId"])
                continue
            out.append((pending.pop(params["requestId"]), {"errors": [{"message": params.get("errorText", "loading failed")}]}))
    return out


#: The most isolated window point (on screen) that has a thumbnail: hovering it hits that point only.
PICK_POINT = r"""
const gd = document.getElementById('map-0'), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
const S = JSON.parse(document.getElementById('report-data').textContent).spaces[0], P = S.points;
const pts = [];
gd._fullData.forEach(t => t.customdata.forEach((i, k) => pts.push([i, xa._offset + xa.l2p(t.x[k]), ya._offset + ya.l2p(t.y[k])])));
let best = null, bestD = -1;
for (const [i, px, py] of pts) {
  if (P.ds[i] === 0 || !P.thumb[i]) continue;
  let d = Infinity;
  for (const [j, qx, qy] of pts) if (j !== i) d = Math.min(d, Math.hypot(px - qx, py - qy));
  if (d > bestD) { bestD = d; best = {i: i, x: px, y: py, rid: P.rid[i], gap: d}; }
}
const r = gd.getBoundingClientRect();
best.w = r.width; best.h = r.height;
return best;
"""


def hover_point(driver) -> dict:
    """Move the real mouse onto a window point of the first map; returns the point."""
    from selenium.webdriver.common.action_chains import ActionChains

    gd = driver.find_element("id", "map-0")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", gd)
    p = driver.execute_script(PICK_POINT)
    # offsets are from the element's centre in Selenium 4
    ActionChains(driver).move_to_element_with_offset(gd, int(round(p["x"] - p["w"] / 2)), int(round(p["y"] - p["h"] / 2))).perform()
    return p


def open_report(driver, path: Path) -> None:
    driver.get(Path(path).resolve().as_uri())
    wait_for(driver, "document.body && document.body.dataset.ready === '1'")


if __name__ == "__main__":
    report, png = Path(sys.argv[1]), Path(sys.argv[2])
    d = chromium_driver(1300, 900)
    try:
        open_report(d, report)
        hover_point(d)
        wait_for(d, "document.getElementById('hover-card').style.display === 'block'", 10)
        d.save_screenshot(str(png))
        print(f"screenshot: {png}")
    finally:
        d.quit()
