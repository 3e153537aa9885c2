"""Fleet-scale drift scoring: per-partition map, merge, score (in process or on Dask).

    from monitoring.analysis.fleet import hourly_windows, score_windows
    results = score_windows(suite, "s3://bucket/capture", "resnet_classifier",
                            hourly_windows("2026-11-26"), cluster="tcp://scheduler:8786")

See docs/fleet.md.
"""

from .score import FleetWindowResult, hourly_windows, partition_tasks, score_windows

__all__ = ["FleetWindowResult", "hourly_windows", "partition_tasks", "score_windows"]
