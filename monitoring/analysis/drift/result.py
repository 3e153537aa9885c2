"""The value every detector returns: a small, frozen, JSON-friendly record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from monitoring.jsonable import to_jsonable


@dataclass(frozen=True)
class DriftResult:
    """Outcome of scoring one window against a fitted baseline.

    Attributes:
        method: detector name, e.g. ``"cluster_jsd"``.
        statistic: the detector's drift statistic for this window (larger = more drift).
        threshold: alarm threshold for *this window size*; ``is_drift == statistic > threshold``
            for calibrated detectors.
        p_value: probability, under "no drift", of a statistic at least this large
            (resampling or analytic null, see each detector).
        is_drift: the verdict at the detector's ``alpha``.
        window_size: number of rows in the scored window.
        explanation: method-specific, JSON-serialisable details.
    """

    method: str
    statistic: float
    threshold: float
    p_value: float
    is_drift: bool
    window_size: int
    explanation: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (json.dumps-able)."""
        return to_jsonable(asdict(self))
