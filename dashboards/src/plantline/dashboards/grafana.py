"""Builders of Grafana's dashboard JSON model (schemaVersion 41): variables, panels, rows, links.

Each builder returns the plain dicts Grafana stores; the tests type-check every generated
dashboard, and each panel's options, against `@grafana/schema`'s published types. Panels are laid
out by `Layout`, left to right on Grafana's 24-column grid, wrapping into new rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

SCHEMA_VERSION: Final = 41
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH: Final = 24

Thresholds = Sequence[tuple[str, float | None]]  # (colour, from value); the first's value is None

# Thresholds read "good is green": high is good for ratios, low is good for ages and errors.
RATIO_STEPS: Final[Thresholds] = (("red", None), ("orange", 0.6), ("green", 0.85))
ZERO_IS_GOOD: Final[Thresholds] = (("green", None), ("red", 1))
ONE_IS_GOOD: Final[Thresholds] = (("red", None), ("green", 1))


def uid(kind: str, namespace: str, name: str) -> str:
    """Return a dashboard uid (at most 40 characters, as Grafana requires), stable per line and kind."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:10]
    return f"plantline-{kind}-{digest}"[:40]


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False


def _targets(queries: Sequence[Query]) -> list[dict[str, Any]]:
    return [
        {
            "refId": chr(ord("A") + index),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": not query.instant,
            "instant": query.instant,
        }
        for index, query in enumerate(queries)
    ]


def _thresholds(steps: Thresholds) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


@dataclass(frozen=True, slots=True)
class Panel:
    """What a panel shows: its kind, title, queries, unit and thresholds, its size on the grid."""

    kind: str  # stat | timeseries | state-timeline | table | gauge
    title: str
    queries: Sequence[Query]
    description: str = ""
    unit: str = "short"
    thresholds: Thresholds = (("green", None),)
    minimum: float | None = None
    maximum: float | None = None
    width: int = 8
    height: int = 8
    links: Sequence[dict[str, Any]] = ()
    mappings: Sequence[dict[str, Any]] = ()


def _legend() -> dict[str, Any]:
    return {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}


def _tooltip() -> dict[str, Any]:
    return {"mode": "multi", "sort": "none", "hideZeros": False}


def _reduce() -> dict[str, Any]:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def panel_options(kind: str) -> dict[str, Any]:
    """Return the options of a panel plugin, each field its schema requires."""
    if kind == "stat":
        return {
            "reduceOptions": _reduce(),
            "orientation": "auto",
            "textMode": "value_and_name",
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "percentChangeColorMode": "standard",
            "showPercentChange": False,
            "wideLayout": True,
        }
    if kind == "gauge":
        return {
            "reduceOptions": _reduce(),
            "orientation": "auto",
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
            "sizing": "auto",
            "minVizHeight": 75,
            "minVizWidth": 75,
        }
    if kind == "state-timeline":
        return {
            "mergeValues": True,
            "showValue": "auto",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": _legend(),
            "tooltip": _tooltip(),
        }
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "frameIndex": 0, "showTypeIcons": False}
    return {"legend": _legend(), "tooltip": _tooltip()}


def _custom(kind: str) -> dict[str, Any] | None:
    """Return a panel plugin's per-field display settings, where it has a schema for them."""
    if kind == "timeseries":
        return {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    if kind == "state-timeline":
        return {"fillOpacity": 80, "lineWidth": 0}
    if kind == "table":
        return {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    return None


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel.thresholds),
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
        "mappings": list(panel.mappings),
        "links": list(panel.links),
    }
    if panel.minimum is not None:
        defaults["min"] = panel.minimum
    if panel.maximum is not None:
        defaults["max"] = panel.maximum
    custom = _custom(panel.kind)
    if custom is not None:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": []}


