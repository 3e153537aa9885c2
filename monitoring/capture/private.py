"""Directories that hold captured records or code we run: created for this user only (0700),
and refused when someone else could have put files there.

The spool holds request data (prompts, images' statistics, embeddings) and the host-services
directory holds the code snapshots the sidecar and watchdog run (serving/runtime/host_services.py);
both default to paths under the shared /tmp. A directory another user created first (or one
anyone can write) would let that user read the records, plant segments the sidecar ingests, or
plant code our services import (docs/security.md).
"""

from __future__ import annotations

import os
import stat


def private_dir(path: str | os.PathLike[str]) -> str:
    """Create ``path`` (mode 0700) or check the existing one; returns it as a string.

    An existing directory must belong to this user or to root (an admin's /var/spool, or a
    volume mounted into a container that runs as root) and must not be writable by everyone
    unless sticky. Raises PermissionError naming the path, its owner and mode otherwise.
    """
    path = os.fspath(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to this user (uid {me}) or root: "
                              "refusing to keep records or run code from there")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise PermissionError(f"{path} is writable by every user (mode {stat.S_IMODE(st.st_mode):o}): "
                              "refusing to keep records or run code from there")
    return path
