"""Versioned drift baselines: an embedding sample + metadata sample + manifest, in the store.

    from monitoring.analysis.baseline import build_baseline, load_baseline
    b = load_baseline("var/store", "resnet_classifier")        # latest version
    suite = b.fit_suite()                                       # DriftSuite fitted on it
    prompt = b.fit_space("prompt")                              # one suite per embedding space

``python -m monitoring baseline build|list|show`` (see docs/drift-workflow.md).
"""

from .spaces import SPACES, Space, SpaceSample
from .store import Baseline, DEFAULT_MAX_ROWS, METADATA_FIELDS, list_baselines, load_baseline, save_baseline

__all__ = ["Baseline", "DEFAULT_MAX_ROWS", "METADATA_FIELDS", "SPACES", "Space", "SpaceSample", "list_baselines",
           "load_baseline", "save_baseline"]
