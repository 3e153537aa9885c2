import dataclasses
import json

import numpy as np
import pytest

from monitoring.analysis.drift import DriftResult


def test_to_dict_is_json_serialisable_and_converts_numpy():
    r = DriftResult(
        method="x",
        statistic=np.float32(0.5),
        threshold=0.25,
        p_value=0.01,
        is_drift=np.bool_(True),
        window_size=3,
        explanation={"a": np.arange(3), "b": {"c": np.float64(1.5)}, "nan": float("nan")},
    )
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == {
        "method": "x",
        "statistic": 0.5,
        "threshold": 0.25,
        "p_value": 0.01,
        "is_drift": True,
        "window_size": 3,
        "explanation": {"a": [0, 1, 2], "b": {"c": 1.5}, "nan": None},
    }


def test_result_is_frozen():
    r = DriftResult("m", 1.0, 0.5, 0.1, True, 10, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.statistic = 2.0  # type: ignore[misc]
