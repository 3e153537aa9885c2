"""env/build_env.py: the Python-version table and check, the conda file's pins, and a real
tritonserver loading a model whose code needs a package that exists only in the env tarball."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_build_env():
    spec = importlib.util.spec_from_file_location("build_env", ROOT / "env" / "build_env.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_env"] = module
    spec.loader.exec_module(module)
    return module


build_env = _load_build_env()
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.parametrize("version, python", [
    ("20.12", "3.8"), ("22.12", "3.8"), ("23.04", "3.8"), ("23.05", "3.10"), ("24.01", "3.10"),
    ("24.09", "3.10"), ("24.10", "3.10"), ("24.12", "3.12"), ("25.01", "3.12"), ("25.08", "3.12"),
])
def test_triton_python_table(version, python):
    assert build_env.triton_python(version) == python


def test_python_mismatch_is_a_clear_error():
    with pytest.raises(build_env.EnvBuildError) as info:
        build_env.check_python("24.09", "3.11")
    msg = str(info.value)
    assert "TRITON_VERSION 24.09 runs Python 3.10; this interpreter is 3.11" in msg
    assert "python3.10" in msg and "--triton-version" in msg
    assert build_env.check_python("24.09", "3.10") == "3.10"
    assert build_env.check_python("24.09", "3.11", custom_stub=True) == "3.11"
    assert build_env.check_python("local", "3.11") == "3.11"
    with pytest.raises(build_env.EnvBuildError, match="not a container release"):
        build_env.check_python("latest", "3.11")


def test_default_target_is_the_newest_sagemaker_image_and_make_env_keeps_it():
    from deploy import images

    default = images.DEFAULT_TRITON_VERSION
    target = build_env.cross_target(default)
    assert (target.python, target.abi, target.platforms[0]) == (images.release(default).python, "cp312",
                                                                "manylinux_2_39_x86_64")
    dry = subprocess.run(["make", "-n", "env", "STAMP=Makefile"], cwd=ROOT, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "TRITON_VERSION"})
    assert dry.returncode == 0, dry.stderr
    line = next(line for line in dry.stdout.splitlines() if "env/build_env.py" in line)
    assert "--triton-version" not in line  # build_env.py's own default: the newest image


def test_cli_cross_builds_for_a_python_this_machine_lacks(tmp_path):
    out = tmp_path / "env.tar.gz"
    code = build_env.main(["--triton-version", "24.09", "--method", "pip", "--no-pip", "--package",
                           str(ROOT / "serving"), "--out", str(out), "--work-dir", str(tmp_path / "work")])
    assert code == 0
    with tarfile.open(out) as tar:
        assert tar.getnames()[0] == "python_env.json"
        info = json.loads(tar.extractfile("python_env.json").read())
        assert tar.getmember("bin/python3").linkname == "/usr/bin/python3.10"
        assert "lib/python3.10/site-packages/serving/__init__.py" in tar.getnames()
    assert (info["python"], info["platform"], info["triton_version"]) == ("3.10", "manylinux_2_35_x86_64", "24.09")


def test_cli_refuses_this_interpreters_binaries_for_another_target(tmp_path, capsys):
    code = build_env.main(["--triton-version", "26.05", "--method", "pip", "--no-pip", "--from-installed", "numpy",
                           "--out", str(tmp_path / "env.tar.gz"), "--work-dir", str(tmp_path / "work")])
    assert code == 2
    assert "--from-installed copies this interpreter's binaries" in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "env.tar.gz").exists()


def _fake_dist(site: Path, name: str, tag: str, files: dict[str, bytes]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)


ELF_X86_64 = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (62).to_bytes(2, "little")
ELF_AARCH64 = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (183).to_bytes(2, "little")


def test_check_site_names_every_file_built_for_another_target(tmp_path):
    from deploy.env_target import check_site, target_for

    site = tmp_path / "site"
    _fake_dist(site, "good", "cp312-cp312-manylinux_2_28_x86_64", {"good/_x.cpython-312-x86_64-linux-gnu.so": ELF_X86_64})
    _fake_dist(site, "stable", "cp310-abi3-manylinux_2_17_x86_64", {"stable/_y.abi3.so": ELF_X86_64})
    _fake_dist(site, "pure", "py3-none-any", {"pure/__init__.py": b""})
    _fake_dist(site, "old", "cp311-cp311-manylinux_2_17_x86_64", {"old/_z.cpython-311-x86_64-linux-gnu.so": ELF_X86_64})
    _fake_dist(site, "newglibc", "cp312-cp312-manylinux_2_41_x86_64", {})
    _fake_dist(site, "arm", "cp312-cp312-manylinux_2_28_aarch64", {"arm/libarm.so": ELF_AARCH64})
    problems = check_site(site, target_for("26.05"))
    text = "\n".join(problems)
    assert not any(p.startswith(("good", "stable", "pure")) for p in problems), text
    assert "old-1.0.dist-info: wheel tags cp311-cp311-manylinux_2_17_x86_64 do not fit CPython 3.12" in text
    assert ("old/_z.cpython-311-x86_64-linux-gnu.so: extension built for CPython 3.11 (x86_64), target is "
            ".cpython-312-x86_64-linux-gnu.so") in text
    assert "newglibc-1.0.dist-info: wheel tags cp312-cp312-manylinux_2_41_x86_64 do not fit" in text
    assert "arm/libarm.so: ELF machine 183, not x86_64" in text
    assert len(problems) == 5


def test_real_wheels_install_for_the_target_and_pass_the_check(tmp_path):
    """From the package index: a compiled wheel for CPython 3.12/manylinux installed on 3.11."""
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("markupsafe==3.0.4\n")
    out = tmp_path / "env.tar.gz"
    code = build_env.main(["--method", "pip", "--requirements", str(reqs), "--no-constraints", "--package",
                           str(ROOT / "serving"), "--out", str(out), "--work-dir", str(tmp_path / "work")])
    assert code == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
        info = json.loads(tar.extractfile("python_env.json").read())
    assert "lib/python3.12/site-packages/markupsafe/_speedups.cpython-312-x86_64-linux-gnu.so" in names
    assert info["distributions"] == {"MarkupSafe": "3.0.4"} and info["python"] == "3.12"


def test_full_gpu_env_resolves_for_the_default_image(tmp_path):
    """CI's check of the full GPU env: resolution for the target, every wheel's tags, no download."""
    out = tmp_path / "python_env.tar.gz"
    code = build_env.main(["--resolve-only", "--out", str(out), "--work-dir", str(tmp_path / "work")])
    assert code == 0 and not out.exists()
    report = json.loads((tmp_path / "python_env.resolution.json").read_text())
    versions = {w["name"].lower(): w["version"] for w in report["wheels"]}
    assert versions["torch"] == "2.13.0" and report["cuda"].startswith("13.")
    assert all(w["url"].endswith(".whl") for w in report["wheels"])
    assert report["python"] == "3.12" and report["platform"] == "manylinux_2_39_x86_64"


def test_environment_yml_pins_match_the_lock():
    lock = {}
    for line in (ROOT / "env" / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            lock[name.lower().replace("_", "-")] = version
    text = (ROOT / "env" / "environment.yml").read_text()
    pins = dict((n.lower().replace("_", "-"), v) for n, v in re.findall(r"^\s*-\s*([A-Za-z0-9_.-]+)==(\S+)\s*$",
                                                                        text, re.MULTILINE))
    wanted = [l.strip() for l in (ROOT / "env" / "model-requirements.txt").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
    assert sorted(pins) == sorted(w.lower() for w in wanted)
    assert {n: lock[n] for n in pins} == pins
    assert "- -c requirements.lock" in text
    assert build_env.yml_python(ROOT / "env" / "environment.yml") == "3.11"


MARKER_PY = 'VALUE = "only-in-the-env-tarball"\n'
PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "envprobe-marker"
version = "1.0"

[tool.setuptools]
py-modules = ["envprobe_marker"]
"""
CONFIG = """name: "env_probe"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env/python_env.tar.gz" } }
"""
MODEL_PY = '''import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import _python_env_info
        import envprobe_marker
        import serving

        self.info = json.dumps({"marker": envprobe_marker.VALUE, "build": _python_env_info.BUILD_INFO,
                                "serving": serving.__file__, "python": "%d.%d" % sys.version_info[:2],
                                "prefix": sys.prefix, "marker_file": envprobe_marker.__file__})

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([self.info.encode()], dtype=np.object_))])
                for _ in requests]
'''


