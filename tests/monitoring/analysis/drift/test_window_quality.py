"""The data-quality view of a window (issue 23): errors by kind, decode failures, sizes, modes, output checks."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.analysis.scoring.quality import describe_quality, window_quality


def test_window_quality_counts():
    df = pd.DataFrame({
        "outcome": ["ok"] * 6 + ["error"] * 4,
        "error_code": [None] * 6 + ["INVALID_ARG", "INVALID_ARG", "INVALID_ARG", "INTERNAL"],
        "error_message": [None] * 6 + ["input 'image': cannot decode image (UnidentifiedImageError: x)",
                                       "input 'image': 9000x9000 = 81000000 pixels exceeds the limit of 16777216 pixels",
                                       "input 'prompt': too long", "CUDA out of memory"],
        "image_width": [64, 64, 64, 32, 64, None, None, None, None, None],
        "image_height": [64, 64, 64, 32, 48, None, None, None, None, None],
        "image_mode": ["RGB", "RGB", "RGB", "L", "RGBA", None, None, None, None, None],
        "output_blank": [False, False, True, False, False, False] + [None] * 4,
    })
    q = window_quality(df)
    assert q["n_records"] == 10 and q["n_errors"] == 4 and q["error_share"] == 0.4
    assert q["errors_by_code"] == {"INVALID_ARG": 3, "INTERNAL": 1}
    assert q["decode_failures"] == 2 and q["decode_failure_share"] == 0.2
    assert q["image_sizes"]["top"] == {"64x64": 3, "32x32": 1, "64x48": 1} and q["image_sizes"]["distinct"] == 3
    assert q["image_sizes"]["min_side"] == 32 and q["image_sizes"]["max_side"] == 64
    assert q["image_modes"] == {"RGB": 0.6, "L": 0.2, "RGBA": 0.2}
    assert q["output_checks"] == {"blank": pytest.approx(0.1)}
    text = describe_quality(q)
    assert "errors 40.0% (INVALID_ARG 3, INTERNAL 1)" in text and "2 decode failures" in text and "modes RGB 60%" in text


def test_clean_window_has_nothing_to_say():
    q = window_quality(pd.DataFrame({"outcome": ["ok"] * 3, "image_mode": ["RGB"] * 3}))
    assert q["n_errors"] == 0 and q["errors_by_code"] == {} and q["decode_failures"] == 0
    assert describe_quality(q) == "" and window_quality(pd.DataFrame({"outcome": []}))["error_share"] == 0.0
