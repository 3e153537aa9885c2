"""Data quality of one window (issue 23): what went wrong and what arrived, before any drift test.

Per window: the error share and the errors by code, decode failures (images the server could not
read, refused as too large, or refused as decompression bombs), the distribution of input image
sizes, modes and formats as the clients sent them, and the output checks' shares (blank /
non-finite generated images). Counts, not tests: a window with 3 % undecodable uploads is worth
knowing about whether or not the rest drifted.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: error_message fragments of decode failures (serving/runtime/images.py words them)
DECODE_MARKERS = ("cannot decode image", "decompression bomb", "pixels exceeds the limit", "is not valid base64")
TOP_SIZES = 5
QUALITY_COLUMNS = ("outcome", "error_code", "error_message", "image_width", "image_height", "image_mode", "image_format",
                   "output_blank", "output_nonfinite")


def _shares(values: pd.Series) -> dict[str, float]:
    v = values.dropna().astype(str)
    return {k: round(float(c) / len(v), 6) for k, c in v.value_counts().items()} if len(v) else {}


def window_quality(df: pd.DataFrame) -> dict[str, Any]:
    """The data-quality view of one window's records (every record, failed ones included)."""
    n = int(len(df))
    outcome = df["outcome"].fillna("ok") if "outcome" in df.columns else pd.Series(["ok"] * n, index=df.index)
    err = df[outcome != "ok"]
    out: dict[str, Any] = {"n_records": n, "n_errors": int(len(err)), "error_share": round(len(err) / n, 6) if n else 0.0}
    codes = err["error_code"].fillna("UNKNOWN") if "error_code" in err.columns else pd.Series(["UNKNOWN"] * len(err))
    out["errors_by_code"] = {str(k): int(c) for k, c in codes.value_counts().items()}
    msg = err["error_message"].fillna("").str.lower() if "error_message" in err.columns else pd.Series([], dtype=str)
    decode = msg.map(lambda m: any(k in m for k in DECODE_MARKERS)) if len(msg) else pd.Series([], dtype=bool)
    out["decode_failures"] = int(decode.sum())
    out["decode_failure_share"] = round(float(decode.sum()) / n, 6) if n else 0.0
    ok = df[outcome == "ok"]
    if {"image_width", "image_height"} <= set(ok.columns) and ok["image_width"].notna().any():
        sized = ok.dropna(subset=["image_width", "image_height"])
        sizes = sized["image_width"].astype(int).astype(str) + "x" + sized["image_height"].astype(int).astype(str)
        out["image_sizes"] = {"n": int(len(sized)), "distinct": int(sizes.nunique()),
                              "top": {k: int(c) for k, c in sizes.value_counts().head(TOP_SIZES).items()},
                              "min_side": int(sized[["image_width", "image_height"]].min(axis=1).min()),
                              "median_pixels": float((sized["image_width"] * sized["image_height"]).median()),
                              "max_side": int(sized[["image_width", "image_height"]].max(axis=1).max())}
    for col, key in (("image_mode", "image_modes"), ("image_format", "image_formats")):
        if col in ok.columns and ok[col].notna().any():
            out[key] = _shares(ok[col])
    checks = {}
    for col, name in (("output_blank", "blank"), ("output_nonfinite", "nonfinite")):
        if col in df.columns and df[col].notna().any():
            checks[name] = round(float(df[col].fillna(False).astype(bool).sum()) / n, 6)
    if checks:
        out["output_checks"] = checks
    return out


def describe_quality(q: dict[str, Any]) -> str:
    """``errors 3% (INVALID_ARG 9), 4 decode failures; modes RGB 90%, L 10%`` -- empty when all is clean."""
    parts = []
    if q.get("n_errors"):
        parts.append(f"errors {q['error_share']:.1%} (" + ", ".join(f"{k} {v}" for k, v in q["errors_by_code"].items()) + ")")
    if q.get("decode_failures"):
        parts.append(f"{q['decode_failures']} decode failures")
    modes = q.get("image_modes") or {}
    if len(modes) > 1:
        parts.append("modes " + ", ".join(f"{k} {v:.0%}" for k, v in modes.items()))
    return "; ".join(parts)
