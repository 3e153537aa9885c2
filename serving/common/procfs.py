"""Reading Linux ``/proc``: the one place that parses it (proc(5)).

The watchdog, the sidecar, the MME front, the rehearsal and the benchmarks all look at other
processes (are they alive, who are their children, what do they map, how much memory); each
used to parse ``/proc`` its own way. Every reader here returns None (or an empty result) for a
process that is gone or unreadable instead of raising: a process can exit between two reads.

Stdlib only, so every layer may import it (tests/test_layers.py puts it with the contract).
"""

from __future__ import annotations

import os

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pids() -> list[int]:
    """Every process id visible in /proc."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name: ``[0]`` is proc(5)'s field 3
    (state), ``[1]`` field 4 (ppid), ``[n]`` field ``n + 3``. The name is skipped by its last
    ``)``, since it may itself contain spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:].split()
    except (OSError, ValueError):
        return None


def state(pid: int) -> str | None:
    """The one-letter state (``R``, ``S``, ``Z`` for a zombie, ...); None: no such process."""
    fields = stat_fields(pid)
    return fields[0].decode() if fields else None


def parent_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    try:
        return int(fields[1]) if fields else None
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[bytes] | None:
    """argv as the process has it now (a zombie's is empty: ``[b""]``); None: unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return None


def children() -> dict[int, list[int]]:
    """parent pid -> its children's pids, for every process visible now."""
    out: dict[int, list[int]] = {}
    for pid in pids():
        ppid = parent_of(pid)
        if ppid is not None:
            out.setdefault(ppid, []).append(pid)
    return out


def descendants(root_pid: int) -> list[int]:
    """``root_pid`` and every process below it."""
    kids = children()
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (``/proc/<pid>/statm``)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far."""
    fields = stat_fields(pid)
    try:
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else None
    except (IndexError, ValueError):
        return None


def mapped_paths(pid: int) -> list[str] | None:
    """The file paths in ``/proc/<pid>/maps`` (one per mapping that has one)."""
    try:
        with open(f"/proc/{pid}/maps") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    return [parts[5] for parts in (line.split(maxsplit=5) for line in lines) if len(parts) == 6]


def environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with ({} when unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


# -- the machine -------------------------------------------------------------------------------
def cpu_model() -> str | None:
    """The first ``model name`` of ``/proc/cpuinfo`` (None: not there, e.g. some ARM kernels)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def mem_total_bytes() -> int | None:
    """``MemTotal`` of ``/proc/meminfo``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
