"""`python -m deploy check`: env tarball, model tarballs and image must agree (Python, release, platform).

Env tarballs are built by env/build_env.py itself (no requirements: nothing is downloaded), for
the release under test, so what is checked is what the builder really writes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path


from deploy.__main__ import main
from deploy.env_target import read_env_manifest
from deploy.package import package_repository

ROOT = Path(__file__).resolve().parents[2]
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:26.05-py3"


def _build_env_module():
    spec = importlib.util.spec_from_file_location("build_env_for_compat", ROOT / "env" / "build_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_env = _build_env_module()


def make_env(tmp_path: Path, triton_version: str) -> Path:
    out = tmp_path / f"env-{triton_version}" / "python_env.tar.gz"
    code = build_env.main(["--method", "pip", "--triton-version", triton_version, "--no-pip",
                           "--package", str(ROOT / "serving"), "--out", str(out),
                           "--work-dir", str(tmp_path / f"work-{triton_version}")])
    assert code == 0 and out.is_file()
    return out


def check(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["check", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_env_manifest_is_the_first_member_and_records_the_target(tmp_path):
    env = make_env(tmp_path, "26.05")
    with tarfile.open(env) as tar:
        first = tar.next()
        assert first.name == "python_env.json"
        assert "lib/python3.12/site-packages/serving/__init__.py" in tar.getnames()
    info = read_env_manifest(env)
    assert (info["python"], info["abi"], info["platform"], info["triton_version"]) == (
        "3.12", "cp312", "manylinux_2_39_x86_64", "26.05")


def test_env_built_for_the_wrong_python_is_rejected_naming_both_versions(tmp_path, capsys):
    old = make_env(tmp_path, "24.09")
    rc, _, err = check(capsys, "--dist", str(tmp_path / "no-dist"), "--env-tarball", str(old), "--image-uri", IMAGE)
    assert rc == 1
    assert ("env python_env.tar.gz built for Python 3.10, image sagemaker-tritonserver:26.05-py3 runs Python 3.12"
            in err)
    rc, out, _ = check(capsys, "--dist", str(tmp_path / "no-dist"), "--env-tarball", str(old), "--triton-version", "24.09")
    assert rc == 0 and out == "OK   image sagemaker-tritonserver:24.09-py3 (Python 3.10, glibc 2.35)\n"


def test_local_env_of_this_interpreter_is_rejected_for_the_default_image(tmp_path, capsys):
    local = make_env(tmp_path, "local")
    rc, _, err = check(capsys, "--dist", str(tmp_path / "no-dist"), "--env-tarball", str(local))
    assert rc == (0 if HERE == "3.12" else 1)
    if HERE != "3.12":
        assert f"built for Python {HERE}, image sagemaker-tritonserver:26.05-py3 runs Python 3.12" in err


def test_env_for_a_newer_glibc_is_rejected(tmp_path, capsys):
    env = tmp_path / "env.tar.gz"
    with tarfile.open(env, "w:gz") as tar:
        data = json.dumps({"python": "3.12", "platform": "manylinux_2_41_x86_64"}).encode()
        info = tarfile.TarInfo("python_env.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    rc, _, err = check(capsys, "--dist", str(tmp_path / "no-dist"), "--env-tarball", str(env))
    assert rc == 1
    assert "built for manylinux_2_41_x86_64, image sagemaker-tritonserver:26.05-py3 has glibc 2.39" in err


def test_models_with_an_embedded_env_are_checked_against_the_image(repo, tmp_path, capsys):
    dist = tmp_path / "dist"
    package_repository(repo, dist, env_tarball=make_env(tmp_path, "24.09"), triton_version="24.09")
    rc, out, err = check(capsys, "--dist", str(dist), "--image-uri", IMAGE)
    assert rc == 1
    assert "OK   sd_depth.tar.gz" in out  # the tarballs themselves are intact
    assert ("model tarballs were packaged for Triton 24.09 (Python 3.10), image sagemaker-tritonserver:26.05-py3 "
            "runs Python 3.12; repackage with --triton-version 26.05") in err
    assert ("env sd_depth.tar.gz:env/python_env.tar.gz built for Python 3.10, image "
            "sagemaker-tritonserver:26.05-py3 runs Python 3.12") in err

    good = tmp_path / "dist-good"
    package_repository(repo, good, env_tarball=make_env(tmp_path, "26.05"))
    rc, out, err = check(capsys, "--dist", str(good), "--image-uri", IMAGE)
    assert (rc, err) == (0, "")
    assert "OK   image sagemaker-tritonserver:26.05-py3 (Python 3.12, glibc 2.39)" in out


def test_custom_image_needs_a_release(tmp_path, capsys):
    env = make_env(tmp_path, "26.05")
    rc, _, err = check(capsys, "--dist", str(tmp_path), "--env-tarball", str(env), "--image-uri", "example.com/me:v1")
    assert rc == 1 and "cannot tell the Triton release of image 'example.com/me:v1' from its tag" in err
    rc, _, _ = check(capsys, "--dist", str(tmp_path), "--env-tarball", str(env), "--image-uri", "example.com/me:v1",
                     "--triton-version", "26.05")
    assert rc == 0


def test_env_without_a_manifest_is_judged_by_its_site_packages(tmp_path, capsys):
    env = tmp_path / "conda-env.tar.gz"  # a conda-pack tarball has no python_env.json
    with tarfile.open(env, "w:gz") as tar:
        info = tarfile.TarInfo("lib/python3.11/site-packages/six.py")
        tar.addfile(info, io.BytesIO(b""))
    rc, _, err = check(capsys, "--dist", str(tmp_path / "no-dist"), "--env-tarball", str(env))
    assert rc == 1
    assert "env conda-env.tar.gz built for Python 3.11, image sagemaker-tritonserver:26.05-py3 runs Python 3.12" in err
