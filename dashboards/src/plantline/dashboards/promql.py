"""PromQL selectors for one line: fixed values in rules, Grafana variables in dashboards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from plantline.connectors.metric_names import MetricDefinition
from plantline.dashboards.line import COMPONENT_LABEL, DEVICE_LABEL, LINE_LABEL, SITE_LABEL, LineView


@dataclass(frozen=True, slots=True)
class Scope:
    """Which series a query selects: a site and line, and a machine (device) where the metric has one.

    `regex` matchers (`=~`) take Grafana's multi-value variables (`$machine` may be `a|b`).
    """

    site: str
    line: str
    device: str | None = None
    regex: bool = False

    def matchers(self, more: Mapping[str, str] | None = None, *, device: bool = False) -> str:
        """Return the label matchers `site=..., line=...` (and the device's), then `more` (label: value)."""
        op = "=~" if self.regex else "="
        found = [f'{SITE_LABEL}{op}"{self.site}"', f'{LINE_LABEL}{op}"{self.line}"']
        if device and self.device is not None:
            found.append(f'{DEVICE_LABEL}{op}"{self.device}"')
        found += [f'{label}="{value}"' for label, value in (more or {}).items()]
        return ", ".join(found)

    def of(self, metric: MetricDefinition, suffix: str = "", **more: str) -> str:
        """Return the selector of `metric` (a histogram's `_bucket`, `_count` ... by `suffix`) in this scope."""
        return f"{metric.name}{suffix}{{{self.matchers(more, device=DEVICE_LABEL in metric.labels)}}}"

    def up(self, component: str, **more: str) -> str:
        """Return the `up` series of the line's scrape targets of one component."""
        return f"up{{{self.matchers({COMPONENT_LABEL: component, **more})}}}"


def rule_scope(view: LineView) -> Scope:
    """Return the scope of a line's rules: its own site and line, every machine."""
    return Scope(view.site, view.line)


DASHBOARD_SCOPE = Scope("$site", "$line", "$machine", regex=True)
"""The scope of every dashboard query: the `site`, `line` and `machine` variables."""
