"""Optional export in SageMaker Data Capture's JSON-lines layout.

Key layout (local dir or S3 prefix), as SageMaker writes it::

    <endpoint>/<variant>/yyyy/mm/dd/hh/<segment>.jsonl

one JSON object per line::

    {"captureData": {"endpointInput":  {"observedContentType": "application/json", "mode": "INPUT",
                                        "data": "<json text>", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "<json text>", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<request_id>",
                       "inferenceTime": "2024-05-01T12:00:00.123Z"},
     "eventVersion": "0"}

We never capture raw payloads (images are large and may be sensitive), so ``data`` holds the
*features* of the request (model, version, image statistics, prompt features, gen_args) and of
the response (outcome, prediction / output image statistics, latency). Embeddings are left out.
``eventId`` is a UUID derived from the request id and timestamp, so re-exporting the same
record after a crash yields the same line in the same file.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Iterable

from .backend import Backend

INPUT_FIELDS = (
    "model", "model_version", "image_width", "image_height", "brightness", "contrast", "sharpness",
    "prompt_tokens", "has_negative_prompt", "gen_args",
    "segment_attrs",
)
OUTPUT_FIELDS = (
    "outcome", "error_code", "error_message", "pred_label", "pred_top_prob", "pred_entropy",
    "output_width", "output_height", "output_mean", "output_std", "queue_ms", "compute_ms", "batch_size",
    "pred_top_k_labels", "pred_top_k_probs",
)
#: Embedding spaces (issue 23): the input image's and the prompt's on the input side, the output's
#: on the output side. ``export --to datacapture`` writes them; the sidecar's live Data Capture
#: copy leaves them out (a 2048-d vector is ~40 kB of JSON text per event, every event).
INPUT_VECTORS = ("embedding", "text_embedding")
OUTPUT_VECTORS = ("output_embedding",)
#: JSON-text record fields that go into the event as JSON, not as a string of JSON
_JSON_FIELDS = ("gen_args", "segment_attrs", "pred_top_k_labels")
_NS = uuid.UUID("6f1c1d3e-8a1b-4c55-9a55-4d6f6e69746f")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "tolist"):  # a numpy vector: plain floats
        v = v.tolist()
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def _iso_ms(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms // 1000)) + f".{ts_ms % 1000:03d}Z"


def to_event(rec: dict[str, Any], vectors: bool = False) -> dict[str, Any]:
    """One Data Capture event from a capture record (``vectors``: with every embedding space)."""
    inp = {k: _clean(rec.get(k)) for k in INPUT_FIELDS + (INPUT_VECTORS if vectors else ())}
    out = {k: _clean(rec.get(k)) for k in OUTPUT_FIELDS + (OUTPUT_VECTORS if vectors else ())}
    for side in (inp, out):
        for k in _JSON_FIELDS:
            if isinstance(side.get(k), str):
                try:
                    side[k] = json.loads(side[k])
                except ValueError:
                    pass
    ts = int(rec["ts_ms"])
    rid = str(rec.get("request_id") or "")
    return {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "data": json.dumps(inp, separators=(",", ":")), "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": json.dumps(out, separators=(",", ":")), "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": str(uuid.uuid5(_NS, f"{rid}|{ts}")), "inferenceId": rid, "inferenceTime": _iso_ms(ts)},
        "eventVersion": "0",
    }


def hour_prefix(endpoint: str, variant: str, ts_ms: int) -> str:
    t = time.gmtime(ts_ms // 1000)
    return f"{endpoint}/{variant}/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_hour:02d}"


def write_hourly_jsonl(backend: Backend, by_hour: dict[str, list[str]], name: str) -> list[str]:
    """One ``<hour prefix>/<name>.jsonl`` file per hour prefix, in prefix order; returns the keys."""
    keys = []
    for prefix, lines in sorted(by_hour.items()):
        key = f"{prefix}/{name}.jsonl"
        backend.write(key, ("\n".join(lines) + "\n").encode("utf-8"))
        keys.append(key)
    return keys


def export_records(backend: Backend, records: Iterable[dict[str, Any]], name: str, endpoint: str = "local-endpoint",
                   variant: str = "AllTraffic", vectors: bool = False) -> list[str]:
    """Write records as Data Capture JSON lines, one file ``<name>.jsonl`` per hour touched."""
    by_hour: dict[str, list[str]] = {}
    for rec in records:
        line = json.dumps(to_event(rec, vectors), separators=(",", ":"))
        by_hour.setdefault(hour_prefix(endpoint, variant, int(rec["ts_ms"])), []).append(line)
    return write_hourly_jsonl(backend, by_hour, name)
