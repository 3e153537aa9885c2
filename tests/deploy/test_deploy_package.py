"""Packaging: layout, determinism, env embedding, the manifest and `check`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from deploy_testlib import MODELS, make_repo
from deploy.__main__ import main
from deploy.errors import DeployError
from deploy.manifest import check_dist, check_tarball, load_manifest
from deploy.package import ENV_PARAM_VALUE, package_repository
from deploy.pbtxt import get_execution_env_path


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        fh = tar.extractfile(name)
        assert fh is not None
        return fh.read()


def test_layout_and_normalized_metadata(repo: Path, tmp_path: Path) -> None:
    manifest = package_repository(repo, tmp_path / "dist")
    assert sorted(manifest["models"]) == sorted(MODELS)
    tar_path = tmp_path / "dist" / "sd_depth.tar.gz"
    got = members(tar_path)
    assert list(got) == [  # sorted, directories first, no __pycache__
        "sd_depth",
        "sd_depth/1",
        "sd_depth/1/checkpoint",
        "sd_depth/1/checkpoint/config.json",
        "sd_depth/1/checkpoint/model.safetensors",
        "sd_depth/1/checkpoint/provenance.json",
        "sd_depth/1/model.py",
        "sd_depth/config.pbtxt",
    ]
    for info in got.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert info.mode == (0o755 if info.isdir() else 0o644)
    raw = tar_path.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert raw[3] & 0x08 == 0  # FNAME flag clear: no file name in the gzip header
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    # No env option: the config is shipped byte for byte.
    assert read_member(tar_path, "sd_depth/config.pbtxt") == (repo / "sd_depth/config.pbtxt").read_bytes()


def test_same_inputs_same_bytes(repo: Path, tmp_path: Path) -> None:
    package_repository(repo, tmp_path / "a")
    # Touch every source file and change its mode bits beyond rwx: nothing of that may leak in.
    for path in repo.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        if path.is_file():
            path.chmod(0o600)
    package_repository(repo, tmp_path / "b")
    for name in [f"{m}.tar.gz" for m in MODELS] + ["manifest.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_source_date_epoch_sets_mtime(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    manifest = package_repository(repo, tmp_path / "dist")
    assert manifest["source_date_epoch"] == 1700000000
    assert {m.mtime for m in members(tmp_path / "dist/resnet_classifier.tar.gz").values()} == {1700000000}


def test_executable_bit_is_kept_as_0755(repo: Path, tmp_path: Path) -> None:
    (repo / "sd_depth/1/run.sh").write_text("#!/bin/sh\n")
    (repo / "sd_depth/1/run.sh").chmod(0o700)
    package_repository(repo, tmp_path / "dist", models=["sd_depth"])
    assert members(tmp_path / "dist/sd_depth.tar.gz")["sd_depth/1/run.sh"].mode == 0o755


def test_env_tarball_is_embedded_and_config_rewritten(repo: Path, tmp_path: Path) -> None:
    env = tmp_path / "sd_env-2024.06.tar.gz"
    env.write_bytes(b"pretend env tarball")
    source_config = (repo / "sd_depth/config.pbtxt").read_text()
    manifest = package_repository(repo, tmp_path / "dist", env_tarball=env)
    tar_path = tmp_path / "dist/sd_depth.tar.gz"
    assert read_member(tar_path, "sd_depth/env/python_env.tar.gz") == b"pretend env tarball"
    packaged = read_member(tar_path, "sd_depth/config.pbtxt").decode()
    assert get_execution_env_path(packaged) == ENV_PARAM_VALUE == "$$TRITON_MODEL_DIRECTORY/env/python_env.tar.gz"
    assert packaged.startswith(source_config)
    assert (repo / "sd_depth/config.pbtxt").read_text() == source_config  # source untouched
    entry = manifest["models"]["sd_depth"]
    assert entry["env_version"] == "sd_env-2024.06"
    assert entry["execution_env_path"] == ENV_PARAM_VALUE
    assert manifest["env"] == {
        "tarball": "sd_env-2024.06.tar.gz",
        "sha256": hashlib.sha256(b"pretend env tarball").hexdigest(),
        "version": "sd_env-2024.06",
    }


def test_execution_env_path_value_for_baked_image(repo: Path, tmp_path: Path) -> None:
    manifest = package_repository(repo, tmp_path / "dist", execution_env_path="/opt/envs/sd",
                                  env_version="sd-1.0")
    packaged = read_member(tmp_path / "dist/sd_depth.tar.gz", "sd_depth/config.pbtxt").decode()
    assert get_execution_env_path(packaged) == "/opt/envs/sd"
    assert manifest["models"]["sd_depth"]["env_version"] == "sd-1.0"
    assert "sd_depth/env/python_env.tar.gz" not in members(tmp_path / "dist/sd_depth.tar.gz")


def test_manifest_describes_each_tarball(repo: Path, tmp_path: Path) -> None:
    package_repository(repo, tmp_path / "dist", triton_version="24.05")
    manifest = load_manifest(tmp_path / "dist")
    assert manifest == json.loads((tmp_path / "dist/manifest.json").read_text())
    entry = manifest["models"]["resnet_classifier"]
    tar_path = tmp_path / "dist/resnet_classifier.tar.gz"
    assert entry["tarball"] == "resnet_classifier.tar.gz"
    assert entry["sha256"] == hashlib.sha256(tar_path.read_bytes()).hexdigest()
    assert entry["size"] == tar_path.stat().st_size
    assert entry["triton"] == {"container": "24.05", "server": "2.46.0", "python": "3.10"}
    assert entry["env_version"] is None and entry["execution_env_path"] is None
    weights = (repo / "resnet_classifier/1/checkpoint/model.safetensors").read_bytes()
    assert {"path": "resnet_classifier/1/checkpoint/model.safetensors", "size": len(weights),
            "sha256": hashlib.sha256(weights).hexdigest()} in entry["files"]
    assert [f["path"] for f in entry["files"]] == sorted(f["path"] for f in entry["files"])


def test_missing_required_files_and_checkpoint(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", models=["m"])
    (repo / "m/1/model.py").unlink()
    with pytest.raises(DeployError, match=r"model 'm': required file .*m/1/model.py is missing"):
        package_repository(repo, tmp_path / "dist")
    (repo / "m/1/model.py").write_text("pass\n")
    for f in (repo / "m/1/checkpoint").iterdir():
        f.unlink()
    (repo / "m/1/checkpoint").rmdir()
    with pytest.raises(DeployError, match=r"checkpoint is missing; run `make weights` first"):
        package_repository(repo, tmp_path / "dist")
    manifest = package_repository(repo, tmp_path / "dist", require_checkpoint=False)
    assert [f["path"] for f in manifest["models"]["m"]["files"]] == ["m/1/model.py", "m/config.pbtxt"]


def test_unknown_model_and_version(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="no model directory with a config.pbtxt for sd_nope"):
        package_repository(repo, tmp_path / "dist", models=["sd_nope"])
    with pytest.raises(DeployError, match="unknown Triton container version '99.01'"):
        package_repository(repo, tmp_path / "dist", triton_version="99.01")


def test_symlinked_weight_file_is_shipped_as_regular_file(repo: Path, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"blob")
    (repo / "sd_depth/1/checkpoint/linked.bin").symlink_to(blob)
    package_repository(repo, tmp_path / "dist", models=["sd_depth"])
    info = members(tmp_path / "dist/sd_depth.tar.gz")["sd_depth/1/checkpoint/linked.bin"]
    assert info.isfile() and info.size == 4


# --- check -----------------------------------------------------------------------------------

def rewrite(src: Path, dst: Path, *, drop: str | None = None, add: tuple[tarfile.TarInfo, bytes] | None = None,
            change: tuple[str, bytes] | None = None) -> None:
    """Copy a tarball member by member with one alteration (what an attacker or a bad merge does)."""
    with tarfile.open(src) as old:
        items = [(m, old.extractfile(m).read() if m.isfile() else None) for m in old.getmembers()]
    with tarfile.open(dst, "w:gz") as new:
        for info, data in items:
            if info.name == drop:
                continue
            if change and info.name == change[0]:
                data = change[1]
                info.size = len(data)
            new.addfile(info, io.BytesIO(data) if data is not None else None)
        if add:
            new.addfile(add[0], io.BytesIO(add[1]) if add[0].isfile() else None)


@pytest.fixture()
def dist(repo: Path, tmp_path: Path) -> Path:
    package_repository(repo, tmp_path / "dist")
    return tmp_path / "dist"


def test_check_passes_on_fresh_package(dist: Path) -> None:
    assert check_dist(dist) == {"resnet_classifier.tar.gz": [], "sd_depth.tar.gz": []}


def test_check_detects_changed_file(dist: Path) -> None:
    tar_path = dist / "sd_depth.tar.gz"
    original = tar_path.read_bytes()
    rewrite(tar_path, dist / "x.tar.gz", change=("sd_depth/1/model.py", b"import os; os.system('evil')\n"))
    os.replace(dist / "x.tar.gz", tar_path)
    problems = check_tarball(tar_path, load_manifest(dist))
    digest = hashlib.sha256(tar_path.read_bytes()).hexdigest()
    assert f"sha256 is {digest}, manifest says {hashlib.sha256(original).hexdigest()}" in problems
    assert "files whose size or sha256 differ from the manifest: sd_depth/1/model.py" in problems


def test_check_detects_missing_required_and_extra_files(dist: Path) -> None:
    tar_path = dist / "sd_depth.tar.gz"
    extra = tarfile.TarInfo("sd_depth/1/backdoor.py")
    extra.size = 3
    rewrite(tar_path, dist / "x.tar.gz", drop="sd_depth/config.pbtxt", add=(extra, b"bad"))
    os.replace(dist / "x.tar.gz", tar_path)
    problems = check_tarball(tar_path, load_manifest(dist))
    assert "required file sd_depth/config.pbtxt is missing" in problems
    assert "files not in the manifest: sd_depth/1/backdoor.py" in problems
    assert "files in the manifest but not in the tarball: sd_depth/config.pbtxt" in problems


def test_check_detects_unsafe_members(dist: Path) -> None:
    tar_path = dist / "sd_depth.tar.gz"
    link = tarfile.TarInfo("sd_depth/1/checkpoint/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    rewrite(tar_path, dist / "x.tar.gz", add=(link, b""))
    os.replace(dist / "x.tar.gz", tar_path)
    problems = check_tarball(tar_path, load_manifest(dist))
    assert problems[-1] == ("unsafe or invalid member 'sd_depth/1/checkpoint/passwd': "
                            "symbolic link (to '/etc/passwd') is not allowed")


def test_check_detects_member_outside_top_folder(dist: Path) -> None:
    tar_path = dist / "sd_depth.tar.gz"
    stray = tarfile.TarInfo("other_model/config.pbtxt")
    stray.size = 1
    rewrite(tar_path, dist / "x.tar.gz", add=(stray, b"x"))
    os.replace(dist / "x.tar.gz", tar_path)
    assert "members outside the top folder sd_depth/: other_model/config.pbtxt" in check_tarball(
        tar_path, load_manifest(dist))


def test_check_unknown_and_missing_tarballs(dist: Path) -> None:
    assert check_dist(dist, ["nope.tar.gz"]) == {"nope.tar.gz": ["nope.tar.gz is not listed in the manifest"]}
    (dist / "sd_depth.tar.gz").unlink()
    assert check_dist(dist)["sd_depth.tar.gz"] == [f"{dist / 'sd_depth.tar.gz'} is missing"]


def test_cli_package_and_check(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist_dir = tmp_path / "dist"
    assert main(["package", "--repo", str(repo), "--dist", str(dist_dir), "--env-version", "e1",
                 "--no-code-package"]) == 0
    out = capsys.readouterr().out
    assert f"{dist_dir / 'sd_depth.tar.gz'}" in out and "manifest.json" in out
    assert load_manifest(dist_dir)["models"]["sd_depth"]["env_version"] == "e1"
    assert main(["check", "--dist", str(dist_dir)]) == 0
    assert capsys.readouterr().out == ("OK   image sagemaker-tritonserver:26.05-py3 (Python 3.12, glibc 2.39)\n"
                                       "OK   resnet_classifier.tar.gz\nOK   sd_depth.tar.gz\n"
                                       "OK   weights resnet_classifier: tiny random weights, for tests (outputs are noise); "
                                       "1 weight file(s) with sha256\n"
                                       "OK   weights sd_depth: tiny random weights, for tests (outputs are noise); "
                                       "1 weight file(s) with sha256\n")
    with open(dist_dir / "sd_depth.tar.gz", "ab") as fh:
        fh.write(b"\0")  # one appended byte: the sha and size no longer match
    assert main(["check", "--dist", str(dist_dir), "sd_depth.tar.gz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL sd_depth.tar.gz\n  - size is ")
    assert "manifest says" in err


def test_code_package_is_shipped_in_the_model_directory(repo: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "mypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "x.py").write_text("X = 1\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    manifest = package_repository(repo, tmp_path / "dist", code_packages=[pkg])
    names = list(members(tmp_path / "dist/sd_depth.tar.gz"))
    assert [n for n in names if "mypkg" in n] == [
        "sd_depth/mypkg", "sd_depth/mypkg/__init__.py", "sd_depth/mypkg/sub", "sd_depth/mypkg/sub/x.py"]
    assert manifest["models"]["sd_depth"]["code_packages"] == ["mypkg"]
    assert check_dist(tmp_path / "dist") == {"resnet_classifier.tar.gz": [], "sd_depth.tar.gz": []}

    (pkg / "__init__.py").unlink()
    with pytest.raises(DeployError, match=r"code package .*mypkg is not a Python package \(no __init__.py\)"):
        package_repository(repo, tmp_path / "dist", code_packages=[pkg])
    (pkg / "__init__.py").write_text("")
    (repo / "sd_depth" / "mypkg").mkdir()
    (repo / "sd_depth" / "mypkg" / "clash.py").write_text("")
    with pytest.raises(DeployError, match="model 'sd_depth' already has a 'mypkg' entry"):
        package_repository(repo, tmp_path / "dist", code_packages=[pkg])


def test_cli_ships_serving_and_monitoring_by_default(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["package", "--repo", str(repo), "--dist", str(tmp_path / "dist")]
    assert main(args) == 1
    assert capsys.readouterr().err == (
        f"error: code package serving/ not found in {tmp_path}; run from the repository root, "
        "pass --code-package DIR or --no-code-package\n")
    for package in ("serving", "monitoring"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"# the project's {package} package\n")
    assert main(args) == 0
    assert {"sd_depth/serving/__init__.py", "sd_depth/monitoring/__init__.py"} <= set(members(tmp_path / "dist/sd_depth.tar.gz"))
    assert load_manifest(tmp_path / "dist")["models"]["resnet_classifier"]["code_packages"] == ["serving", "monitoring"]


def test_cli_package_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["package", "--repo", str(tmp_path / "none"), "--dist", str(tmp_path / "d"),
                 "--no-code-package"]) == 1
    assert capsys.readouterr().err == f"error: model repository {tmp_path / 'none'} does not exist\n"
