"""PlantLine dashboards: Grafana dashboards and Prometheus rules generated from one line (pure).

`LineView` is the line as plain data; `render_files(view)` returns the four dashboards and the rule
file; `prometheus_config` the scrape configuration whose target labels the queries select on.
"""

from plantline.dashboards.line import ConnectorView, LineView, MachineView
from plantline.dashboards.render import Targets, prometheus_config, render_files

__all__ = ["ConnectorView", "LineView", "MachineView", "Targets", "prometheus_config", "render_files"]
