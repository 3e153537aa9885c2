"""Prometheus gauges from saved scores, and the webhook on alarm (a real local HTTP server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.analysis.alerts import DriftScoresCollector, export_scores
from monitoring.cli import main as cli_main
from monitoring.analysis.scoring import load_latest_scores
from workflow_testlib import MODEL, T0, DAY


@pytest.fixture
def hook_server():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", received
    srv.shutdown()
    srv.server_close()


def test_gauges_follow_the_latest_window(digit_store, labels_csv, capsys):
    store, _ = digit_store
    reg = CollectorRegistry()
    export_scores(reg, store)
    assert reg.get_sample_value("drift_is_drift", {"model": MODEL, "method": "mmd"}) is None  # nothing scored yet
    assert cli_main(["actuals", "--file", str(labels_csv), "--store", str(store)]) == 0
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d"]) == 0
    last = load_latest_scores(store, MODEL)["windows"][-1]
    for method, r in last["methods"].items():
        labels = {"model": MODEL, "method": method}
        assert reg.get_sample_value("drift_statistic", labels) == pytest.approx(r["statistic"])
        assert reg.get_sample_value("drift_threshold", labels) == pytest.approx(r["threshold"])
        assert reg.get_sample_value("drift_p_value", labels) == pytest.approx(r["p_value"])
        assert reg.get_sample_value("drift_is_drift", labels) == float(r["is_drift"])
        expected = 2.0 if r["p_value"] <= 0.001 else 1.0 if r["p_value"] <= 0.01 else 0.0
        assert reg.get_sample_value("drift_alert_level", labels) == expected
    # the darkened day: the analytic domain-classifier p-value reaches critical, the bootstrap MMD stops at 1/201
    assert reg.get_sample_value("drift_alert_level", {"model": MODEL, "method": "domain_classifier"}) == 2.0
    assert reg.get_sample_value("drift_alert_level", {"model": MODEL, "method": "mmd"}) == 1.0
    assert reg.get_sample_value("drift_any", {"model": MODEL}) == 1.0
    assert reg.get_sample_value("drift_window_size", {"model": MODEL}) == 200.0
    assert reg.get_sample_value("model_accuracy", {"model": MODEL}) == pytest.approx(last["accuracy"])
    assert reg.get_sample_value("drift_window_end_timestamp_seconds", {"model": MODEL}) == pytest.approx(last["end_ms"] / 1000)
    text = generate_latest(reg).decode()
    assert 'drift_is_drift{method="domain_classifier",model="' + MODEL + '"} 1.0' in text
    # a clean-only rescoring flips the gauges back
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--since", str(T0), "--until", str(T0 + DAY)]) == 0
    assert reg.get_sample_value("drift_any", {"model": MODEL}) == 0.0
    assert reg.get_sample_value("drift_is_drift", {"model": MODEL, "method": "centroid"}) == 0.0


def test_webhook_posted_on_alarm_only(digit_store, hook_server, capsys):
    store, _ = digit_store
    url, received = hook_server
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--since", str(T0), "--until", str(T0 + DAY),
                     "--webhook", url, "--json"]) == 0
    assert received == [] and "webhook" not in json.loads(capsys.readouterr().out)
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d", "--webhook", url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["webhook"]["status"] == 204
    assert len(received) == 1 and received[0]["path"] == "/hook" and received[0]["type"] == "application/json"
    body = received[0]["body"]
    assert body["event"] == "drift_alarm" and body["model"] == MODEL and body["alarmed_windows"] == 2
    assert [w["top_field"] for w in body["windows"]] == ["sharpness", "brightness"]
    assert body["level"] == "critical" and body["thresholds"] == {"warning": 0.01, "critical": 0.001}
    assert body["text"].startswith("[critical] drift alarm")
    for w in body["windows"]:
        assert set(w["levels"]) == set(w["p_values"])
        for m, lv in w["levels"].items():
            p = w["p_values"][m]
            assert lv == ("critical" if p <= 0.001 else "warning" if p <= 0.01 else "ok")
        assert w["level"] == max(w["levels"].values(), key=["ok", "warning", "critical"].index)
    assert "brightness lower than baseline" in body["text"]


def test_webhook_failure_is_a_warning_not_a_crash(digit_store, capsys):
    store, _ = digit_store
    from serving.launch.server import free_port

    port = free_port()  # a port with nobody listening
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d", "--no-save",
                     "--webhook", f"http://127.0.0.1:{port}/x"]) == 0
    assert "webhook" in capsys.readouterr().err


def test_alert_rules_use_exported_metrics(digit_store, capsys):
    """deploy/prometheus/alerts.yml parses and only names metrics the exporter publishes."""
    import re

    import yaml

    from workflow_testlib import ROOT

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 3
    store, _ = digit_store
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d"]) == 0
    reg = CollectorRegistry()
    export_scores(reg, store)
    exported = {m.name for m in reg.collect()}
    used = {n for e in exprs for n in re.findall(r"\b(drift_[a-z_]+|model_[a-z_]+)\b", e)}
    assert used and used <= exported, used - exported


def test_alert_levels_from_p_values():
    from monitoring.analysis.alerts.levels import level_of

    assert level_of({"p_value": 0.5, "is_drift": False}) == "ok"
    assert level_of({"p_value": 0.01, "is_drift": True}) == "warning"
    assert level_of({"p_value": 0.0011, "is_drift": True}) == "warning"
    assert level_of({"p_value": 0.001, "is_drift": True}) == "critical"
    assert level_of({"p_value": 0.02, "is_drift": True}) == "warning"  # a run scored at a looser alpha
    assert level_of({"p_value": None, "is_drift": True}) == "warning"
    assert level_of({"p_value": 0.004}, {"warning": 0.05, "critical": 0.005}) == "critical"


def test_alert_rules_levels_match_the_code():
    """The warning/critical thresholds written in alerts.yml are the page levels, with matching severities."""
    import re

    import yaml

    from monitoring.analysis.alerts.levels import PAGE_LEVELS
    from workflow_testlib import ROOT

    rules = {r["alert"]: r for g in yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
             for r in g["rules"]}
    for name, level in (("EmbeddingDrift", "warning"), ("EmbeddingDriftCritical", "critical"),
                        ("InputMetadataDrift", "warning"), ("InputMetadataDriftCritical", "critical")):
        assert rules[name]["labels"]["severity"] == level
        ps = [float(x) for x in re.findall(r"drift_p_value\{[^}]*\}\s*<=\s*([0-9.]+)", rules[name]["expr"])]
        assert ps
        assert (max(ps) if level == "warning" else min(ps)) == PAGE_LEVELS[level]


def test_a_long_running_exporter_lists_the_scores_prefix_once_per_interval(digit_store):
    """The scores prefix holds every past run; re-listing it on every scrape gets slow on S3."""
    store, _ = digit_store
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "1d"]) == 0
    collector = DriftScoresCollector(store, list_interval_s=3600.0)
    lists = []
    real_list = collector.backend.list
    collector.backend.list = lambda prefix="": lists.append(prefix) or real_list(prefix)
    first = collector.runs()
    assert cli_main(["score", "--model", MODEL, "--store", str(store), "--every", "12h"]) == 0
    second = collector.runs()
    assert len(lists) == 1  # listed once for both scrapes
    # ... yet the known model's newer run shows at once: latest.json is re-read every scrape
    assert [len(r["windows"]) for r in first] != [len(r["windows"]) for r in second]
    assert second == [load_latest_scores(store, MODEL)]


def test_page_level_needs_two_embedding_methods_or_metadata():
    from monitoring.analysis.alerts.levels import page_level

    p = lambda **kw: {k: {"p_value": v} for k, v in kw.items()}  # noqa: E731
    assert page_level(p(centroid=0.004, mmd=0.2, cluster_jsd=0.5, domain_classifier=0.5, metadata=0.5)) == "ok"
    assert page_level(p(centroid=0.01, cluster_jsd=0.005, mmd=0.2)) == "ok"  # 0.01 is a ticket, not a page
    assert page_level(p(centroid=0.005, cluster_jsd=0.004975, mmd=0.2)) == "warning"
    assert page_level(p(centroid=0.005, domain_classifier=1e-6)) == "critical"
    assert page_level(p(metadata=0.004)) == "warning" and page_level(p(metadata=0.0009)) == "critical"
    assert page_level({}) == "ok"
