"""Segment attributes: request parameters segment.<name>, bounded and validated (issue 23)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from monitoring.capture.attributes import as_parameters, segment_attributes
from monitoring.analysis.scoring.segments import MISSING, OTHER, cap_segments, segment_values


def test_parsed_from_request_parameters():
    params = json.dumps({"image_encoding": "raw", "segment.tenant": "acme", "segment.app_version": 12})
    assert segment_attributes(params) == {"app_version": "12", "tenant": "acme"}
    assert segment_attributes(None) == {} and segment_attributes("{}") == {}
    assert as_parameters({"tenant": "acme"}) == {"segment.tenant": "acme"}


@pytest.mark.parametrize("params, message", [
    ({"segment.tenant": "x" * 65}, r"'segment.tenant': value of 65 characters is outside 1..64"),
    ({"segment.tenant": ""}, r"value of 0 characters is outside 1..64"),
    ({"segment.Tenant": "a"}, r"'segment.Tenant': the name must match"),
    ({"segment.tenant": "a\nb"}, r"non-printable"),
    ({"segment.tenant": True}, r"must be a string or an integer"),
    ({f"segment.a{i}": "v" for i in range(5)}, r"5 'segment.\*' attributes \(at most 4\)"),
])
def test_bounds_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        segment_attributes(params)


def test_segment_values_and_cap():
    df = pd.DataFrame({"segment_attrs": [json.dumps({"tenant": t}) for t in "aaaabbbcd"] + [None, json.dumps({"x": "1"})]})
    v = segment_values(df, "tenant")
    assert v.tolist() == list("aaaabbbcd") + [MISSING, MISSING]
    capped = cap_segments(v, 3)  # the two largest kept, the rest pooled
    assert capped.value_counts().to_dict() == {"a": 4, "b": 3, OTHER: 4}
    assert cap_segments(v, 10).equals(v)
    with pytest.raises(ValueError, match="--max-segments: 1 must be >= 2"):
        cap_segments(v, 1)
    assert set(segment_values(pd.DataFrame({"x": [1]}), "tenant")) == {MISSING}
