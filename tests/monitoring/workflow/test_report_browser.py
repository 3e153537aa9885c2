"""The interactive report as a person uses it: a real headless Chromium opens the file, the page
runs without console errors or network requests, the map and the drift charts render, hovering
a point shows that request's input thumbnail, clicking a drift point opens its window."""

from __future__ import annotations

import os

import pytest

from browser_testlib import CHROMEDRIVER, CHROMIUM, chromium_driver, hover_point, open_report, wait_for
from monitoring.cli import main as cli_main
from workflow_testlib import MODEL, store_with_actuals

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError("chromium / chromedriver not found: run `make browser` (apt-get install chromium chromium-driver)")
    pytest.skip("needs Debian's chromium + chromium-driver (`make browser`; `make test` installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def report_html(store_template, tmp_path_factory):
    """The report of the digit store (clean / blurred / darkened days, actuals posted), UMAP map."""
    root = tmp_path_factory.mktemp("browser")
    store, ids = store_with_actuals(store_template, root)
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d"]) == 0
    assert cli_main(["report", "--model", MODEL, "--store", str(store), "--out", str(root / "report")]) == 0
    return root / "report" / "report.html", ids


@pytest.fixture(scope="module")
def driver():
    d = chromium_driver()
    yield d
    d.quit()


def test_report_renders_and_hover_shows_thumbnail(report_html, driver, tmp_path):
    path, ids = report_html
    open_report(driver, path)
    # the map drew every sampled point (600 window rows + 1000 baseline rows fit, nothing sampled away)
    n_points = wait_for(driver, "document.querySelectorAll('#map-0 .scatterlayer .point').length")
    assert n_points == 1600
    assert "Sample shown: 1,600 of 1,600 points" in driver.find_element("css selector", ".sample-size").text
    assert "UMAP fitted on the baseline" in driver.page_source
    # drift charts: one per method, each with its points
    for m in ("cluster_jsd", "centroid", "mmd", "domain_classifier", "metadata"):
        assert driver.execute_script(f"return document.querySelectorAll('#drift-{m} .scatterlayer .point').length") >= 3
    # a real mouse hover shows the card with that request's thumbnail
    p = hover_point(driver)
    assert p["gap"] > 0
    wait_for(driver, "document.getElementById('hover-card').style.display === 'block'", 10)
    card = driver.find_element("id", "hover-card")
    assert card.get_attribute("data-rid") == p["rid"] and p["rid"] in card.text
    assert "prediction:" in card.text and "brightness:" in card.text
    img = card.find_element("css selector", "img")
    assert img.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 32
    all_ids = {rid for pairs in ids.values() for rid, _ in pairs}
    assert p["rid"] in all_ids
    driver.save_screenshot(str(tmp_path / "explorer.png"))
    # colour by a metadata field redraws the map with a colour bar
    driver.execute_script("const s = document.getElementById('colorby-0'); s.value = 'brightness'; s.dispatchEvent(new Event('change'))")
    wait_for(driver, "document.querySelectorAll('#map-0 .colorbar').length === 1", 10)
    # the page made no request besides itself (everything inline), and logged no error
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in urls if not u.startswith("data:")] == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_drift_point_opens_its_window_and_clusters_list_requests(report_html, driver):
    path, ids = report_html
    open_report(driver, path)
    # click (real mouse) the darkened day's point on the domain-classifier chart -> #window-2
    from selenium.webdriver.common.action_chains import ActionChains

    gd = driver.find_element("id", "drift-domain_classifier")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", gd)
    dx, dy = driver.execute_script("""const gd = arguments[0], g = gd.getBoundingClientRect();
        const last = Array.from(gd.querySelectorAll('.scatterlayer .point')).pop().getBoundingClientRect();
        return [last.x + last.width / 2 - (g.x + g.width / 2), last.y + last.height / 2 - (g.y + g.height / 2)];""", gd)
    ActionChains(driver).move_to_element_with_offset(gd, int(round(dx)), int(round(dy))).click().perform()
    wait_for(driver, "location.hash === '#window-2'", 10)
    sec = driver.find_element("id", "window-2")
    assert "critical" in sec.text or "warning" in sec.text
    # the top-ranked cluster opens onto real requests of that window, with thumbnails
    first = sec.find_element("css selector", "details.cluster")
    first.find_element("tag name", "summary").click()
    examples = first.find_elements("css selector", ".ex")
    assert examples
    darkened = {rid for rid, _ in ids["darkened"]}
    for ex in examples:
        assert ex.find_element("tag name", "b").text in darkened
        assert ex.find_element("tag name", "img").get_attribute("src").startswith("data:image/jpeg;base64,")
