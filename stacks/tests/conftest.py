"""Fixtures of the stacks' tests."""

from __future__ import annotations

import pytest

from .mocks import Recorder


@pytest.fixture
def recorder() -> Recorder:
    """Fresh mocks for one test."""
    return Recorder()
