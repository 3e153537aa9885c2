"""env/build_env.py: the Python-version table and check, the conda file's pins, and a real
tritonserver loading a model whose code needs a package that exists only in the env tarball."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
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


def test_cli_refuses_a_mismatched_interpreter_before_building(tmp_path, capsys):
    other = "24.12" if HERE != "3.12" else "24.09"
    code = build_env.main(["--triton-version", other, "--method", "pip", "--out", str(tmp_path / "env.tar.gz"),
                           "--work-dir", str(tmp_path / "work")])
    assert code == 2
    assert f"runs Python {build_env.triton_python(other)}; this interpreter is {HERE}" in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "env.tar.gz").exists()


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

    from serving.server import TritonProcess
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
