"""`deploy check` / `create` refuse test weights and print where every model's weights came from."""

from __future__ import annotations

import json

import pytest
from deploy.__main__ import main
from deploy_testlib import make_repo


def _package(repo, dist) -> None:
    assert main(["package", "--repo", str(repo), "--dist", str(dist), "--no-code-package"]) == 0


@pytest.fixture()
def no_opt_in(monkeypatch):
    monkeypatch.delenv("DEPLOY_ALLOW_TEST_WEIGHTS", raising=False)


def test_check_refuses_tiny_weights_naming_the_model(tmp_path, no_opt_in, capsys):
    repo = make_repo(tmp_path / "repo")
    _package(repo, tmp_path / "dist")
    capsys.readouterr()
    assert main(["check", "--dist", str(tmp_path / "dist")]) == 1
    out, err = capsys.readouterr()
    assert "FAIL weights sd_depth: tiny random weights, for tests (outputs are noise)" in err
    assert ("model sd_depth: its weights are tiny random weights made for tests (every output is noise); "
            "refusing to deploy them. get real ones with `make weights-real`") in err
    assert "--allow-test-weights or DEPLOY_ALLOW_TEST_WEIGHTS=1" in err
    assert "OK   sd_depth.tar.gz" in out  # the tarball itself is intact: only the weights are refused
    # The explicit opt-in (tests, CI, rehearsals) passes, and still says what the weights are.
    assert main(["check", "--dist", str(tmp_path / "dist"), "--allow-test-weights"]) == 0
    assert "OK   weights sd_depth: tiny random weights, for tests" in capsys.readouterr().out


def test_check_refuses_weights_of_unknown_origin(tmp_path, no_opt_in, capsys):
    _package(make_repo(tmp_path / "repo", provenance_kind=None), tmp_path / "dist")
    capsys.readouterr()
    assert main(["check", "--dist", str(tmp_path / "dist")]) == 1
    err = capsys.readouterr().err
    assert "FAIL weights resnet_classifier: unknown origin (no provenance.json)" in err
    assert "model resnet_classifier: its weights have no recorded origin" in err


def test_check_passes_real_weight_provenance_and_prints_it(tmp_path, no_opt_in, capsys):
    _package(make_repo(tmp_path / "repo", provenance_kind="hub"), tmp_path / "dist")
    capsys.readouterr()
    assert main(["check", "--dist", str(tmp_path / "dist")]) == 0
    out = capsys.readouterr().out
    assert f"OK   weights sd_depth: hub example/sd_depth@{'0' * 40}; 1 weight file(s) with sha256" in out


def test_check_catches_weights_changed_after_they_were_recorded(tmp_path, no_opt_in, capsys):
    repo = make_repo(tmp_path / "repo", provenance_kind="hub")
    (repo / "sd_depth/1/checkpoint/model.safetensors").write_bytes(b"other weights")
    _package(repo, tmp_path / "dist")
    capsys.readouterr()
    assert main(["check", "--dist", str(tmp_path / "dist")]) == 1
    err = capsys.readouterr().err
    assert "model sd_depth: weight file model.safetensors has sha256" in err
    assert "provenance.json recorded" in err and "changed after it was fetched" in err


def test_manifest_carries_provenance_per_model(tmp_path):
    _package(make_repo(tmp_path / "repo", provenance_kind="hub"), tmp_path / "dist")
    manifest = json.loads((tmp_path / "dist/manifest.json").read_text())
    weights = manifest["models"]["resnet_classifier"]["weights"]
    assert weights["kind"] == "hub" and weights["source"] == "example/resnet_classifier"
    assert list(weights["weights"]) == ["model.safetensors"] and len(weights["weights"]["model.safetensors"]) == 64


def test_create_refuses_tiny_weights_before_any_endpoint_call(tmp_path, no_opt_in, moto_url, clients, bucket,
                                                               role_arn, capsys):
    _package(make_repo(tmp_path / "repo"), tmp_path / "dist")
    aws = ["--endpoint-url", moto_url]
    assert main(["upload", "--bucket", bucket, "--prefix", "m", "--dist", str(tmp_path / "dist"), *aws]) == 0
    capsys.readouterr()
    rc = main(["create", "--name", "tiny-ep", "--role-arn", role_arn, "--model-data-url", f"s3://{bucket}/m/",
               "--instance-type", "ml.g4dn.xlarge", "--no-wait", "--dist", str(tmp_path / "nowhere"), *aws])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error: weights check failed:" in err and "model sd_depth: its weights are tiny random weights" in err
    assert clients["sagemaker"].list_endpoints()["Endpoints"] == []
    assert clients["sagemaker"].list_models()["Models"] == []
