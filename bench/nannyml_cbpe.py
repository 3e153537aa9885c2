"""NannyML's CBPE on the rows bench/accuracy_bench.py wrote; runs inside build/venvs/nannyml (its own pins).

    build/venvs/nannyml/bin/python bench/nannyml_cbpe.py <dir>    # reads <dir>/reference.csv, <dir>/analysis.csv

The classifier's question "is the top-1 label right?" is posed to CBPE as a binary problem:
``y_pred_proba`` = the captured top-1 probability, ``y_pred`` = 1 (the model always claims its
top-1), ``y_true`` = whether it was right. CBPE's accuracy estimate is then the mean calibrated
probability of being right -- the same quantity our estimator computes -- with NannyML's own
calibration choice and its own confidence band (3 sampling-error sds, its default). One CBPE is
fitted on the reference and each week is estimated as one chunk. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nannyml as nml
import pandas as pd


def main(directory: str) -> int:
    d = Path(directory)
    ref = pd.read_csv(d / "reference.csv")
    ana = pd.read_csv(d / "analysis.csv")
    out = {"nannyml": nml.__version__, "weeks": []}
    for week, rows in ana.groupby("week", sort=False):
        t0 = time.perf_counter()
        est = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true", problem_type="classification_binary",
                       metrics=["accuracy"], chunk_size=len(rows))
        est.fit(ref)
        res = est.estimate(rows.drop(columns=["y_true"])).filter(period="analysis").to_df()
        acc = res["accuracy"]
        row = acc.iloc[0]
        out["weeks"].append({
            "week": week, "n": int(len(rows)),
            "estimated_accuracy": float(row["value"]),
            "low": float(row["lower_confidence_boundary"]) if pd.notna(row["lower_confidence_boundary"]) else None,
            "high": float(row["upper_confidence_boundary"]) if pd.notna(row["upper_confidence_boundary"]) else None,
            "sampling_error": float(row["sampling_error"]),
            "alert": bool(row["alert"]),
            "seconds": round(time.perf_counter() - t0, 3),
        })
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
