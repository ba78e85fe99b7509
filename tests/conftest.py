"""Fixtures shared by the cross-component tests: the demo line as the dashboards see it."""

from __future__ import annotations

import pytest
import yaml

from plantline.dashboards import LineView
from plantline.operator.api import parse_plantline
from plantline.operator.render import line_view
from plantline_testing.lines import DEMO


@pytest.fixture(scope="session")
def demo_view() -> LineView:
    """Return the demo line's view with a bridge added, so that every alert is generated."""
    data = yaml.safe_load(DEMO.read_text())
    data["spec"]["broker"]["bridge"] = {"host": "core.example", "port": 8883}
    return line_view(parse_plantline(data))
