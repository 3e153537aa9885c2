"""Fixtures for the drift-workflow tests: a synthetic capture store of real digits, copied per test."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from workflow_testlib import MODEL, build_store, write_labels


WORKFLOW_COMMANDS = {"baseline": "monitoring.baseline.cli", "score": "monitoring.scoring.cli",
                     "actuals": "monitoring.actuals.cli", "report": "monitoring.report.cli", "export": "monitoring.export.cli"}


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
