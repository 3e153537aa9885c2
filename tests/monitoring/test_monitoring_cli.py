"""``python -m monitoring``: the records command and the subcommand registry."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from capture_testlib import BASE_TS, PY, ROOT, produce

from monitoring import cli
from monitoring.ingest.sidecar import Sidecar


def run_cli(*args: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([PY, "-m", "monitoring", *args], cwd=str(cwd), env=e, capture_output=True, text=True, timeout=120)


@pytest.fixture
def store(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    produce(spool, 50, "m1", ts=lambda i: BASE_TS + i * 1000)
    sc = Sidecar(spool, store, compact_every=0)
    sc.start()
    sc.run_once()
    sc.close()
    return store


def test_records_json(store):
    r = run_cli("records", "--store", str(store), "--model", "m1", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["count"] == 50 and info["model"] == "m1"
    assert info["columns"][:5] == ["schema_version", "request_id", "model", "model_version", "ts_ms"] and "embedding" in info["columns"]
    assert (info["first_ts_ms"], info["last_ts_ms"], info["schema_versions"]) == (BASE_TS, BASE_TS + 49_000, [1])
    r = run_cli("records", "--store", str(store), "--model", "m1", "--json", "--since", "2024-05-01T12:00:10Z", "--until", str(BASE_TS + 20_000))
    assert json.loads(r.stdout)["count"] == 10
    r = run_cli("records", "--store", str(store), "--model", "m1", "--json", "--since", str(BASE_TS // 1000 + 40), "--head", "2")
    info = json.loads(r.stdout)
    assert info["count"] == 10 and [h["request_id"] for h in info["head"]] == ["m1-req-000040", "m1-req-000041"]
    assert "embedding" not in info["head"][0]


def test_records_text_default_store_and_errors(store, tmp_path):
    r = run_cli("records", "--model", "m1", env={"MONITORING_STORE": str(store)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"model m1: 50 records in {store}"
    assert "columns: schema_version, request_id, model," in r.stdout
    r = run_cli("records", "--store", str(store), "--model", "m1", "--since", "yesterday-ish")
    assert r.returncode == 2 and "not an ISO-8601 time or epoch number: 'yesterday-ish'" in r.stderr
    r = run_cli("records", "--store", str(store), "--model", "../m1")
    assert r.returncode == 2 and "invalid model name '../m1'" in r.stderr
    # relative default store: var/store under the working directory
    (tmp_path / "var").mkdir()
    os.symlink(store, tmp_path / "var" / "store")
    r = run_cli("records", "--model", "m1", "--json", cwd=tmp_path, env={"MONITORING_STORE": ""})
    assert json.loads(r.stdout)["count"] == 50


def test_registry_accepts_new_subcommands(monkeypatch, capsys):
    cli.build_parser()  # import the command modules first, so they register in the real registry
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    seen = {}

    def configure(p):
        p.add_argument("--model", required=True)

    @cli.command("hello", help="say hello", configure=configure)
    def hello(args):
        seen["model"] = args.model
        print("hi", args.model)
        return 3

    assert cli.main(["hello", "--model", "m9"]) == 3
    assert seen == {"model": "m9"} and capsys.readouterr().out == "hi m9\n"
    # cli.py's own command first; the modules' commands follow in whatever order earlier imports in
    # this process (another test file on the same xdist worker) registered them
    assert list(cli.COMMANDS)[0] == "records" and {"sidecar", "score", "hello"} <= set(cli.COMMANDS)
    with pytest.raises(ValueError, match="subcommand 'records' is already registered"):
        cli.register("records", lambda a: 0, help="clash")


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0 and "sidecar" in r.stdout and "records" in r.stdout
    r = run_cli("sidecar", "--help")
    assert "--datacapture-dir" in r.stdout and "--s3-endpoint-url" in r.stdout and "--compact-every" in r.stdout
