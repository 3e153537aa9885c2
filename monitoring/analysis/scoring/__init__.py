"""Scoring a model's captured records against its baseline, window by window.

    from monitoring.analysis.scoring import score_model
    run = score_model("var/store", "resnet_classifier", every="1d")
    run["windows"][0]["methods"]["mmd"]["p_value"], run["windows"][0]["accuracy"]

``python -m monitoring score`` is the command-line face (docs/drift-workflow.md).
"""

from .result import MethodScore, ScoreRun, WindowScore
from .runner import load_latest_scores, save_scores, score_model, score_run, score_window
from .windows import Window, count_windows, parse_every, parse_window_spec, time_windows

__all__ = ["MethodScore", "ScoreRun", "Window", "WindowScore", "count_windows", "load_latest_scores", "parse_every",
           "parse_window_spec", "save_scores", "score_model", "score_run", "score_window", "time_windows"]
