"""Extract a model tarball so that nothing in it can write outside its destination.

Model tarballs come from S3, i.e. from whoever can write to the bucket, so they are untrusted
input for the local endpoint and for `check`. Every member is validated *before* anything is
written; extraction then goes into a fresh staging directory beside `dest` and is renamed into
place, so a failure never leaves a half-extracted model where a loader could pick it up.
tarfile's "data" filter runs as a second line of defence.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

# A Stable Diffusion checkpoint plus an execution env is ~10 GB; 64 GiB leaves room while
# still stopping a header that claims terabytes before any byte is written.
DEFAULT_MAX_TOTAL_BYTES = 64 * 1024**3
DEFAULT_MAX_MEMBERS = 200_000
# Bound on symlink hops when resolving link targets (the kernel's own limit is 40).
_MAX_LINK_HOPS = 40


class TarballError(ValueError):
    """The tarball is unsafe or unreadable. `member` names the offending entry (None: whole file)."""

    def __init__(self, member: str | None, reason: str) -> None:
        self.member = member
        self.reason = reason
        where = f"member {member!r}" if member is not None else "tarball"
        super().__init__(f"unsafe or invalid {where}: {reason}")


def normalized_name(name: str) -> str:
    """Return `name` relative to the archive root ("" for the root itself), or raise TarballError.

    Refuses absolute paths and any `..` component; `./` prefixes and doubled slashes are
    harmless and normalized away so callers compare canonical paths.
    """
    if name == "":
        raise TarballError(name, "empty member name")
    if "\x00" in name:
        raise TarballError(name, "NUL byte in member name")
    if name.startswith(("/", "\\")) or (len(name) >= 2 and name[1] == ":"):
        raise TarballError(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TarballError(name, "path escapes the destination with '..'")
    return "/".join(parts)


def _link_resolves_inside(link: str, target: str, symlinks: dict[str, str]) -> bool:
    """Resolve symlink `link` -> `target` like the kernel would, over the archive's own links.

    A purely lexical check is not enough: with `b -> .` and `c -> b/../x`, `c` looks like it
    stays inside but really resolves to the destination's parent. So link components are
    expanded as they are met, and `..` above the root means escape.
    """
    current = link.split("/")[:-1]  # the directory holding the link
    pending = target.split("/")
    hops = 0
    while pending:
        comp = pending.pop(0)
        if comp in ("", "."):
            continue
        if comp == "..":
            if not current:
                return False
            current.pop()
            continue
        current.append(comp)
        key = "/".join(current)
        if key in symlinks:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return False
            nested = symlinks[key]
            if nested.startswith("/"):
                return False
            current.pop()
            pending = nested.split("/") + pending
    return True


def _member_kind(info: tarfile.TarInfo) -> str:
    if info.ischr():
        return "character device"
    if info.isblk():
        return "block device"
    if info.isfifo():
        return "fifo"
    if info.issparse():
        return "sparse file"
    return f"type {info.type!r}"


def validate_members(
    tar: tarfile.TarFile,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    allow_links: bool = False,
) -> list[tarfile.TarInfo]:
    """Check every member of an open tarball; return the members to extract (root entries dropped).

    Limits are checked while iterating, so a bomb is stopped at its first oversized header
    rather than after decompressing everything.
    """
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    implicit_dirs: set[str] = set()  # every proper prefix of a member path
    regular_files: set[str] = set()
    symlinks: dict[str, str] = {}
    total = 0
    count = 0
    try:
        for info in tar:
            count += 1
            if count > max_members:
                raise TarballError(info.name, f"archive has more than {max_members} members")
            rel = normalized_name(info.name)
            if rel == "":
                if info.isdir():
                    continue  # "./" entry: the destination itself
                raise TarballError(info.name, "non-directory entry names the archive root")
            if info.issparse() or not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
                raise TarballError(info.name, f"{_member_kind(info)} members are not allowed")
            if rel in seen:
                raise TarballError(info.name, "duplicate member (a later entry would overwrite an earlier one)")
            parts = rel.split("/")
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                if prefix in symlinks or prefix in regular_files:
                    raise TarballError(info.name, f"path goes through link or file member {prefix!r}")
            if info.issym() or info.islnk():
                kind = "symbolic link" if info.issym() else "hard link"
                if not allow_links:
                    raise TarballError(info.name, f"{kind} (to {info.linkname!r}) is not allowed")
                if rel in implicit_dirs:
                    raise TarballError(info.name, f"{kind} replaces a directory used by earlier members")
                if info.linkname.startswith("/"):
                    raise TarballError(info.name, f"{kind} target {info.linkname!r} is absolute")
                if info.issym():
                    symlinks[rel] = info.linkname
                else:
                    try:
                        target = normalized_name(info.linkname)
                    except TarballError as exc:
                        raise TarballError(info.name, f"hard link target {info.linkname!r}: {exc.reason}") from None
                    if target not in regular_files:
                        raise TarballError(
                            info.name, f"hard link target {info.linkname!r} is not an earlier regular file"
                        )
            if info.isfile():
                total += info.size
                if total > max_total_bytes:
                    raise TarballError(
                        info.name,
                        f"total size {total} bytes exceeds the limit of {max_total_bytes} bytes",
                    )
                regular_files.add(rel)
            seen.add(rel)
            implicit_dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            members.append(info)
    except tarfile.TarError as exc:
        raise TarballError(None, f"not a readable tar archive: {exc}") from None
    except (EOFError, OSError) as exc:  # truncated or corrupt gzip stream
        raise TarballError(None, f"not a readable tar archive: {exc}") from None
    # Links are checked once the whole link map is known: a later link can change where an
    # earlier link's target really points.
    for rel, target in symlinks.items():
        if not _link_resolves_inside(rel, target, symlinks):
            raise TarballError(rel, f"symbolic link target {target!r} resolves outside the destination")
    return members


def safe_extract(
    tar_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    allow_links: bool = False,
) -> list[str]:
    """Extract `tar_path` into `dest` (which must be absent or empty); return the extracted paths.

    Raises TarballError naming the member and the reason if any member is unsafe: absolute or
    `..` paths, links (unless `allow_links`, and then only links resolving inside `dest`),
    devices/fifos, more than `max_members` entries or more than `max_total_bytes` in files.
    Nothing is written outside `dest`'s parent, and `dest` only appears once extraction succeeded.
    """
    dest_path = Path(dest)
    if dest_path.exists() and (not dest_path.is_dir() or any(dest_path.iterdir())):
        raise FileExistsError(f"destination {dest_path} exists and is not an empty directory")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(tar_path, "r:*")
    except tarfile.TarError as exc:
        raise TarballError(None, f"not a readable tar archive: {exc}") from None
    with tar:
        members = validate_members(
            tar, max_total_bytes=max_total_bytes, max_members=max_members, allow_links=allow_links
        )
        staging = Path(tempfile.mkdtemp(prefix=f".{dest_path.name}.extract-", dir=dest_path.parent))
        try:
            try:
                tar.extractall(staging, members=members, filter="data")
            except tarfile.FilterError as exc:
                raise TarballError(exc.tarinfo.name, f"rejected by tarfile's data filter: {exc}") from None
            if dest_path.exists():
                dest_path.rmdir()  # checked empty above
            os.rename(staging, dest_path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return [normalized_name(m.name) for m in members]
