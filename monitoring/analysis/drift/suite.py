"""All detectors in one object: fit once on a baseline, score each window in one call."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .calibration import DEFAULT_ALPHA, DEFAULT_N_NULL
from .centroid import CentroidDistance
from .cluster import ClusterJSD
from .domain_classifier import DomainClassifier
from .mmd import MMDDrift
from .metadata import MetadataDrift
from .result import DriftResult

EMBEDDING_METHODS = ("cluster_jsd", "centroid", "mmd", "domain_classifier")


def default_detectors(
    methods: tuple[str, ...] = EMBEDDING_METHODS,
    *,
    alpha: float = DEFAULT_ALPHA,
    n_null: int = DEFAULT_N_NULL,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """Detectors with default settings, keyed by name."""
    make = {
        "cluster_jsd": lambda: ClusterJSD(alpha=alpha, n_null=n_null, random_state=random_state),
        "centroid": lambda: CentroidDistance(alpha=alpha, n_null=n_null, random_state=random_state),
        "mmd": lambda: MMDDrift(alpha=alpha, n_null=n_null, random_state=random_state),
        "domain_classifier": lambda: DomainClassifier(alpha=alpha, random_state=random_state),
    }
    unknown = [m for m in methods if m not in make]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(make)}")
    return {m: make[m]() for m in methods}


class DriftSuite:
    """Embedding detectors (+ optional metadata detector) fitted and scored together.

    Each detector keeps its own ``alpha``: with four embedding detectors, the chance that at least
    one alarms on a clean window is at most ``4 * alpha`` (Bonferroni); ``summarize`` reports both
    the per-method verdicts and ``any_drift``.

    Args:
        methods: names of the default embedding detectors to use (ignored if ``detectors`` given).
        detectors: explicit ``{name: detector}`` mapping (each with ``fit``/``score``).
        metadata: a :class:`MetadataDrift`, or True for a default one, or False/None for none.
            Only used when metadata frames are passed to ``fit``/``score``.
        alpha, n_null, random_state: passed to the default detectors.
    """

    def __init__(
        self,
        methods: tuple[str, ...] = EMBEDDING_METHODS,
        *,
        detectors: Mapping[str, Any] | None = None,
        metadata: MetadataDrift | bool | None = True,
        alpha: float = DEFAULT_ALPHA,
        n_null: int = DEFAULT_N_NULL,
        random_state: int | None = 0,
    ) -> None:
        if detectors is not None:
            self.detectors = dict(detectors)
        else:
            self.detectors = default_detectors(tuple(methods), alpha=alpha, n_null=n_null, random_state=random_state)
        if not self.detectors:
            raise ValueError("DriftSuite needs at least one embedding detector")
        if metadata is True:
            metadata = MetadataDrift(alpha=alpha)
        self.metadata = metadata or None

    def fit(self, X_ref: np.ndarray, metadata_ref: pd.DataFrame | None = None) -> "DriftSuite":
        """Fit every embedding detector on ``X_ref`` and, if given, the metadata detector."""
        for det in self.detectors.values():
            det.fit(X_ref)
        self.metadata_fitted_ = False
        if metadata_ref is not None and self.metadata is not None:
            self.metadata.fit(metadata_ref)
            self.metadata_fitted_ = True
        self.fitted_ = True
        return self

    def score(self, X_window: np.ndarray, metadata_window: pd.DataFrame | None = None) -> dict[str, DriftResult]:
        """``{name: DriftResult}`` for every detector (``"metadata"`` if a window frame is given)."""
        if not getattr(self, "fitted_", False):
            raise RuntimeError("DriftSuite is not fitted: call fit(X_ref) first")
        results = {name: det.score(X_window) for name, det in self.detectors.items()}
        if metadata_window is not None:
            if not self.metadata_fitted_:
                raise ValueError("metadata_window given but the suite was fitted without metadata_ref")
            results["metadata"] = self.metadata.score(metadata_window)
        return results

    @staticmethod
    def summarize(results: Mapping[str, DriftResult]) -> dict[str, Any]:
        """JSON-able summary: ``any_drift``, drifted methods and every result as a dict."""
        return {
            "any_drift": any(r.is_drift for r in results.values()),
            "drifted": [k for k, r in results.items() if r.is_drift],
            "results": {k: r.to_dict() for k, r in results.items()},
        }