def test_env_tarball_serves_a_model_in_a_real_tritonserver(tmp_path):
    import tritonclient.http as httpclient

    from serving.launch.server import TritonProcess
    from tests.conftest import free_port

    with pytest.raises(ImportError):
        import envprobe_marker  # noqa: F401 - the proof only holds if the launching env lacks it
    pkg = tmp_path / "marker_pkg"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "envprobe_marker.py").write_text(MARKER_PY)
    tarball = tmp_path / "dist" / "python_env.tar.gz"
    code = build_env.main(["--method", "pip", "--triton-version", "local", "--requirements", str(pkg),
                           "--no-constraints", "--pip-arg=--no-index", "--pip-arg=--no-build-isolation",
                           "--pip-arg=--no-deps", "--package", str(ROOT / "serving"),
                           # The stub itself needs numpy; copy it from this venv (no network in CI).
                           "--from-installed", "numpy",
                           "--out", str(tarball), "--work-dir", str(tmp_path / "work")])
    assert code == 0 and tarball.is_file()
    import tarfile
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        python3 = tar.getmember("bin/python3")
    site = f"lib/python{HERE}/site-packages"
    assert {"bin/activate", "pyvenv.cfg", f"{site}/envprobe_marker.py", f"{site}/_python_env_info.py",
            f"{site}/serving/__init__.py", f"{site}/numpy/__init__.py"} <= names
    assert python3.issym() and python3.linkname.endswith(f"/python{HERE}")

    model = tmp_path / "repo" / "env_probe"
    (model / "1").mkdir(parents=True)
    (model / "env").mkdir()
    (model / "config.pbtxt").write_text(CONFIG)
    (model / "1" / "model.py").write_text(MODEL_PY)
    tarball.replace(model / "env" / "python_env.tar.gz")
    server = TritonProcess(repo=model.parent, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp_path / "tritonserver.log", models=("env_probe",),
                           extra_env={"OMP_NUM_THREADS": "1"})
    try:
        server.start(wait_s=300)
        client = httpclient.InferenceServerClient(server.http_url)
        inp = httpclient.InferInput("IN", [1], "BYTES")
        inp.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
        try:
            info = json.loads(client.infer("env_probe", [inp]).as_numpy("OUT")[0])
        finally:
            client.close()  # an open keep-alive connection would hold up the graceful stop
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    assert info["marker"] == "only-in-the-env-tarball"
    assert info["build"]["python"] == HERE and info["build"]["triton_version"] == "local"
    assert info["python"] == HERE
    assert info["prefix"].startswith("/tmp/python_env_")  # the unpacked env is the stub's sys.prefix
    assert info["marker_file"] == f"{info['prefix']}/{site}/envprobe_marker.py"
    # `serving` is importable; locally the stub's cwd (the repository root, where TritonProcess
    # starts tritonserver) comes first on sys.path, so it may be the checkout's copy.
    assert info["serving"].endswith("serving/__init__.py")
    assert "python_env" in server.log_path.read_text()
