"""The files of one line: dashboards for Grafana's and rules for Prometheus's file provisioning.

`render_files` returns every file by its path under the output directory; `prometheus_config`
the scrape configuration that gives the series the target labels (`site`, `line`, `component`,
`connector`) that every query selects on; the KPI API's scrape brings the API's bearer token.
Pure: the callers write the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from plantline.dashboards.boards import dashboards
from plantline.dashboards.line import (
    API,
    BROKER,
    CLOUD_BRIDGE,
    COMPONENT_LABEL,
    CONNECTOR,
    CONNECTOR_LABEL,
    LINE_LABEL,
    OPERATOR,
    PKI,
    SITE_LABEL,
    LineView,
)
from plantline.dashboards.rules import rule_file

# libyaml's emitter when PyYAML has it (a line of 200 connectors has over a thousand alerts).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

GRAFANA_DIR = "grafana"
PROMETHEUS_DIR = "prometheus"


def rules_path(view: LineView) -> str:
    return f"{PROMETHEUS_DIR}/{view.namespace}-{view.name}.rules.yml"


def dashboard_path(view: LineView, kind: str) -> str:
    return f"{GRAFANA_DIR}/{view.namespace}-{view.name}-{kind}.json"


def rules_yaml(view: LineView) -> str:
    """Return the line's Prometheus rule file as YAML."""
    return yaml.dump(rule_file(view), Dumper=_DUMPER, sort_keys=False, width=1000)


def dashboard_json(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2) + "\n"


def render_files(view: LineView) -> dict[str, str]:
    """Return the line's dashboards (JSON) and its rule file (YAML), by relative path.

    Four dashboards; a fifth, the cloud bridge's, when `view.cloud_bridge` (whose rules join the file).
    """
    files = {dashboard_path(view, kind): dashboard_json(board) for kind, board in dashboards(view).items()}
    files[rules_path(view)] = rules_yaml(view)
    return files


@dataclass(frozen=True, slots=True)
class Targets:
    """Where a line's programs serve /metrics (`host:port`)."""

    connectors: Mapping[str, str]  # by connector group
    broker_exporter: str | None = None
    pki: str | None = None
    operator: str | None = None
    api: str | None = None  # the line's KPI API (historian)
    api_token_file: str | None = None  # the bearer token Prometheus brings to the API's /metrics
    cloud_bridge: str | None = None  # the cloud bridge's health port (its /metrics)
    extra_labels: Mapping[str, str] = field(default_factory=dict)


def _job(name: str, targets: Sequence[str], labels: Mapping[str, str]) -> dict[str, Any]:
    return {"job_name": name, "static_configs": [{"targets": list(targets), "labels": dict(labels)}]}


def target_labels(view: LineView, component: str) -> dict[str, str]:
    """Return the target labels every scrape of one of the line's programs carries (a connector's adds its group)."""
    return {SITE_LABEL: view.site, LINE_LABEL: view.line, COMPONENT_LABEL: component}


def prometheus_config(
    view: LineView, targets: Targets, *, rule_files: Sequence[str], scrape_interval: str = "15s"
) -> dict[str, Any]:
    """Return a prometheus.yml scraping the line's programs with the target labels the queries select."""
    base = {SITE_LABEL: view.site, LINE_LABEL: view.line, **targets.extra_labels}
    prefix = f"plantline-{view.namespace}-{view.name}"
    jobs = [
        _job(f"{prefix}-{CONNECTOR}-{group}", [address], {**base, COMPONENT_LABEL: CONNECTOR, CONNECTOR_LABEL: group})
        for group, address in sorted(targets.connectors.items())
    ]
    others = ((BROKER, targets.broker_exporter), (PKI, targets.pki), (OPERATOR, targets.operator),
              (CLOUD_BRIDGE, targets.cloud_bridge))  # fmt: skip
    for component, address in others:
        if address is not None:
            jobs.append(_job(f"{prefix}-{component}", [address], {**base, COMPONENT_LABEL: component}))
    if targets.api is not None:
        job = _job(f"{prefix}-{API}", [targets.api], {**base, COMPONENT_LABEL: API})
        if targets.api_token_file is not None:
            job["authorization"] = {"type": "Bearer", "credentials_file": targets.api_token_file}
        jobs.append(job)
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }
