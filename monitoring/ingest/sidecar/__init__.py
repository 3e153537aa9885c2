"""The per-host capture sidecar (``python -m monitoring sidecar``): spool -> Parquet store.

How others start it (its command line, lock-file name, metrics port) is the contract module
:mod:`monitoring.capture.sidecar_command`, stdlib only, imported by the model processes; the
service itself (pyarrow, boto3, prometheus-client) loads only when one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_METRICS_PORT": "monitoring.capture.sidecar_command",
    "SidecarMetrics": ".metrics",
    "Sidecar": ".service",
    "SidecarBusy": ".service",
    "StartupReport": ".service",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
