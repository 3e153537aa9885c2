"""Build one deterministic `<model>.tar.gz` per model plus `manifest.json` (`make package`).

Each tarball has the layout SageMaker's Triton container loads from a ModelDataUrl prefix:

    <model>/config.pbtxt
    <model>/1/model.py
    <model>/1/checkpoint/...
    <model>/env/python_env.tar.gz      (only with --env-tarball)
    <model>/serving/...                (the project code model.py imports; --code-package)

Same inputs give the same bytes: entries sorted, mtime fixed (SOURCE_DATE_EPOCH or 0),
owner 0/0 with empty names, modes normalized to 0644/0755, gzip header with mtime 0 and no
file name. That makes the sha256 a content identity, so `upload` can skip unchanged models.
(Bytes are identical for the same zlib build; a different zlib may compress differently.)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from deploy import images
from deploy.errors import DeployError
from deploy.pbtxt import get_execution_env_path, set_execution_env_path, with_instance_count
from serving.runtime.checkpoints import provenance

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
REQUIRED_FILES = ("config.pbtxt", "1/model.py")
CHECKPOINT_DIR = "1/checkpoint"
# Where --env-tarball puts the env inside each model, and the config value that finds it on
# any instance: Triton substitutes the directory the model was loaded from.
ENV_MEMBER = "env/python_env.tar.gz"
ENV_PARAM_VALUE = "$$TRITON_MODEL_DIRECTORY/" + ENV_MEMBER
EXCLUDED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".git"})
EXCLUDED_FILES = frozenset({".DS_Store", ".done"})  # .done: the Makefile's `make weights` stamp
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class _Entry:
    arcname: str  # path inside the tarball, "<model>/..."
    source: Path | None  # file on disk, or None for a directory / in-memory file
    data: bytes | None = None  # in-memory content (the rewritten config.pbtxt)
    executable: bool = False


def source_date_epoch() -> int:
    """The fixed mtime for tar entries: $SOURCE_DATE_EPOCH (reproducible-builds convention) or 0."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(raw)
    except ValueError:
        raise DeployError(f"SOURCE_DATE_EPOCH must be an integer, got {raw!r}") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def discover_models(repo: str | os.PathLike[str]) -> list[str]:
    """Model names in a repository: sub-directories holding a config.pbtxt, sorted."""
    root = Path(repo)
    if not root.is_dir():
        raise DeployError(f"model repository {root} does not exist")
    return sorted(p.parent.name for p in root.glob("*/config.pbtxt"))


def _excluded(name: str) -> bool:
    return name in EXCLUDED_FILES or name.endswith(EXCLUDED_SUFFIXES)


