"""`deploy update` / `versions` / `prune` against moto: versions side by side, the alias switched."""

from __future__ import annotations

import json
import tarfile

import pytest
from deploy import versions
from deploy.__main__ import main
from deploy_testlib import make_repo
from serving.runtime.checkpoints import provenance


def _objects(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _update(moto_url, bucket, repo, dist, *extra) -> int:
    return main(["update", "--bucket", bucket, "--prefix", "mme", "--repo", str(repo), "--dist", str(dist),
                 "--no-code-package", "--endpoint-url", moto_url, *extra])


def test_update_uploads_new_versions_and_switches_the_alias(tmp_path, moto_url, clients, bucket, monkeypatch, capsys):
    monkeypatch.delenv("DEPLOY_ALLOW_TEST_WEIGHTS")  # these weights claim a pinned hub revision
    s3 = clients["s3"]
    repo = make_repo(tmp_path / "repo", provenance_kind="hub")
    assert _update(moto_url, bucket, repo, tmp_path / "d1") == 0
    first = json.loads((tmp_path / "d1/manifest.json").read_text())["models"]
    v1 = first["sd_depth"]["tarball"]
    assert v1 == f"sd_depth-{first['sd_depth']['version']}.tar.gz" and len(first["sd_depth"]["version"]) == 12
    with tarfile.open(tmp_path / "d1" / v1) as tar:  # the top folder and Triton name carry the version too
        config = tar.extractfile(f"sd_depth-{first['sd_depth']['version']}/config.pbtxt").read().decode()
    assert config.startswith(f'name: "sd_depth-{first["sd_depth"]["version"]}"')
    assert f"alias sd_depth -> {v1} (new)" in capsys.readouterr().out

    # Same content again: same names, nothing re-uploaded, alias unchanged.
    assert _update(moto_url, bucket, repo, tmp_path / "d1") == 0
    out = capsys.readouterr().out
    assert f"skip   s3://{bucket}/mme/{v1}" in out and f"alias sd_depth -> {v1} (unchanged)" in out

    # New weights for sd_depth only: a new version next to the old one.
    ckpt = repo / "sd_depth/1/checkpoint"
    (ckpt / "model.safetensors").write_bytes(b"retrained" * 100)
    provenance.record(ckpt, "hub", source="example/sd_depth", revision="1" * 40)
    assert _update(moto_url, bucket, repo, tmp_path / "d2") == 0
    second = json.loads((tmp_path / "d2/manifest.json").read_text())["models"]
    v2 = second["sd_depth"]["tarball"]
    assert v2 != v1 and second["resnet_classifier"]["tarball"] == first["resnet_classifier"]["tarball"]
    assert f"alias sd_depth -> {v2} (was {v1})" in capsys.readouterr().out
    assert _objects(s3, bucket) == sorted([f"mme/{versions.ALIAS_NAME}", "mme/manifest.json", f"mme/{v1}", f"mme/{v2}",
                                           f"mme/{first['resnet_classifier']['tarball']}"])
    doc = versions.read_aliases(s3, bucket, "mme")
    assert doc["models"]["sd_depth"]["current"] == v2
    assert [h["tarball"] for h in doc["models"]["sd_depth"]["history"]] == [v1, v2]
    # Callers keep asking for the model name.
    assert versions.resolve_url(s3, f"s3://{bucket}/mme/", "sd_depth") == v2
    assert versions.resolve_url(s3, f"s3://{bucket}/mme/", v1) == v1
    assert versions.resolve_url(s3, f"s3://{bucket}/mme/", "sd_img2img") == "sd_img2img.tar.gz"  # no alias

    assert main(["versions", "--bucket", bucket, "--prefix", "mme", "--endpoint-url", moto_url]) == 0
    listing = capsys.readouterr().out.splitlines()
    depth = [line for line in listing if " sd_depth " in line]
    assert [line[0] for line in depth] == [" ", "*"] and v1 in depth[0] and v2 in depth[1]

    assert main(["prune", "--bucket", bucket, "--prefix", "mme", "--dry-run", "--endpoint-url", moto_url]) == 0
    assert f"mme/{v1}" in _objects(s3, bucket)
    assert main(["prune", "--bucket", bucket, "--prefix", "mme", "--endpoint-url", moto_url]) == 0
    assert f"delete s3://{bucket}/mme/{v1}" in capsys.readouterr().out
    assert f"mme/{v1}" not in _objects(s3, bucket) and f"mme/{v2}" in _objects(s3, bucket)
    assert [h["tarball"] for h in versions.read_aliases(s3, bucket, "mme")["models"]["sd_depth"]["history"]] == [v2]


def test_update_refuses_tiny_weights_and_uploads_nothing(tmp_path, moto_url, clients, bucket, monkeypatch, capsys):
    monkeypatch.delenv("DEPLOY_ALLOW_TEST_WEIGHTS")
    assert _update(moto_url, bucket, make_repo(tmp_path / "repo"), tmp_path / "d") == 1
    assert "model resnet_classifier: its weights are tiny random weights" in capsys.readouterr().err
    assert _objects(clients["s3"], bucket) == []


def test_update_refuses_unversioned_packages(tmp_path, moto_url, bucket, capsys):
    assert main(["package", "--repo", str(make_repo(tmp_path / "repo")), "--dist", str(tmp_path / "d"),
                 "--no-code-package"]) == 0
    assert _update(moto_url, bucket, tmp_path / "repo", tmp_path / "d", "--no-package") == 1
    assert "packaged without a version" in capsys.readouterr().err


def test_prune_keeps_the_current_and_keep_newest(tmp_path, moto_url, clients, bucket):
    s3 = clients["s3"]
    repo = make_repo(tmp_path / "repo", models=("sd_depth",))
    names = []
    for i in range(3):
        (repo / "sd_depth/1/checkpoint/model.safetensors").write_bytes(f"weights {i}".encode() * 50)
        provenance.record(repo / "sd_depth/1/checkpoint", "tiny-random")
        assert _update(moto_url, bucket, repo, tmp_path / f"d{i}") == 0
        names.append(json.loads((tmp_path / f"d{i}/manifest.json").read_text())["models"]["sd_depth"]["tarball"])
    assert versions.prune(s3, bucket, "mme", keep=1, log=lambda _: None) == [names[0]]
    assert [v.tarball for v in versions.list_versions(s3, bucket, "mme")] == names[1:]
    with pytest.raises(Exception, match="--keep must be 0 or more"):
        versions.prune(s3, bucket, "mme", keep=-1)


def test_load_tester_resolves_the_alias(tmp_path, moto_url, clients, bucket):
    from bench.loadtest.cli import build_parser, make_transport

    repo = make_repo(tmp_path / "repo", models=("sd_depth",))
    assert _update(moto_url, bucket, repo, tmp_path / "d") == 0
    current = versions.read_aliases(clients["s3"], bucket, "mme")["models"]["sd_depth"]["current"]
    args = build_parser().parse_args(["sd_depth", "--protocol", "sagemaker", "--endpoint-name", "ep",
                                      "--endpoint-url", "http://127.0.0.1:9", "--model-data-url", f"s3://{bucket}/mme/",
                                      "--s3-endpoint-url", moto_url])
    assert make_transport(args).target_model == current
    args.target_model = "sd_depth.tar.gz"  # an explicit TargetModel wins
    assert make_transport(args).target_model == "sd_depth.tar.gz"
