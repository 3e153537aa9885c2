"""Ground truth in SageMaker Model Monitor's merge format, next to the Data Capture export.

Model Monitor's model-quality job joins these with the captured predictions on
``eventMetadata.eventId`` == the Data Capture event's ``eventMetadata.inferenceId`` (our request
id). Layout: ``<prefix>/yyyy/mm/dd/hh/<name>.jsonl``, one object a line::

    {"groundTruthData": {"data": "7", "encoding": "CSV"}, "eventMetadata": {"eventId": "<request id>"},
     "eventVersion": "0"}

The hour partition is the hour the label was *posted* (Model Monitor reads ground truth up to its
own offset after the capture hour).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd

from monitoring.ingest.store.backend import Backend
from monitoring.ingest.store.datacapture import write_hourly_jsonl


def to_groundtruth_event(request_id: str, label: Any) -> dict[str, Any]:
    return {"groundTruthData": {"data": str(label), "encoding": "CSV"}, "eventMetadata": {"eventId": str(request_id)},
            "eventVersion": "0"}


def export_groundtruth(backend: Backend, labels: pd.DataFrame, prefix: str, name: str, posted_ms: int | None = None) -> list[str]:
    """Write ``labels`` (``request_id``, ``label``[, ``posted_ms``]) as ground-truth JSON lines."""
    by_hour: dict[str, list[str]] = {}
    now = int(time.time() * 1000) if posted_ms is None else int(posted_ms)
    for row in labels.itertuples(index=False):
        ts = int(getattr(row, "posted_ms", now) or now)
        t = time.gmtime(ts // 1000)
        hour = f"{prefix.rstrip('/')}/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_hour:02d}".lstrip("/")
        by_hour.setdefault(hour, []).append(json.dumps(to_groundtruth_event(row.request_id, row.label), separators=(",", ":")))
    return write_hourly_jsonl(backend, by_hour, name)
