"""What an execution environment is built for, and checks that it really is.

An env for a SageMaker Triton image must match the image's stub interpreter (CPython
major.minor) and platform (x86_64 Linux, glibc no newer than the image's). The builder
(env/build_env.py) writes `python_env.json` at the env's root; `deploy check` reads it back
from a tarball and compares it with the image (Python, Triton release, platform).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy import images
from deploy.errors import DeployError

ENV_MANIFEST = "python_env.json"
_SO_TAG = re.compile(r"\.cpython-(\d)(\d+)-([a-z0-9_]+)-linux-gnu\.so$")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_([a-z0-9_]+)$")
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_ELF_X86_64 = 62
_LIB_PYTHON = re.compile(r"^lib/python(\d+\.\d+)/")


@dataclass(frozen=True)
class EnvTarget:
    """The interpreter and platform an env's wheels must fit."""

    triton_version: str
    python: str  # "3.12"
    glibc: str  # "2.39": the newest manylinux_X_Y a wheel may need
    arch: str = "x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def platforms(self) -> list[str]:
        """Every platform tag a wheel may carry to run there, newest first (pip's --platform list)."""
        major, minor = (int(x) for x in self.glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        return tags + [f"{legacy}_{self.arch}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]

    @property
    def so_suffix(self) -> str:
        return f".cpython-{self.abi[2:]}-{self.arch}-linux-gnu.so"

    def describe(self) -> str:
        return f"CPython {self.python}, {self.platforms[0]} (Triton {self.triton_version})"

    def as_dict(self) -> dict:
        return {**asdict(self), "abi": self.abi, "platform": self.platforms[0], "implementation": "cp"}


def target_for(triton_version: str) -> EnvTarget:
    """The target of a container release in deploy/images.py (unknown releases are an error)."""
    release = images.release(triton_version)
    return EnvTarget(triton_version=release.container, python=release.python, glibc=release.glibc)


def wheel_tag_fits(tag: str, target: EnvTarget) -> bool:
    """Whether one wheel tag `py-abi-platform` (each part may be dotted) installs on `target`."""
    try:
        pythons, abis, platforms = (part.split(".") for part in tag.split("-"))
    except ValueError:
        return False
    minor = int(target.python.split(".")[1])

    def interpreter_fits(python: str, abi: str) -> bool:
        if python == "py3" or (python.startswith("py3") and python[3:].isdigit()):
            # pure Python or Python-agnostic binaries: py3, or py39 = "Python 3.9 and later" to pip
            return abi == "none" and (python == "py3" or int(python[3:]) <= minor)
        if python == target.abi:
            return abi in ("none", "abi3", target.abi)
        # cp310-abi3: the stable ABI of 3.10 and every later CPython
        return python.startswith("cp3") and abi == "abi3" and int(python[3:]) <= minor

    return any(interpreter_fits(p, a) for p in pythons for a in abis) and any(
        _platform_fits(p, target) for p in platforms)


def _platform_fits(platform: str, target: EnvTarget) -> bool:
    if platform == "any":
        return True
    want = tuple(int(x) for x in target.glibc.split("."))
    m = _MANYLINUX.match(platform)
    if m:
        return m.group(3) == target.arch and (int(m.group(1)), int(m.group(2))) <= want
    legacy, _, arch = platform.partition("_")
    return legacy in _LEGACY and arch == target.arch and _LEGACY[legacy] <= want


def _elf_machine(path: Path) -> int | None:
    with open(path, "rb") as fh:
        head = fh.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def check_site(site: str | os.PathLike[str], target: EnvTarget) -> list[str]:
    """Problems with the compiled files under a site-packages dir for `target` ([] = all fit).

    Every installed wheel's tags (`*.dist-info/WHEEL`) must fit the target; every extension
    module's ABI tag (`.cpython-312-x86_64-linux-gnu.so`) must be the target's; every shared
    object must be an x86_64 ELF file. Windows/macOS binaries are refused outright.
    """
    problems: list[str] = []
    root = Path(site)
    for wheel in sorted(root.glob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines()
                if line.startswith("Tag:")]
        if not tags:
            problems.append(f"{wheel.parent.name}: no wheel tags (installed from an sdist?)")
        elif not any(wheel_tag_fits(t, target) for t in tags):
            problems.append(f"{wheel.parent.name}: wheel tags {', '.join(tags)} do not fit {target.describe()}")
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            if name.endswith((".pyd", ".dylib", ".dll")):
                problems.append(f"{rel}: not a Linux binary")
                continue
            if not (name.endswith(".so") or ".so." in name):
                continue
            m = _SO_TAG.search(name)
            if m and not name.endswith(target.so_suffix):
                problems.append(f"{rel}: extension built for CPython {m.group(1)}.{m.group(2)} "
                                f"({m.group(3)}), target is {target.so_suffix}")
            if path.is_file() and not path.is_symlink() and _elf_machine(path) not in (_ELF_X86_64, None):
                problems.append(f"{rel}: ELF machine {_elf_machine(path)}, not {target.arch}")
    return problems


def env_manifest_from(tar: tarfile.TarFile, source: str) -> dict:
    """What an open env tarball says it was built for: its python_env.json, else its lib/pythonX.Y/.

    Envs from env/build_env.py carry python_env.json as their first member; for others (a
    conda-pack tarball) the site-packages directory name gives the Python version. Works on
    a stream (mode "r|*"): members are read in order and only up to the answer.
    """
    for member in tar:
        name = member.name[2:] if member.name.startswith("./") else member.name
        if name == ENV_MANIFEST and member.isfile():
            fh = tar.extractfile(member)
            assert fh is not None
            return json.loads(fh.read())
        m = _LIB_PYTHON.match(name)
        if m:  # python_env.json, when present, precedes lib/
            return {"python": m.group(1), "platform": None, "triton_version": None}
    raise DeployError(f"{source}: no {ENV_MANIFEST} and no lib/pythonX.Y/ - not an execution env")


def read_env_manifest(tarball: str | os.PathLike[str]) -> dict:
    """env_manifest_from() for an env tarball on disk."""
    try:
        with tarfile.open(tarball, "r:*") as tar:
            return env_manifest_from(tar, str(tarball))
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise DeployError(f"{tarball}: not a readable env tarball: {exc}") from None


def env_problems(env: dict, image: str, release: images.TritonRelease, source: str = "env") -> list[str]:
    """Why an env (its manifest) cannot run on `release` ([] when it can)."""
    problems = []
    if env.get("python") != release.python:
        problems.append(f"{source} built for Python {env.get('python')}, image {image} runs Python {release.python}")
    platform = env.get("platform")
    if platform:
        target = EnvTarget(release.container, release.python, release.glibc)
        if not _platform_fits(platform, target):
            problems.append(f"{source} built for {platform}, image {image} has glibc {release.glibc} "
                            f"(Ubuntu {release.ubuntu}): needs {target.platforms[0]} or older")
    return problems
