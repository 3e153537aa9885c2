"""The per-host capture sidecar (``python -m monitoring sidecar``): spool -> Parquet store."""

from .metrics import SidecarMetrics
from .service import DEFAULT_METRICS_PORT, Sidecar, SidecarBusy, StartupReport

__all__ = ["DEFAULT_METRICS_PORT", "Sidecar", "SidecarBusy", "SidecarMetrics", "StartupReport"]
