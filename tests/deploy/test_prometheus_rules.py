"""deploy/prometheus/alerts.yml evaluated by Prometheus itself: `promtool test rules` unit tests,
and a real Prometheus scraping a running capture sidecar until a drift alert fires.

Needs Debian's `prometheus` package (`make prometheus`); skipped without it unless
REQUIRE_PROMETHEUS=1 (`make test` sets it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
TESTS = Path(__file__).resolve().parent / "prometheus" / "alerts_test.yml"
for _p in (ROOT / "tests" / "monitoring", ROOT / "tests" / "monitoring" / "analysis" / "watch"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{name} not found: run `make prometheus` (Debian's prometheus package)")
        pytest.skip(f"{name} not installed (make prometheus)")
    return path


def test_rules_pass_check_and_their_unit_tests():
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    r = subprocess.run([promtool, "test", "rules", str(TESTS)], capture_output=True, text=True, timeout=120, cwd=TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_rule_tests_can_fail(tmp_path):
    """Control: the same tests with one expectation turned around fail."""
    promtool = _tool("promtool")
    text = TESTS.read_text().replace("- exp_labels: {model: m1, severity: critical}", "- exp_labels: {model: m2, severity: critical}")
    bad = tmp_path / "alerts_test.yml"
    bad.write_text(text.replace("../../../deploy/prometheus/alerts.yml", str(RULES)))
    r = subprocess.run([promtool, "test", "rules", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "EmbeddingDriftCritical" in r.stdout + r.stderr


def _alerts(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as resp:
        return json.loads(resp.read())["data"]["alerts"]


def test_prometheus_scrapes_the_sidecar_and_the_drift_alert_fires(tmp_path):
    prometheus = _tool("prometheus")
    from capture_testlib import free_port

    from monitoring.ingest.sidecar import Sidecar
    from monitoring.ingest.store.backend import LocalBackend
    from monitoring.analysis.watch.loop import WatchSettings, Watcher
    from watch_testlib import MODEL, hours_ago, write_baseline, write_hour

    store = tmp_path / "store"
    write_hour(LocalBackend(store).write, hours_ago(3), "clean", seed=1)
    write_hour(LocalBackend(store).write, hours_ago(2), "darkened", seed=2)
    write_baseline(store)
    assert Watcher(LocalBackend(store), WatchSettings(every="1h")).pass_once().errors == []

    sc = Sidecar(tmp_path / "spool", store, metrics_port=0, metrics_addr="127.0.0.1", compact_every=0)
    sc.start()
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: sidecar
    static_configs: [{{targets: ["127.0.0.1:{sc.metrics_port}"]}}]
""")
    proc = subprocess.Popen([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline, firing = time.monotonic() + 90, []
        while time.monotonic() < deadline and not firing:
            try:
                firing = [a for a in _alerts(prom_port) if a["labels"]["alertname"] == "EmbeddingDriftCritical"
                          and a["state"] == "firing"]
            except OSError:
                pass
            if not firing:
                time.sleep(0.5)  # poll interval, not synchronisation: the deadline bounds the wait
        assert firing, "EmbeddingDriftCritical never fired"
        assert firing[0]["labels"]["model"] == MODEL and firing[0]["labels"]["severity"] == "critical"
        names = {a["labels"]["alertname"] for a in _alerts(prom_port)}
        assert "DriftScoresStale" not in names and "ModelAccuracyLow" not in names
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        sc.close()
