"""Numpy values -> plain JSON-able Python: the one conversion every saved artefact goes through.

Its own module (numpy only) so that reading and writing the store's artefacts
(monitoring/analysis/artifacts) does not import the drift detectors and their scikit-learn/scipy: the
sidecar's score gauges (monitoring/analysis/alerts) read artefacts in the model execution env.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays (recursively, inside dicts/lists/tuples) to plain Python."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) else f
    return value
