"""Monitoring yields the CPU to inference: background threads and the sidecar run at lower priority.

On a small host, the model's intra-op threads use every core; a capture thread competing at
equal priority stretches each forward pass (one late thread holds up the whole parallel op).
"""

from __future__ import annotations

import os
import threading

#: Niceness added to capture threads and the sidecar (0 disables: CAPTURE_NICENESS=0).
DEFAULT_NICENESS = 10


def niceness() -> int:
    try:
        return int(os.environ.get("CAPTURE_NICENESS", DEFAULT_NICENESS))
    except ValueError:
        return DEFAULT_NICENESS


def lower_current_thread_priority() -> bool:
    """Renice the calling thread (Linux: a thread id is a valid PRIO_PROCESS target)."""
    inc = niceness()
    if inc <= 0 or not hasattr(os, "setpriority"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + inc))
        return True
    except OSError:
        return False


def lower_process_priority() -> None:
    """For `preexec_fn` of a monitoring subprocess (the sidecar)."""
    inc = niceness()
    if inc > 0:
        try:
            os.nice(inc)
        except OSError:
            pass
