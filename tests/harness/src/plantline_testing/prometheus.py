"""A Prometheus server's HTTP API, as the live monitoring tests read it: `PrometheusApi`."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# What Grafana puts in for its built-in variables when the tests evaluate a dashboard query.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Return `expr` with Grafana's `$name` variables replaced, the longest names first."""
    values = {**GRAFANA_BUILTINS, **{f"${name}": value for name, value in variables.items()}}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


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
