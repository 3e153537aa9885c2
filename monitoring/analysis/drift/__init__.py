"""Drift detection for image-model embeddings and request metadata.

Every embedding detector follows the same pattern::

    det = MMDDrift(alpha=0.01).fit(X_ref)        # baseline embeddings, (n, d)
    result = det.score(X_window)                  # -> DriftResult
    result.is_drift, result.p_value, result.explanation

Thresholds are calibrated to each window's size from a bootstrap null of the baseline (see
:mod:`monitoring.analysis.drift.calibration`), so a clean window alarms with probability <= alpha whatever
its size.
"""

from .calibration import CalibratedDetector, calibrated_threshold, calibration_size, empirical_p_value
from .centroid import CentroidDistance, cosine_distance, euclidean_distance
from .cluster import ClusterJSD, js_distance
from .domain_classifier import DomainClassifier, auc_mann_whitney, auc_null_sd
from .explain import cluster_shift_explanation, top_positions
from .metadata import MetadataDrift, ks_critical_value, psi, psi_bin_edges
from .mmd import MMDDrift, RandomFourierFeatures, median_heuristic, mmd2_from_sums, rbf_kernel_row_sums
from .result import DriftResult
from .suite import EMBEDDING_METHODS, DriftSuite, default_detectors

__all__ = [
    "CalibratedDetector",
    "CentroidDistance",
    "ClusterJSD",
    "DomainClassifier",
    "DriftResult",
    "DriftSuite",
    "EMBEDDING_METHODS",
    "MMDDrift",
    "MetadataDrift",
    "RandomFourierFeatures",
    "auc_mann_whitney",
    "auc_null_sd",
    "calibrated_threshold",
    "calibration_size",
    "cluster_shift_explanation",
    "cosine_distance",
    "default_detectors",
    "empirical_p_value",
    "euclidean_distance",
    "js_distance",
    "ks_critical_value",
    "median_heuristic",
    "mmd2_from_sums",
    "psi",
    "psi_bin_edges",
    "rbf_kernel_row_sums",
    "top_positions",
]
