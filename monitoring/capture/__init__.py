"""Request capture inside the model process: stdlib + numpy only, nothing on the request path blocks.

    from monitoring.capture import Capturer, image_stats

    cap = Capturer.from_env("resnet50", "1")      # NullCapturer when CAPTURE_SPOOL_DIR is unset
    cap.submit({"request_id": rid, "ts_ms": ts, "outcome": "ok", **image_stats(img), ...})
    cap.close()

See docs/monitoring.md for the record contract and the guarantees.
"""

from .capturer import Capturer, NullCapturer, sampled_by_id
from .fields import FIELD_NAMES, FIELDS, REQUIRED_FIELDS, SCHEMA_VERSION, VECTOR_FIELDS, check_model_name
from .image_stats import image_stats, luminance, output_image_stats, prediction_stats

__all__ = [
    "Capturer",
    "FIELDS",
    "FIELD_NAMES",
    "NullCapturer",
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "VECTOR_FIELDS",
    "check_model_name",
    "image_stats",
    "luminance",
    "output_image_stats",
    "prediction_stats",
    "sampled_by_id",
]
