"""The sidecar runs in the model execution env: its imports, the score gauges included, stay
clear of the scoring libraries (the watch loop checks for those itself, docs/watch.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def test_sidecar_and_its_score_gauges_import_no_scoring_library():
    code = ("import json, sys; import monitoring.ingest.sidecar.service, monitoring.analysis.alerts; "
            "print(json.dumps(sorted(m for m in ('pandas', 'scipy', 'sklearn') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
