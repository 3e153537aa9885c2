"""Fixtures for the drift tests (data helpers live in drift_testlib.py)."""

from __future__ import annotations

import pytest

from drift_testlib import Mixture, load_digit_split


@pytest.fixture(scope="session")
def mixture() -> Mixture:
    return Mixture()


@pytest.fixture(scope="session")
def digits():
    """(baseline images, held-out images): 1000 / 797 real 8x8 digits."""
    return load_digit_split()
