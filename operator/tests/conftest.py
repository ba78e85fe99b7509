"""Shared fixtures of the operator tests: the demo line, fresh for each test.

The demo file runs the line as one edge node (`perLine`). Most renderer tests want several edge
nodes, one per machine, to prove the ACL keeps them apart, so these fixtures split the demo per
machine; a test that wants the file as it is reads `DEMO` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.operator.api import PlantLine, parse_plantline

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-line.yaml"


@pytest.fixture
def demo_data() -> Callable[[], dict[str, Any]]:
    """Return a factory of fresh copies of the demo line's data, to break in each test."""

    def load() -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
        data["spec"]["connectors"] = {"grouping": "perMachine"}
        return data

    return load


@pytest.fixture
def demo(demo_data: Callable[[], dict[str, Any]]) -> PlantLine:
    return parse_plantline(demo_data())
