"""Shared setup for the analysis tests: `import analysis_testlib` (the scoring and fleet tests'
synthetic stores) works however pytest is started."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
