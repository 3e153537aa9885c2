"""Fixtures for the drift-workflow tests: a synthetic capture store of real digits, copied per test."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from workflow_testlib import MODEL, build_store, write_labels


WORKFLOW_COMMANDS = {"baseline": "monitoring.analysis.baseline.cli", "score": "monitoring.analysis.scoring.cli",
                     "actuals": "monitoring.analysis.actuals.cli", "report": "monitoring.outputs.report.cli", "export": "monitoring.outputs.export.cli"}


@pytest.fixture(autouse=True)
def workflow_commands_registered():
    """Our subcommands are in the registry even if another test swapped ``cli.COMMANDS`` while
    these modules were first imported (tests/monitoring/test_monitoring_cli.py monkeypatches it)."""
    from monitoring import cli

    for name, mod in WORKFLOW_COMMANDS.items():
        if name not in cli.COMMANDS:
            importlib.reload(importlib.import_module(mod))
    yield


@pytest.fixture(scope="session")
def store_template(tmp_path_factory):
    """(store dir, {kind: [(request_id, true label)]}): days clean / blurred / darkened + baseline v1."""
    path = tmp_path_factory.mktemp("wf-template") / "store"
    ids = build_store(path)
    return path, ids


@pytest.fixture
def digit_store(store_template, tmp_path) -> tuple[Path, dict]:
    """A private copy of the template store (tests may add actuals, scores, baselines)."""
    src, ids = store_template
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return dst, ids


@pytest.fixture
def labels_csv(digit_store, tmp_path) -> Path:
    _, ids = digit_store
    return write_labels(tmp_path / "labels.csv", ids)


@pytest.fixture
def model() -> str:
    return MODEL


@pytest.fixture(scope="session")
def generative_scored(tmp_path_factory):
    """(store, run): the generative demo's traffic, smaller, made by the real sd_img2img runtime
    in-process: baseline (120) + clean / prompts moved / settings changed weeks (64 each), scored.

    Built once for test_generative_spaces.py and test_generative_report_browser.py (one unit of
    work under xdist: SHARED_FILES in tests/conftest.py); tests that write to the store use a copy.
    """
    from monitoring.analysis.baseline.sources import spaces_from_records
    from monitoring.analysis.baseline.store import save_baseline
    from bench.demo.generative import MODEL as GEN_MODEL
    from bench.demo.generative import build_store as build_gen_store
    from bench.demo.generative import default_phases
    from monitoring.analysis.scoring.runner import score_model
    from monitoring.analysis.scoring.windows import Window

    store = tmp_path_factory.mktemp("gen-mixed") / "store"
    spans = build_gen_store(store, default_phases(n_baseline=120, per_week=64), seed=1)
    spaces, meta, info = spaces_from_records(store, GEN_MODEL, spans[0][1], spans[0][2])
    b = save_baseline(store, GEN_MODEL, None, meta, spaces=spaces, source=info)
    run = score_model(store, GEN_MODEL, baseline=b, windows=[Window(lab, s, e) for lab, s, e in spans[1:]], min_window=20)
    return store, run
