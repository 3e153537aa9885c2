"""The sidecar's command line as others start it: the ``argv`` the model processes
(serving/runtime/host_services.py) and the demo run, its lock-file name and default metrics port.

Its flags are parsed by :mod:`monitoring.ingest.sidecar.cli`, its one parser
(tests/monitoring/capture/test_sidecar_command.py parses every ``argv`` built here with it).
Stdlib only, so that the runtime may import it (tests/test_layers.py puts it with the
contract): a model process must not load the sidecar's pyarrow/boto3 code to start it.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

#: The file in the spool directory whose exclusive ``flock`` the running sidecar holds.
LOCK_NAME = ".sidecar.lock"
DEFAULT_METRICS_PORT = 8090

#: Optional settings -> the flag they become (only when set).
SETTING_FLAGS = (
    ("CAPTURE_S3_ENDPOINT_URL", "--s3-endpoint-url"),
    ("CAPTURE_DATACAPTURE_DIR", "--datacapture-dir"),
    ("CAPTURE_DRAIN_TIMEOUT_S", "--drain-timeout"),
    ("CAPTURE_COMPACT_EVERY_S", "--compact-every"),
    ("CAPTURE_SIDECAR_RETRY_MAX_S", "--retry-max"),
    ("CAPTURE_RETAIN_DAYS", "--retain-days"),
    ("CAPTURE_NICENESS", "--niceness"),
)


class Settings(Protocol):
    """``serving.runtime.host_services.HostSettings`` or a plain dict of ``CAPTURE_*`` settings."""

    def get(self, key: str, default: str = ...) -> str | None: ...


def lock_path(spool: str | os.PathLike[str]) -> str:
    """The running sidecar's lock file for ``spool``."""
    return os.path.join(os.path.abspath(spool), LOCK_NAME)


def argv(settings: Settings, *, python: str = sys.executable, exit_with_pid: int = 0) -> list[str]:
    """``python -m monitoring.ingest.sidecar ...`` for ``CAPTURE_SPOOL_DIR`` -> ``CAPTURE_STORE``
    (both required) and the optional settings of :data:`SETTING_FLAGS`. ``exit_with_pid`` > 0:
    the sidecar drains and exits once that process (the tritonserver) is gone.

    Raises ValueError for a missing spool/store, or a metrics port or niceness that is not an integer, so a
    bad setting fails where it is read (model load), not in a detached process's log."""
    spool, store = settings.get("CAPTURE_SPOOL_DIR"), settings.get("CAPTURE_STORE")
    if not spool or not store:
        raise ValueError(f"the sidecar needs CAPTURE_SPOOL_DIR and CAPTURE_STORE, got {spool!r} and {store!r}")
    port = settings.get("CAPTURE_SIDECAR_METRICS_PORT") or str(DEFAULT_METRICS_PORT)
    try:
        int(port)
    except ValueError:
        raise ValueError(f"CAPTURE_SIDECAR_METRICS_PORT: {port!r} is not an integer port") from None
    nice = settings.get("CAPTURE_NICENESS")
    if nice:
        try:
            int(nice)
        except ValueError:
            raise ValueError(f"CAPTURE_NICENESS: {nice!r} is not an integer (0 leaves the sidecar's priority, "
                             "19 is the lowest)") from None
    out = [python, "-m", "monitoring.ingest.sidecar", "--spool", os.path.abspath(spool), "--store", store,
           "--metrics-port", port, "--metrics-addr", settings.get("CAPTURE_SIDECAR_METRICS_ADDR") or "127.0.0.1"]
    if exit_with_pid > 0:
        out += ["--exit-with-pid", str(exit_with_pid)]
    for key, flag in SETTING_FLAGS:
        if settings.get(key):
            out += [flag, str(settings.get(key))]
    return out
