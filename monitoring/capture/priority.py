"""Monitoring yields the CPU to inference: the sidecar process runs at lower priority; the
capture thread inside a model process does not, by default.

The sidecar is a process of its own: at niceness 19 (``CAPTURE_NICENESS``: +19 capped at 19,
applied by the sidecar itself at start, its ``--niceness``, so every way of starting it gets it) it
takes the cores when inference leaves them, and its lag only grows the spool. Under contention
it still gets ~1.5 % of a core (~15 ms a second), three times the ~5 ms a second that 20
records a second cost it (bench/results/capture-profile-2026-12-04.md), and its ~10 ms of work
per segment is spread thinner over the requests it overlaps than at +10 (the run before,
capture-resnet50-2026-12-04-e.md, had p99 at 1.078 / 1.047; the run with 19 and per-record
encoding on arrival, -f, 1.035 / 0.977: two changes in one run, so not attributed to either).
Until 2026-12-04 only the benchmark and the demo reniced it (from the parent, at spawn): the
sidecar that the model processes and the docker entrypoint start, the one production runs, kept
niceness 0. The tests run it at 0 (CAPTURE_NICENESS=0 in tests/conftest.py, docs/testing.md).

Niceness alone did not make it yield where it mattered (found 2026-12-05). On a Linux host with
autogroups (``kernel.sched_autogroup_enabled=1``, processes in the root CPU cgroup: most VMs and
bare hosts; not a container's processes) the scheduler shares the cores between *sessions* at
equal weight first, and by niceness only within a session. The model processes start the sidecar
in a session of its own (serving/runtime/host_services.py), so at niceness 19 it still competed with
tritonserver's session as an equal: a busy nice-19 process there left a two-thread workload 0.52
of its rate, 0.98 in the workload's own session, 0.95 in its own session with the session's
autogroup at nice 19 (bench/results/nice-autogroup-2026-12-05.md). So the sidecar, when it leads
its own session, also renices its autogroup (:func:`renice_autogroup`; the group is then its
own). Started in a session it shares (the docker entrypoint's, a terminal's) it leaves the group
alone: the group's other processes would slow with it.

The capture worker thread shares the model process' GIL with the request thread. Reniced, it
was descheduled while holding the GIL behind the model's own (spinning) intra-op threads, and
the request thread then waited for a thread that could not run: at concurrency 1 the capture
cost was 1.033 (p50), 1.140 (p99) and 1.034 (throughput) at +10
(bench/results/capture-resnet50-2026-12-04-c.md) and 0.993, 1.014, 0.993 at 0
(capture-resnet50-2026-12-04-d.md), same code, interleaved runs on a quiet host.
``CAPTURE_THREAD_NICENESS`` sets it (e.g. a host whose cores the model does not fill).
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

#: Niceness the sidecar adds to itself at start (its ``--niceness``; CAPTURE_NICENESS=0 disables).
DEFAULT_NICENESS = 19
#: The kernel's scheduling group of this process's session (absent without CONFIG_SCHED_AUTOGROUP;
#: empty for a process in no autogroup of its own, see :func:`autogroup_nice`).
AUTOGROUP_PATH = "/proc/self/autogroup"
#: Niceness added to capture threads in a model process (CAPTURE_THREAD_NICENESS).
DEFAULT_THREAD_NICENESS = 0


def _env_int(name: str, default: int) -> int:
    """``$name`` as an integer, ``default`` when unset or empty; ValueError naming it otherwise.
    (The sidecar's CAPTURE_NICENESS is its ``--niceness`` default, checked by its command line.)"""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer niceness increment (0 leaves the priority; "
                         f"default {default})") from None


def thread_niceness() -> int:
    """The capture threads' increment (CAPTURE_THREAD_NICENESS). Read on the capture worker, which
    must never stop over it: a bad value is logged, and the default is used."""
    try:
        return _env_int("CAPTURE_THREAD_NICENESS", DEFAULT_THREAD_NICENESS)
    except ValueError as exc:
        log.warning("%s; using %d", exc, DEFAULT_THREAD_NICENESS)
        return DEFAULT_THREAD_NICENESS


def lower_current_thread_priority() -> bool:
    """Renice the calling thread by `thread_niceness()` (Linux: a thread id is a valid
    PRIO_PROCESS target); False when that is 0 or not allowed."""
    inc = thread_niceness()
    if inc <= 0 or not hasattr(os, "setpriority"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + inc))
        return True
    except OSError:
        return False


def renice_process(inc: int) -> int | None:
    """Add ``inc`` (> 0) to the niceness of every thread this process has, capped at 19; threads
    it starts later inherit their creator's. Nothing when ``inc`` is 0 or less; a host that
    forbids it leaves the process as it was. Then :func:`renice_autogroup`, whose result it returns.

    Linux niceness is per thread (``os.nice`` changes only the caller's), so a process that
    already runs threads (an import's pool) renices each one, as listed in ``/proc/self/task``."""
    if inc <= 0 or not hasattr(os, "setpriority"):
        return None
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [threading.get_native_id()]
    try:
        for tid in tids:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + inc))
    except OSError:  # a thread that has just ended, or a host that forbids it: keep running
        pass
    return renice_autogroup(inc)


def autogroup_nice(path: str = AUTOGROUP_PATH) -> int | None:
    """The nice value of the autogroup that ``path`` (a ``/proc/<pid>/autogroup``) describes; None
    when the process is in none of its own. The kernel prints "/autogroup-1815 nice 0" for a
    session's group and nothing for the boot-time default group (the root task group: a process
    whose ancestors never started a session, as on some CI runners, found 2026-12-06) or for a
    process in a CPU cgroup other than the root. Raises OSError when the file cannot be read."""
    with open(path) as f:
        fields = f.read().split()
    return int(fields[-1]) if fields else None


def renice_autogroup(inc: int, path: str = AUTOGROUP_PATH) -> int | None:
    """Add ``inc`` (> 0) to the nice value of this process's autogroup, capped at 19, when the
    process leads its own session (the group is then its own: a session's processes share one);
    returns the group's new nice value, None when it was left alone (not a session leader, no
    autogroups on this kernel, or the write refused)."""
    if inc <= 0 or not hasattr(os, "getsid") or os.getsid(0) != os.getpid():
        return None
    try:
        current = autogroup_nice(path)
        if current is None:  # the root task group: the kernel refuses its nice value anyway
            return None
        new = min(19, current + inc)
        with open(path, "w") as f:
            f.write(str(new))
        return new
    except (OSError, ValueError):
        return None
