#!/usr/bin/env python3
"""Build `dist/python_env.tar.gz`: the Python execution environment Triton's Python backend
unpacks for a model whose config sets `EXECUTION_ENV_PATH` (see docs/env.md).

    python env/build_env.py                                  # for the newest SageMaker Triton image (26.05)
    python env/build_env.py --triton-version 25.09 --out dist/python_env.tar.gz
    python env/build_env.py --resolve-only                   # resolve the full GPU env, install nothing
    python env/build_env.py --variant no-torch               # everything but torch + its CUDA wheels (CI)
    python env/build_env.py --triton-version local           # for the bundled tritonserver, this Python

Two flavours:
* conda (where `conda` and `conda-pack` exist, or --method conda): `conda env create` from
  env/environment.yml, the project packages copied into its site-packages, `conda-pack`.
* pip (elsewhere, e.g. this machine): a relocatable venv-shaped directory. For a container
  release the wheels are resolved and installed for the *target* interpreter and platform
  (`pip --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_39_x86_64
  ... --only-binary=:all:`: no 3.12 interpreter needed here, sdists refused), then every
  compiled file is checked against the target (deploy/env_target.py) and `python_env.json`
  records what the env was built for (`deploy check` compares it with the image).
      bin/activate                       PATH=<env>/bin first, VIRTUAL_ENV, PYTHONPATH, LD_LIBRARY_PATH
      bin/python3 -> <python-home>/pythonX.Y   (symlink to the container's interpreter)
      pyvenv.cfg                         home = <python-home>
      lib/pythonX.Y/site-packages/       `pip install --target`, plus serving/ and monitoring/
      lib/pythonX.Y/site-packages/_python_env_info.py   what was built, for whom
      python_env.json                    the same, readable without unpacking (first member)
  packed as a deterministic tar.gz. Why a venv and not just PYTHONPATH: the stub embeds
  Python in *isolated* mode (checked with tritonserver 2.51: sys.flags.isolated == 1), so
  PYTHONPATH is ignored; its sys.prefix comes from the first `python3` on PATH and that
  directory's pyvenv.cfg, exactly like a venv (or a conda-pack env, whose bin/python3 is real).
  The stub's interpreter runs the env, so its major.minor must equal the stub's: the
  TRITON_VERSION -> Python table below is checked before anything is built.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import pprint
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the target table lives in the deploy package

from deploy import images  # noqa: E402
from deploy.env_target import ENV_MANIFEST, EnvTarget, check_site, target_for, wheel_tag_fits  # noqa: E402
from deploy.errors import DeployError  # noqa: E402

DEFAULT_REQUIREMENTS = ROOT / "env" / "model-requirements.txt"
DEFAULT_CONSTRAINTS = ROOT / "env" / "requirements.lock"
DEFAULT_PACKAGES = ("serving", "monitoring")
LOCAL = "local"  # nvidia-pytriton 0.7.0's tritonserver 2.51.0, i.e. container 24.10, stubs for 3.8-3.13
LOCAL_STUBS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
EXCLUDED = ("__pycache__", ".pytest_cache")
VARIANTS = ("full", "no-torch")
# Left out by --variant no-torch: torch and the CUDA wheels it pulls (GBs); what remains is
# installed and checked for the target exactly as in the full env.
GPU_DISTRIBUTIONS = ("torch", "triton", "xformers")
GPU_PREFIXES = ("nvidia-", "cuda-")
# glibc of the OS a Triton release runs on, for releases outside deploy/images.py's table.
GLIBC_BY_PYTHON = {"3.8": "2.31", "3.10": "2.35", "3.12": "2.39"}


class EnvBuildError(RuntimeError):
    pass


# Python of the Triton container's stub, from the OS image it is built on (NVIDIA release
# notes "Contents of the Triton Inference Server container"):
#   20.10-20.11  Ubuntu 18.04, Python 3.6
#   20.12-23.04  Ubuntu 20.04, Python 3.8    (22.12 -> 3.8)
#   23.05-24.11  Ubuntu 22.04, Python 3.10   (23.05 switched: server#5895; SageMaker 23.12-24.09)
#   24.12-       Ubuntu 24.04, Python 3.12   (release notes 24.12; server#8357, python_backend#415)
# 24.11 is inferred (last release before the Ubuntu 24.04 switch documented for 24.12).
def triton_python(triton_version: str) -> str:
    """The Python major.minor of the stub in Triton container `triton_version` (e.g. "24.09")."""
    try:
        year, month = (int(x) for x in triton_version.split("."))
    except ValueError:
        raise EnvBuildError(f"TRITON_VERSION {triton_version!r} is not a container release like 24.09 "
                            f"(or {LOCAL!r} for the bundled tritonserver)") from None
    release = (year, month)
    if release < (20, 10):
        raise EnvBuildError(f"TRITON_VERSION {triton_version} predates Python-backend execution environments")
    if release < (20, 12):
        return "3.6"
    if release < (23, 5):
        return "3.8"
    if release < (24, 12):
        return "3.10"
    return "3.12"


def check_python(triton_version: str, python: str | None = None, *, custom_stub: bool = False) -> str:
    """Return the Python version to build for, or raise EnvBuildError if this interpreter can't."""
    have = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    if triton_version == LOCAL:
        if have not in LOCAL_STUBS:
            raise EnvBuildError(f"the bundled tritonserver 2.51 has stubs for Python {', '.join(LOCAL_STUBS)}; "
                                f"this interpreter is {have}")
        return have
    want = triton_python(triton_version)
    if have != want and not custom_stub:
        raise EnvBuildError(
            f"TRITON_VERSION {triton_version} runs Python {want}; this interpreter is {have} - build with "
            f"python{want} (e.g. `python{want} env/build_env.py ...`), pass --triton-version for the container "
            f"you deploy to, or --custom-stub if every model ships a triton_python_backend_stub built for {have}")
    return have


