"""The one place the watch loop calls the scoring engine.

Everything else in :mod:`monitoring.analysis.watch` goes through :func:`score_windows`, so when the
engine changes (one typed engine, states made at ingest) only this function is re-pointed.
"""

from __future__ import annotations

from typing import Any, Sequence

from monitoring.analysis.scoring.result import ScoreRun
from monitoring.analysis.scoring.windows import Window


def score_windows(backend: Any, model: str, windows: Sequence[Window], *, min_window: int) -> tuple[ScoreRun, str]:
    """Score ``windows`` of ``model`` against its latest baseline (the default representation:
    the store's 128-d projection for a wider space) and save the run like ``monitoring score``
    does; returns ``(typed run, saved key)``."""
    from monitoring.analysis.scoring.runner import save_scores, score_run

    run = score_run(backend, model, windows=list(windows), min_window=min_window)
    return run, save_scores(backend, run)
