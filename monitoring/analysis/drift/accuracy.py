"""Label-free accuracy: a classifier's accuracy per window estimated from its own calibrated confidences.

The idea is NannyML's CBPE (confidence-based performance estimation): if the top-1 confidence
``c`` is *calibrated* -- among predictions made with confidence ``c`` a share ``c`` is right --
then the expected accuracy of a window is the mean calibrated confidence of its predictions,
and no label is needed.

Calibration: **isotonic regression** of "top-1 was right" on the raw top-1 probability, fitted
on the baseline rows whose label is known. Why isotonic rather than temperature scaling:

* temperature scaling rescales the logits, and capture keeps only the top-k probabilities
  (the logits and the tail of the softmax are gone), so it cannot be refitted from records;
* accuracy needs only P(top-1 correct | confidence), a 1-d monotone map: isotonic fits any
  monotone distortion (a small fine-tuned model is over-confident in a way one temperature
  does not describe) and needs a few hundred labelled rows, which a baseline has.

The band: the realized accuracy of a window of ``n`` predictions with calibrated probabilities
``p_i`` is a Poisson-binomial mean with variance ``sum p_i (1 - p_i) / n^2`` (sampling), and the
calibration map itself is uncertain (``calibration_sd``: the spread of the estimate over
bootstrap refits on the baseline). The band is ``estimate +- z * sqrt(both variances)``
(z = 1.96, 95 %), clipped to [0, 1].

The failure mode, by construction: the estimate assumes P(y | x) did not move (covariate shift
only). When the same inputs start meaning other labels (concept shift: a relabelling, a new
class that looks like an old one) the model stays just as confident and the estimate does not
fall, while realized accuracy does. Only actuals catch that; docs/drift.md shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Fewer labelled baseline rows than this: no calibration (an isotonic fit on a handful of
#: rows is a staircase of noise).
MIN_CALIBRATION_ROWS = 50
#: Bootstrap refits of the calibration map that measure its uncertainty.
DEFAULT_N_BOOTSTRAP = 200
#: A window alarms when the top of its band is this far below the baseline's accuracy.
DEFAULT_MAX_DROP = 0.05
Z_95 = 1.959963984540054


def _check_confidences(conf: Any, what: str) -> np.ndarray:
    c = np.asarray(conf, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(c) | (c < 0) | (c > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: confidence {c[i]!r} at position {i} is not a probability in [0, 1]")
    return c


@dataclass
class AccuracyEstimator:
    """Fit on the baseline's (top-1 confidence, was-right) pairs; estimate any window's accuracy.

    >>> est = AccuracyEstimator().fit(conf_baseline, correct_baseline)
    >>> est.estimate(conf_window)["estimated_accuracy"]
    """

    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    max_drop: float = DEFAULT_MAX_DROP
    random_state: int = 0
    method: str = "isotonic"
    reference_accuracy_: float | None = None
    n_calibration_: int = 0
    _iso: Any = field(default=None, repr=False)
    _boot: list[Any] = field(default_factory=list, repr=False)

    def fit(self, confidence: Any, correct: Any) -> "AccuracyEstimator":
        from sklearn.isotonic import IsotonicRegression

        c = _check_confidences(confidence, "calibration")
        y = np.asarray(correct, dtype=np.float64).reshape(-1)
        if y.shape != c.shape:
            raise ValueError(f"calibration: {c.size} confidences but {y.size} correctness flags")
        if c.size < MIN_CALIBRATION_ROWS:
            raise ValueError(f"calibration: {c.size} labelled baseline rows (< {MIN_CALIBRATION_ROWS} needed)")
        if not 0 <= self.max_drop < 1:
            raise ValueError(f"max_drop: {self.max_drop!r} must be in [0, 1)")

        def iso(cc: np.ndarray, yy: np.ndarray) -> Any:
            return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True).fit(cc, yy)

        self._iso = iso(c, y)
        rng = np.random.default_rng(self.random_state)
        self._boot = []
        for _ in range(self.n_bootstrap):
            idx = rng.integers(0, c.size, c.size)
            self._boot.append(iso(c[idx], y[idx]))
        self.reference_accuracy_ = float(y.mean())
        self.n_calibration_ = int(c.size)
        return self

    @property
    def fitted(self) -> bool:
        return self._iso is not None

    def calibrated(self, confidence: Any) -> np.ndarray:
        """P(top-1 correct) for each confidence, by the fitted map."""
        if not self.fitted:
            raise RuntimeError("AccuracyEstimator is not fitted")
        return np.asarray(self._iso.predict(_check_confidences(confidence, "window")), dtype=np.float64)

    def estimate(self, confidence: Any) -> dict[str, Any]:
        """``estimated_accuracy`` of one window with its 95 % band and whether it dropped."""
        c = _check_confidences(confidence, "window")
        out: dict[str, Any] = {"method": f"cbpe-{self.method}", "n": int(c.size),
                               "reference_accuracy": self.reference_accuracy_, "max_drop": self.max_drop}
        if c.size == 0:
            return out | {"estimated_accuracy": None, "low": None, "high": None, "is_drop": False}
        p = self.calibrated(c)
        est = float(p.mean())
        sampling_sd = float(np.sqrt(np.sum(p * (1 - p))) / c.size)
        boots = np.array([float(np.mean(b.predict(c))) for b in self._boot]) if self._boot else np.array([est])
        calibration_sd = float(boots.std(ddof=1)) if boots.size > 1 else 0.0
        sd = float(np.hypot(sampling_sd, calibration_sd))
        low, high = max(0.0, est - Z_95 * sd), min(1.0, est + Z_95 * sd)
        ref = self.reference_accuracy_
        is_drop = bool(ref is not None and high < ref - self.max_drop)
        return out | {"estimated_accuracy": est, "low": low, "high": high, "sampling_sd": sampling_sd,
                      "calibration_sd": calibration_sd, "is_drop": is_drop}


def correctness(pred_label: Any, label: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, correct)``: rows with both a prediction and a label, and whether they agree."""
    import pandas as pd

    pred = pd.Series(pred_label).reset_index(drop=True)
    lab = pd.Series(label).reset_index(drop=True)
    mask = (pred.notna() & lab.notna()).to_numpy()
    correct = (pred.astype(str) == lab.astype(str)).to_numpy() & mask
    return mask, correct[mask]


def fit_from_baseline(metadata: Any, **kwargs: Any) -> AccuracyEstimator | None:
    """An estimator calibrated on a baseline's metadata sample (``pred_top_prob``, ``pred_label``
    and the known ``label``), or None when it has no classifier predictions or too few labels."""
    cols = ("pred_top_prob", "pred_label", "label")
    if metadata is None or any(c not in metadata.columns for c in cols):
        return None
    m = metadata.reset_index(drop=True)
    m = m[m["pred_top_prob"].notna() & m["pred_label"].notna() & m["label"].notna()]
    if len(m) < MIN_CALIBRATION_ROWS:
        return None
    _, correct = correctness(m["pred_label"], m["label"])
    return AccuracyEstimator(**kwargs).fit(m["pred_top_prob"].to_numpy(), correct)
