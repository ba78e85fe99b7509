"""Every generated dashboard, and each panel's plugin options, type-check against `@grafana/schema` with tsc."""

from __future__ import annotations

import copy

import pytest

from plantline.dashboards.boards import dashboards
from plantline_testing.grafana_schema import typecheck_dashboards
from plantline_testing.lines import demo_line_view

DEMO_VIEW = demo_line_view()  # the demo line with a bridge and the cloud bridge: every board and alert

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def test_the_demo_lines_dashboards_fit_grafanas_schema() -> None:
    check = typecheck_dashboards(dashboards(DEMO_VIEW))
    assert check.returncode == 0, check.output
    assert check.source.count(": Plain<Dashboard> =") == 5  # with the cloud bridge's


def test_a_broken_panel_fails_the_check() -> None:
    boards = copy.deepcopy(dashboards(DEMO_VIEW))
    stat = next(p for p in boards["oee"]["panels"] if p["type"] == "stat")
    stat["options"]["colorMode"] = "rainbow"  # not one of the schema's BigValueColorMode values
    boards["edge"]["panels"][1]["gridPos"] = {"h": "eight", "w": 8, "x": 0, "y": 0}
    check = typecheck_dashboards(boards)
    assert check.returncode != 0
    assert '"rainbow"' in check.output
    assert '"eight"' in check.output or "'string' is not assignable to type 'number'" in check.output