def collect_model_files(model_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(path relative to the model dir, file on disk) for every file to ship, sorted.

    Symlinked files are shipped as regular files (weights caches often symlink into a blob
    store); symlinked directories are refused because following them could loop or pull in
    unrelated trees.
    """
    root = Path(model_dir)
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in list(dirnames):
            if d in EXCLUDED_DIRS:
                dirnames.remove(d)
            elif (here / d).is_symlink():
                raise DeployError(f"{here / d} is a symlinked directory; copy it into the repository instead")
        for name in filenames:
            path = here / name
            if _excluded(name):
                continue
            if not path.is_file():  # dangling symlink, socket, fifo...
                raise DeployError(f"{path} is not a regular file (dangling link or special file)")
            files.append((path.relative_to(root).as_posix(), path))
    return sorted(files)


def _code_files(model: str, model_files: list[tuple[str, Path]],
                code_packages: Iterable[Path]) -> list[tuple[str, Path]]:
    """Files of each code package as `<package name>/...` inside the model directory."""
    out: list[tuple[str, Path]] = []
    for pkg in code_packages:
        if not (pkg / "__init__.py").is_file():
            raise DeployError(f"code package {pkg} is not a Python package (no __init__.py)")
        if any(rel.split("/")[0] == pkg.name for rel, _ in model_files):
            raise DeployError(f"model {model!r} already has a {pkg.name!r} entry; cannot add code package {pkg}")
        out.extend((f"{pkg.name}/{rel}", path) for rel, path in collect_model_files(pkg))
    return out


def _entries(model: str, files: list[tuple[str, Path]], config_text: str | None,
             env_tarball: Path | None) -> list[_Entry]:
    entries: dict[str, _Entry] = {model: _Entry(model, None)}
    items: list[tuple[str, Path | None, bytes | None]] = []
    for rel, path in files:
        if rel == "config.pbtxt" and config_text is not None:
            items.append((rel, None, config_text.encode()))
        else:
            items.append((rel, path, None))
    if env_tarball is not None:
        if any(rel == ENV_MEMBER or rel.startswith("env/") for rel, _ in files):
            raise DeployError(f"{model}/env/ already exists; remove it or drop --env-tarball")
        items.append((ENV_MEMBER, env_tarball, None))
    for rel, path, data in items:
        parts = rel.split("/")
        for i in range(1, len(parts)):  # parent directories get their own entries
            d = f"{model}/{'/'.join(parts[:i])}"
            entries.setdefault(d, _Entry(d, None))
        executable = path is not None and bool(path.stat().st_mode & 0o111)
        entries[f"{model}/{rel}"] = _Entry(f"{model}/{rel}", path, data, executable)
    return [entries[k] for k in sorted(entries)]


class _HashingReader:
    """Feeds tarfile while hashing, so each file is read once even when it is gigabytes."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self.digest.update(chunk)
        return chunk


def _write_tarball(entries: Iterable[_Entry], out_path: Path, mtime: int, compresslevel: int) -> list[dict]:
    files: list[dict] = []
    partial = out_path.with_name(out_path.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
    ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.arcname)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.source is None and entry.data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            info.mode = 0o755 if entry.executable else 0o644
            if entry.data is not None:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
                digest = hashlib.sha256(entry.data).hexdigest()
            else:
                assert entry.source is not None
                info.size = entry.source.stat().st_size
                with open(entry.source, "rb") as fh:
                    reader = _HashingReader(fh)
                    tar.addfile(info, reader)  # type: ignore[arg-type]
                digest = reader.digest.hexdigest()
            files.append({"path": entry.arcname, "size": info.size, "sha256": digest})
    os.replace(partial, out_path)
    return files


def build_model_tarball(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    env_tarball: str | os.PathLike[str] | None = None,
    execution_env_path: str | None = None,
    code_packages: Iterable[str | os.PathLike[str]] = (),
    mtime: int = 0,
    compresslevel: int = 6,
    require_checkpoint: bool = True,
    triton_name: str | None = None,
    instances: int | None = None,
) -> dict:
    """Write `<model>.tar.gz` for one model directory; return its manifest entry.

    `instances`: the packaged config runs that many instances per model instead of what the
    source config says (serving/launch/instances.py: one, for a host that cannot hold two copies).

    `triton_name` (versioned packages): the tarball's top folder and the config's `name:`
    become this instead of the model directory's name, so two versions of one model can be
    loaded side by side (Triton needs folder == config name; the runtime is chosen by model.py).

    `env_tarball` is shipped as `<model>/env/python_env.tar.gz` and the packaged config's
    EXECUTION_ENV_PATH is pointed at it; `execution_env_path` instead sets that parameter to
    a given value (e.g. an env baked into the serving image). The source config is not touched.
    Each of `code_packages` (a Python package directory, e.g. `serving/`) is shipped as
    `<model>/<package>/`: the Python backend puts the model directory on sys.path, and Triton
    ignores non-numeric sub-directories when looking for versions.
    """
    model_path = Path(model_dir)
    model = model_path.name
    if env_tarball is not None and execution_env_path is not None:
        raise DeployError("give either an env tarball to embed or an EXECUTION_ENV_PATH value, not both")
    for required in REQUIRED_FILES:
        if not (model_path / required).is_file():
            raise DeployError(f"model {model!r}: required file {model_path / required} is missing")
    if require_checkpoint and not (model_path / CHECKPOINT_DIR).is_dir():
        raise DeployError(
            f"model {model!r}: {model_path / CHECKPOINT_DIR} is missing; run `make weights` first "
            "(or pass --allow-missing-checkpoint)"
        )
    env_path = Path(env_tarball) if env_tarball is not None else None
    if env_path is not None and not env_path.is_file():
        raise DeployError(f"env tarball {env_path} does not exist")

    original = (model_path / "config.pbtxt").read_text(encoding="utf-8")
    wanted = ENV_PARAM_VALUE if env_path is not None else execution_env_path
    config_text = set_execution_env_path(original, wanted) if wanted is not None else None
    top = triton_name or model
    if top != model:
        config_text = set_config_name(config_text if config_text is not None else original, top)
    if instances is not None:
        try:
            config_text = with_instance_count(config_text if config_text is not None else original, instances)
        except ValueError as exc:
            raise DeployError(f"model {model!r}: {exc}") from None
    try:
        weights = provenance.read(model_path / CHECKPOINT_DIR)
    except ValueError as exc:
        raise DeployError(f"model {model!r}: {exc}") from None

    packages = [Path(p) for p in code_packages]
    model_files = collect_model_files(model_path)
    files = model_files + _code_files(model, model_files, packages)
    entries = _entries(top, files, config_text, env_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = _write_tarball(entries, out, mtime, compresslevel)
    return {
        "tarball": out.name,
        "sha256": sha256_file(out),
        "size": out.stat().st_size,
        "execution_env_path": get_execution_env_path(config_text if config_text is not None else original),
        "code_packages": [p.name for p in packages],
        "files": written,
        "triton_name": top,
        "weights": weights,  # provenance.json, or None: `deploy check` refuses unknown origin
    }


_CONFIG_NAME = re.compile(r'^(name\s*:\s*)"[^"]*"', re.MULTILINE)  # top level: not indented


def set_config_name(config_text: str, name: str) -> str:
    """config.pbtxt with its top-level `name:` set to `name` (added when absent)."""
    if _CONFIG_NAME.search(config_text):
        return _CONFIG_NAME.sub(lambda m: f'{m.group(1)}"{name}"', config_text, count=1)
    return f'name: "{name}"\n{config_text}'


def env_version_from_tarball(path: str | os.PathLike[str]) -> str:
    """A version label from an env tarball's file name: `sd_env-1.2.tar.gz` -> `sd_env-1.2`."""
    name = Path(path).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def package_repository(
    repo: str | os.PathLike[str],
    dist: str | os.PathLike[str],
    *,
    models: Iterable[str] | None = None,
    env_tarball: str | os.PathLike[str] | None = None,
    env_version: str | None = None,
    execution_env_path: str | None = None,
    code_packages: Iterable[str | os.PathLike[str]] = (),
    triton_version: str = images.DEFAULT_TRITON_VERSION,
    mtime: int | None = None,
    compresslevel: int = 6,
    require_checkpoint: bool = True,
    versioned: bool = False,
    instances: int | None = None,
) -> dict:
    """Package every (or the named) model of `repo` into `dist/`; write and return the manifest.

    versioned: name each tarball `<model>-<version>.tar.gz` (top folder and Triton name
    `<model>-<version>`), version = the first 12 hex digits of a digest over everything the
    tarball ships; a changed model is then a new TargetModel (AWS: never overwrite one in place).
    """
    release = images.release(triton_version)
    available = discover_models(repo)
    selected = sorted(set(models)) if models else available
    missing = [m for m in selected if m not in available]
    if missing:
        raise DeployError(f"no model directory with a config.pbtxt for {', '.join(missing)} in {repo}")
    if not selected:
        raise DeployError(f"no models (directories with a config.pbtxt) found in {repo}")
    if mtime is None:
        mtime = source_date_epoch()
    env_info = None
    if env_tarball is not None:
        env_info = {
            "tarball": Path(env_tarball).name,
            "sha256": sha256_file(env_tarball) if Path(env_tarball).is_file() else None,
            "version": env_version or env_version_from_tarball(env_tarball),
        }
    elif env_version is not None:
        env_info = {"tarball": None, "sha256": None, "version": env_version}
    triton = {"container": release.container, "server": release.server, "python": release.python}

    code_packages = list(code_packages)
    dist_path = Path(dist)
    dist_path.mkdir(parents=True, exist_ok=True)
    entries = {}
    for model in selected:
        version = content_version(Path(repo) / model, code_packages, env_tarball, execution_env_path,
                                  instances) if versioned else None
        name = f"{model}-{version}" if version else model
        entry = build_model_tarball(
            Path(repo) / model,
            dist_path / f"{name}.tar.gz",
            env_tarball=env_tarball,
            execution_env_path=execution_env_path,
            code_packages=code_packages,
            mtime=mtime,
            compresslevel=compresslevel,
            require_checkpoint=require_checkpoint,
            triton_name=name,
            instances=instances,
        )
        entry["version"] = version
        entry["env_version"] = env_info["version"] if env_info else None
        entry["triton"] = triton
        entries[model] = entry
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "source_date_epoch": mtime,
        "triton": triton,
        "env": env_info,
        "models": entries,
    }
    write_manifest(dist_path / MANIFEST_NAME, manifest)
    return manifest


VERSION_DIGITS = 12


def content_version(model_dir: Path, code_packages: Iterable[str | os.PathLike[str]] = (),
                    env_tarball: str | os.PathLike[str] | None = None,
                    execution_env_path: str | None = None, instances: int | None = None) -> str:
    """A version label from the content a model's tarball ships (files, code packages, env).

    Independent of the tarball's own name and bytes (which contain the version), so the same
    inputs give the same version on any machine.
    """
    digest = hashlib.sha256()
    files = collect_model_files(model_dir)
    files += _code_files(model_dir.name, files, [Path(p) for p in code_packages])
    for rel, path in files:
        digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
    if env_tarball is not None:
        digest.update(f"env\0{sha256_file(env_tarball)}\n".encode())
    if execution_env_path is not None:
        digest.update(f"execution_env_path\0{execution_env_path}\n".encode())
    if instances is not None:
        digest.update(f"instances\0{instances}\n".encode())
    return digest.hexdigest()[:VERSION_DIGITS]


def write_manifest(path: Path, manifest: dict) -> None:
    # Sorted keys and no timestamps: the manifest is as reproducible as the tarballs.
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
