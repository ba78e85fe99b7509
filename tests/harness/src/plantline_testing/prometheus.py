"""A Prometheus server's HTTP API, as the live monitoring tests read it: `PrometheusApi`.

`line_queries` lists what those tests ask it: every dashboard query of a line (its variables
filled in), every recording rule and every alert's probe.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from plantline.dashboards import LineView
from plantline.dashboards.boards import dashboards
from plantline.dashboards.rules import alert_rules, recording_rules

T = TypeVar("T")

# The dashboards' variables, as the demo line (`plantline up` on a copy of it) has them.
DEMO_VARIABLES = {"site": "site1", "line": "line1", "machine": ".*", "scope": "window",
                  "namespace": "plantline", "plantline": "site1-line1"}  # fmt: skip

# What Grafana puts in for its built-in variables when the tests evaluate a dashboard query.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Return `expr` with Grafana's `$name` variables replaced, the longest names first."""
    values = {**GRAFANA_BUILTINS, **{f"${name}": value for name, value in variables.items()}}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def line_queries(
    view: LineView, *, boards: Collection[str] | None = None, sources: Collection[str] | None = None
) -> list[tuple[str, str]]:
    """Return (where, PromQL) of the line's dashboard queries, recording rules and alert probes.

    `boards` keeps the dashboards of those kinds only, `sources` the rules reading those components'
    metrics only (None: all).
    """
    found = [
        (f"{kind}: {panel['title']}", substitute(target["expr"], DEMO_VARIABLES))
        for kind, board in dashboards(view).items()
        if boards is None or kind in boards
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    found += [(f"record {r.record}", r.expr) for r in recording_rules(view) if sources is None or r.source in sources]
    found += [(f"alert {r.name}", r.probe) for r in alert_rules(view) if sources is None or r.source in sources]
    return found


@dataclass(frozen=True)
class PrometheusApi:
    """The query, alerts and targets endpoints of the Prometheus at `url`."""

    url: str

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}{path}{query}"
        if not url.startswith("http://"):
            raise ValueError(f"not an http URL: {url}")
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http only, checked above
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Return the series an instant query gives now."""
        result: list[dict[str, Any]] = self._get("/api/v1/query", query=expr)["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Return the active (pending or firing) alerts."""
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return alerts

    def active(self, alert: str, **labels: str) -> list[dict[str, Any]]:
        """Return the active instances of `alert` that have `labels`."""
        return [
            a for a in self.alerts()
            if a["labels"]["alertname"] == alert and all(a["labels"].get(k) == v for k, v in labels.items())
        ]  # fmt: skip

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self._get("/api/v1/targets")["activeTargets"]
        return targets


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, *, every: float = 1.0) -> T:
    """Return `probe()`'s first value that is neither None nor empty, polling until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
