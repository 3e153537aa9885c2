"""A self-contained HTML drift report (PNG figures embedded as base64, also written beside it).

    python -m monitoring report --model resnet_classifier --out var/reports
"""

from .build import build_report

__all__ = ["build_report"]
