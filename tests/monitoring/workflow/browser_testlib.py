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


def chromium_driver(width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver with browser console logging, no network beyond file://."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
              "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
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