def value_mappings(shown: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Return value mappings that show the values 0, 1, ... as the (text, color) pairs of `shown`."""
    options = {str(i): {"text": text, "color": color, "index": i} for i, (text, color) in enumerate(shown)}
    return [{"type": "value", "options": options}]


def boolean_mappings(false_text: str, true_text: str) -> list[dict[str, Any]]:
    """Return value mappings that show 0 and 1 as words, red and green."""
    return value_mappings(((false_text, "red"), (true_text, "green")))


@dataclass
class Layout:
    """Places panels and rows on the grid and numbers them."""

    items: list[dict[str, Any]] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0
    next_id: int = 1

    def _newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        """Start a new (expanded) row titled `title`."""
        if self.x:
            self._newline()
        grid = {"h": 1, "w": GRID_WIDTH, "x": 0, "y": self.y}
        self.items.append(
            {"type": "row", "title": title, "id": self.next_id, "collapsed": False, "gridPos": grid, "panels": []}
        )
        self.next_id += 1
        self.y += 1

    def add(self, panel: Panel) -> None:
        """Place `panel` right of the last one, or below when it does not fit."""
        if self.x + panel.width > GRID_WIDTH:
            self._newline()
        grid = {"h": panel.height, "w": panel.width, "x": self.x, "y": self.y}
        item: dict[str, Any] = {
            "type": panel.kind,
            "title": panel.title,
            "id": self.next_id,
            "gridPos": grid,
            "datasource": DATASOURCE,
            "targets": _targets(panel.queries),
            "fieldConfig": _field_config(panel),
            "options": panel_options(panel.kind),
        }
        if panel.description:
            item["description"] = panel.description
        self.items.append(item)
        self.next_id += 1
        self.x += panel.width
        self.row_height = max(self.row_height, panel.height)


# -- variables ------------------------------------------------------------------------------------


def datasource_variable() -> dict[str, Any]:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Prometheus",
        "query": "prometheus",
        "refresh": 1,
        "hide": 0,
        "skipUrlSync": False,
        "multi": False,
        "includeAll": False,
        "options": [],
    }


def query_variable(name: str, label: str, query: str, *, current: str, multi: bool = False) -> dict[str, Any]:
    """Return a variable whose values are label values from Prometheus (refreshed on time range change)."""
    variable: dict[str, Any] = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "skipUrlSync": False,
        "multi": multi,
        "includeAll": multi,
        "current": {"text": current, "value": "$__all" if current == "All" else current, "selected": True},
        "options": [],
        "regex": "",
    }
    if multi:
        variable["allValue"] = ".*"
    return variable


def custom_variable(name: str, label: str, options: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Return a variable chosen from fixed (text, value) options; the first is the default."""
    text, value = options[0]
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(f"{t} : {v}" for t, v in options),
        "hide": 0,
        "skipUrlSync": False,
        "multi": False,
        "includeAll": False,
        "current": {"text": text, "value": value, "selected": True},
        "options": [{"text": t, "value": v, "selected": i == 0} for i, (t, v) in enumerate(options)],
    }


def constant_variable(name: str, value: str) -> dict[str, Any]:
    return {"type": "constant", "name": name, "query": value, "hide": 2, "skipUrlSync": False, "options": []}


def dashboard_link(title: str, uid_: str, *, machine: str = "${__field.labels.device}") -> dict[str, Any]:
    """Return a data link to another dashboard, keeping the time range, site, line and machine."""
    query = f"var-site=${{site}}&var-line=${{line}}&var-machine={machine}&${{__url_time_range}}"
    return {"title": title, "url": f"/d/{uid_}?{query}", "targetBlank": False}


def dashboard(
    *,
    uid_: str,
    title: str,
    description: str,
    tags: Sequence[str],
    variables: Sequence[dict[str, Any]],
    layout: Layout,
) -> dict[str, Any]:
    """Return a whole dashboard: its variables, panels, and a menu of the line's other dashboards."""
    return {
        "uid": uid_,
        "title": title,
        "description": description,
        "tags": list(tags),
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "PlantLine dashboards",
                "type": "dashboards",
                "tags": [tags[0]],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": list(variables)},
        "panels": layout.items,
    }
