"""The generative model's report (``make demo-gen``: several embedding spaces, moved prompts and
settings) as a person opens it: a real headless Chromium loads the file, every space's map draws all
its sampled points, the per-space sections show, recolouring works, and the page logs no error
and makes no request."""

from __future__ import annotations

import copy
import os
import shutil

import pytest

from browser_testlib import CHROMEDRIVER, CHROMIUM, chromium_driver, open_report, wait_for

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise RuntimeError("chromium / chromedriver not found: run `make browser` (apt-get install chromium chromium-driver)")
    pytest.skip("needs Debian's chromium + chromium-driver (`make browser`; `make test` installs them)", allow_module_level=True)



@pytest.fixture(scope="module")
def generative_report(generative_scored, tmp_path_factory):
    """report.html of the generative demo's traffic, smaller: baseline + clean / prompts moved /
    settings changed weeks, made by the real sd_img2img runtime in-process (the session's
    generative_scored store, as test_generative_spaces; a copy, so its saved scores stay out)."""
    from bench.demo.generative import MODEL
    from monitoring.outputs.report.build import build_report

    store, run = generative_scored
    root = tmp_path_factory.mktemp("gen-browser")
    shutil.copytree(store, root / "store")
    # PCA: the map's projection is not what this checks, UMAP's first fit in a process (numba
    # compiling) was most of this unit's CPU, and test_report_browser.py renders the UMAP default
    # in a browser
    return build_report(root / "store", MODEL, root / "report", run=copy.deepcopy(run), projection="pca")


def test_generative_report_renders_every_space(generative_report, tmp_path):
    d = chromium_driver()
    try:
        open_report(d, generative_report)
        spaces = d.execute_script("return JSON.parse(document.getElementById('report-data').textContent).spaces"
                                  ".map(S => [S.name, S.n_shown.reduce((a, b) => a + b, 0)])")
        assert {name for name, _ in spaces} == {"image", "prompt", "output"}
        for si, (name, n_shown) in enumerate(spaces):
            assert n_shown > 0, name
            drawn = wait_for(d, f"document.querySelectorAll('#map-{si} .scatterlayer .point').length")
            assert drawn == n_shown, (name, drawn, n_shown)
        text = d.execute_script("return document.body.innerText")
        assert "Prompts that moved" in text and "dragon" in text
        assert "Generation settings that moved" in text and "gen_guidance" in text
        # the drift charts drew their points
        assert d.execute_script("return document.querySelectorAll('.drift-chart .scatterlayer .point').length") >= 3
        # recolouring the prompt space's map by a numeric field redraws it with a colour bar
        si = [name for name, _ in spaces].index("prompt")
        numeric = d.execute_script(f"return JSON.parse(document.getElementById('report-data').textContent).spaces[{si}].fields[0]")
        assert numeric, "the prompt space lists no record field to colour by"
        d.execute_script(f"const s = document.getElementById('colorby-{si}'); s.value = '{numeric}'; s.dispatchEvent(new Event('change'))")
        wait_for(d, f"document.querySelectorAll('#map-{si} .colorbar').length === 1", 10)
        d.save_screenshot(str(tmp_path / "generative-report.png"))
        urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert [u for u in urls if not u.startswith("data:")] == []
        assert [e for e in d.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        d.quit()