def cross_target(triton_version: str) -> EnvTarget:
    """The interpreter/platform of a container release: deploy/images.py's table, else the
    Ubuntu/Python rule above (NGC releases SageMaker does not publish)."""
    try:
        return target_for(triton_version)
    except DeployError:
        python = triton_python(triton_version)
        return EnvTarget(triton_version=triton_version, python=python, glibc=GLIBC_BY_PYTHON.get(python, "2.17"))


def _is_gpu_distribution(name: str) -> bool:
    key = name.lower().replace("_", "-")
    return key in GPU_DISTRIBUTIONS or key.startswith(GPU_PREFIXES)


def _target_args(target: EnvTarget) -> list[str]:
    args = ["--python-version", target.python, "--implementation", "cp", "--abi", target.abi,
            "--only-binary=:all:"]
    for platform in target.platforms:
        args += ["--platform", platform]
    return args


def resolve_for_target(target: EnvTarget, requirements: list[Path], constraints: Path | None,
                       pip_args: list[str], work: Path) -> list[dict]:
    """Resolve `requirements` for `target` without installing (pip's --dry-run --report).

    Returns [{"name", "version", "url"}] in pip's install order. Wheel metadata comes from the
    index (PEP 658), so even the GPU env resolves in seconds without downloading torch.
    """
    report = work / "resolution.json"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
           "--ignore-installed", "--report", str(report), "--target", str(work / "dry-run"), *_target_args(target)]
    cmd += _requirement_args(requirements, constraints)
    _run(cmd + pip_args)
    installs = json.loads(report.read_text())["install"]
    return [{"name": i["metadata"]["name"], "version": i["metadata"]["version"],
             "url": i["download_info"]["url"]} for i in installs]


def _requirement_args(requirements: list[Path], constraints: Path | None) -> list[str]:
    args = []
    for r in requirements:
        args += ["-r", str(r)] if Path(r).suffix in (".txt", ".lock", ".in") else [str(r)]
    if constraints is not None:
        args += ["-c", str(constraints)]
    return args


def check_resolution(resolved: list[dict], target: EnvTarget) -> None:
    """Every resolved file must be a wheel whose tags fit the target (no sdist builds)."""
    bad = []
    for r in resolved:
        filename = r["url"].rsplit("/", 1)[-1]
        if not filename.endswith(".whl"):
            bad.append(f"{r['name']} {r['version']}: {filename} is not a wheel")
            continue
        tag = "-".join(filename[:-4].split("-")[-3:])
        if not wheel_tag_fits(tag, target):
            bad.append(f"{r['name']} {r['version']}: {filename} does not fit {target.describe()}")
    if bad:
        raise EnvBuildError("resolution for the target has unusable files:\n  " + "\n  ".join(bad))


def resolution_summary(resolved: list[dict], pinned: list[dict]) -> dict:
    """What the manifest records about the resolved set: versions, and the torch/CUDA build."""
    versions = {r["name"].lower(): r["version"] for r in resolved}
    cuda = versions.get("nvidia-cuda-runtime") or versions.get("nvidia-cuda-runtime-cu12")
    return {"torch": versions.get("torch"), "cuda": ".".join(cuda.split(".")[:2]) if cuda else None,
            "distributions": {r["name"]: r["version"] for r in pinned},
            "left_out": sorted(r["name"] for r in resolved if r not in pinned)}


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, **kw)
    if proc.returncode != 0:
        raise EnvBuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}")


def _copy_package(src: Path, dest: Path) -> None:
    if not (src / "__init__.py").is_file():
        raise EnvBuildError(f"{src} is not a Python package")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*EXCLUDED, "*.pyc"))


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p and p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


ACTIVATE = """\
# Triton Python-backend execution environment (generated by env/build_env.py).
# Triton sources this before starting the stub; it must work from wherever the env is unpacked.
_PYENV_DIR="$(cd "$(dirname "${{BASH_SOURCE[0]:-$0}}")/.." && pwd)"
export VIRTUAL_ENV="$_PYENV_DIR"
export PATH="$_PYENV_DIR/bin${{PATH:+:$PATH}}"
export PYTHONPATH="$_PYENV_DIR/lib/python{py}/site-packages${{PYTHONPATH:+:$PYTHONPATH}}"
export LD_LIBRARY_PATH="$_PYENV_DIR/lib${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
unset PYTHONHOME
"""


def default_python_home(triton_version: str) -> str:
    """Directory of the interpreter the stub will run: this one locally, /usr/bin in NGC images."""
    if triton_version == LOCAL:
        return str(Path(getattr(sys, "_base_executable", sys.executable)).parent)
    return "/usr/bin"


def copy_installed(names: list[str], site: Path) -> None:
    """Copy installed distributions and their dependencies (RECORD files) from this interpreter into `site`.

    For offline builds and tests: reuse e.g. numpy from this venv instead of downloading it.
    """
    import importlib.metadata as md

    from packaging.requirements import Requirement

    todo, done = list(names), set()
    while todo:  # the installed dependency closure (extras and unmet markers skipped)
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in done:
            continue
        done.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise EnvBuildError(f"--from-installed {name}: not installed in {sys.prefix}") from None
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        base = Path(str(dist.locate_file("")))
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f)))
            rel = src.resolve().relative_to(base.resolve()) if str(src.resolve()).startswith(str(base.resolve())) else None
            if rel is None or rel.parts[0] in ("..", "bin") or src.suffix == ".pyc" or not src.is_file():
                continue
            dest = site / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


def build_pip_env(env_dir: Path, *, python: str, requirements: list[Path], constraints: Path | None,
                  packages: list[Path], pip_args: list[str], info: dict, python_home: str,
                  from_installed: list[str] = (), target: EnvTarget | None = None,
                  pinned: list[dict] | None = None) -> None:
    """Assemble the pip flavour in `env_dir` (created fresh).

    With `target` and `pinned` (from resolve_for_target), the exact resolved wheels are installed
    for the target (--no-deps, binary only) and checked; else pip installs for this interpreter.
    """
    if env_dir.exists():
        shutil.rmtree(env_dir)
    site = env_dir / "lib" / f"python{python}" / "site-packages"
    site.mkdir(parents=True)
    (env_dir / "bin").mkdir()
    # The venv shape that makes the stub's isolated interpreter pick up site-packages.
    (env_dir / "pyvenv.cfg").write_text(f"home = {python_home}\ninclude-system-site-packages = false\n"
                                        f"version = {python}\n")
    for link in ("python", "python3", f"python{python}"):
        os.symlink(f"{python_home}/python{python}", env_dir / "bin" / link)
    copy_installed(list(from_installed), site)
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(site)]
    if target is not None and pinned:
        _run(base + _target_args(target) + ["--no-deps"] + [f"{p['name']}=={p['version']}" for p in pinned]
             + pip_args)
    elif requirements:
        _run(base + _requirement_args(requirements, constraints) + pip_args)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with this machine's shebang
    if target is not None:
        problems = check_site(site, target)
        if problems:
            raise EnvBuildError(f"{len(problems)} file(s) do not fit {target.describe()}:\n  "
                                + "\n  ".join(problems[:20]))
    for pkg in packages:
        _copy_package(pkg, site / pkg.name)
    (site / "_python_env_info.py").write_text(
        '"""What this execution environment is (written by env/build_env.py)."""\n\n'
        f"BUILD_INFO = {pprint.pformat(info, indent=4)}\n")  # a Python literal: None, not null
    (env_dir / ENV_MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    activate = env_dir / "bin" / "activate"
    activate.write_text(ACTIVATE.format(py=python))
    activate.chmod(0o755)


def _env_files(env_dir: Path) -> list[Path]:
    """The files to pack, sorted, python_env.json first (`deploy check` reads it without
    unpacking gigabytes)."""
    manifest = env_dir / ENV_MANIFEST
    files = [manifest] if manifest.is_file() else []
    for dirpath, dirnames, filenames in os.walk(env_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED)
        files += [Path(dirpath) / n for n in sorted(filenames)
                  if not n.endswith(".pyc") and Path(dirpath) / n != manifest]
    return files


def pack(env_dir: Path, out: Path) -> None:
    """Deterministic tar.gz of `env_dir`'s contents (paths relative to it, as conda-pack makes them)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                   compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _env_files(env_dir):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(env_dir).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:  # symlinks inside shared-library trees
                tar.addfile(info)
    os.replace(partial, out)


def build_conda_env(env_dir: Path, out: Path, *, environment_yml: Path, packages: list[Path], python: str,
                    info: dict) -> None:
    """conda env create -p + project packages + conda-pack (untested on this machine: no conda)."""
    conda = shutil.which("conda") or shutil.which("mamba")
    if conda is None or shutil.which("conda-pack") is None:
        raise EnvBuildError("--method conda needs `conda` (or mamba) and `conda-pack` on PATH")
    if env_dir.exists():
        shutil.rmtree(env_dir)
    _run([conda, "env", "create", "--yes", "-p", str(env_dir), "-f", str(environment_yml)])
    site = env_dir / "lib" / f"python{python}" / "site-packages"
    if not site.is_dir():
        raise EnvBuildError(f"{environment_yml} did not create Python {python} ({site} missing); "
                            "its python= pin must match the target container")
    for pkg in packages:
        _copy_package(pkg, site / pkg.name)
    (site / "_python_env_info.py").write_text(f"BUILD_INFO = {pprint.pformat(info)}\n")
    (env_dir / ENV_MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")  # for `deploy check`
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(["conda-pack", "-p", str(env_dir), "-o", str(out), "--force", "--ignore-editable-packages"])


def yml_python(environment_yml: Path) -> str | None:
    for line in environment_yml.read_text().splitlines():
        s = line.strip().lstrip("- ").strip()
        if s.startswith("python=") or s.startswith("python=="):
            return s.split("=")[-1].strip()
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python env/build_env.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triton-version", default=os.environ.get("TRITON_VERSION") or images.DEFAULT_TRITON_VERSION,
                   help=f"target container release (default {images.DEFAULT_TRITON_VERSION}, the newest SageMaker "
                   f"Triton image) or {LOCAL!r} for the bundled tritonserver and this interpreter [TRITON_VERSION]")
    p.add_argument("--variant", choices=VARIANTS, default="full",
                   help="no-torch: install everything but torch and its CUDA wheels (CI's reduced build)")
    p.add_argument("--resolve-only", action="store_true",
                   help="resolve for the target and check every wheel's tags; write <out>.resolution.json, "
                   "install nothing")
    p.add_argument("--requirements", action="append", type=Path,
                   help=f"requirements file(s) or package paths (default {DEFAULT_REQUIREMENTS.relative_to(ROOT)})")
    p.add_argument("--constraints", type=Path, default=DEFAULT_CONSTRAINTS, help="pins (default: the lock)")
    p.add_argument("--no-constraints", action="store_true")
    p.add_argument("--no-pip", action="store_true", help="install no requirements (use with --from-installed)")
    p.add_argument("--package", action="append", type=Path,
                   help="project package directories to include (default: serving, monitoring)")
    p.add_argument("--no-package", action="store_true", help="no project packages (the model tarballs ship them)")
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "python_env.tar.gz")
    p.add_argument("--work-dir", type=Path, default=ROOT / "build" / "python_env")
    p.add_argument("--method", choices=("auto", "pip", "conda"), default="auto",
                   help="auto: conda where conda and conda-pack exist, else pip")
    p.add_argument("--environment-yml", type=Path, default=ROOT / "env" / "environment.yml")
    p.add_argument("--custom-stub", action="store_true",
                   help="skip the Python check: models ship their own triton_python_backend_stub")
    p.add_argument("--pip-arg", action="append", default=[], help="extra pip argument (repeatable)")
    p.add_argument("--python-home", help="where the target's interpreter lives (pyvenv.cfg home; bin/python3 "
                   "links there). Default: this interpreter's for 'local', /usr/bin for container releases")
    p.add_argument("--from-installed", action="append", default=[],
                   help="copy this installed distribution from the building interpreter (offline builds)")
    args = p.parse_args(argv)

    method = args.method
    if method == "auto":
        method = "conda" if shutil.which("conda") and shutil.which("conda-pack") else "pip"
    packages = [] if args.no_package else [Path(x).resolve() for x in (args.package or [ROOT / n for n in DEFAULT_PACKAGES])]
    requirements = [] if args.no_pip else [Path(r) for r in (args.requirements or [DEFAULT_REQUIREMENTS])]
    constraints = None if args.no_constraints else args.constraints
    started = time.monotonic()
    try:
        cross = method == "pip" and args.triton_version != LOCAL and not args.custom_stub
        target = cross_target(args.triton_version) if cross else None
        if target is not None:
            python = target.python
            if args.from_installed:
                raise EnvBuildError("--from-installed copies this interpreter's binaries: use it with "
                                    f"--triton-version {LOCAL} or --custom-stub")
        else:
            python = yml_python(args.environment_yml) if method == "conda" else None
            python = check_python(args.triton_version, python, custom_stub=args.custom_stub)
        info = {"python": python, "triton_version": args.triton_version, "method": method,
                "packages": [pkg.name for pkg in packages], "variant": args.variant, "platform": None,
                "requirements_sha256": _file_digest([*requirements, *(filter(None, [constraints]))])}
        pinned = None
        if target is not None:
            info.update(target.as_dict())
            resolved = resolve_for_target(target, requirements, constraints, args.pip_arg,
                                          args.work_dir.with_name(args.work_dir.name + "-resolve")) if requirements else []
            check_resolution(resolved, target)
            pinned = [r for r in resolved if args.variant == "full" or not _is_gpu_distribution(r["name"])]
            info.update(resolution_summary(resolved, pinned))
            if args.resolve_only:
                report = args.out.with_name(args.out.name.split(".")[0] + ".resolution.json")
                report.parent.mkdir(parents=True, exist_ok=True)
                report.write_text(json.dumps({**info, "wheels": resolved}, indent=2, sort_keys=True) + "\n")
                print(f"resolved {len(resolved)} wheels for {target.describe()} (torch {info['torch']}, "
                      f"CUDA {info['cuda']}): all fit; wrote {report} in {time.monotonic() - started:.0f} s")
                return 0
        if method == "conda":
            build_conda_env(args.work_dir, args.out, environment_yml=args.environment_yml, packages=packages,
                            python=python, info=info)
        else:
            build_pip_env(args.work_dir, python=python, requirements=requirements, constraints=constraints,
                          packages=packages, pip_args=args.pip_arg, info=info,
                          python_home=args.python_home or default_python_home(args.triton_version),
                          from_installed=args.from_installed, target=target, pinned=pinned)
            pack(args.work_dir, args.out)
    except (EnvBuildError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB, Python {python}, {method}) in "
          f"{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
