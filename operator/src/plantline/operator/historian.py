"""Pure renderer: a PlantLine -> the configuration of the historian and its KPI API that follow it.

The historian is the line's Sparkplug host application (identity `<site>-<line>-host`, the primary
host when `primaryHostId` is set); it follows the line's group and edge nodes and computes each
machine's KPIs with the machine's own KPI settings and the line's shift calendar, as the edge does.
The data is YAML-ready; the historian validates it when it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plantline.operator.api import PlantLine
from plantline.operator.render import host_tls_files, machine_kpi_settings, topology

API_PORT = 8480


def render_historian_config(
    line: PlantLine,
    *,
    tls_dir: Path,
    dsn: str,
    status_file: Path,
    token_file: Path,
    api_port: int = API_PORT,
    api_host: str = "127.0.0.1",
) -> dict[str, Any]:
    """Return the historian's configuration for the line (plantline-historian's HistorianConfig, as data)."""
    spec = line.spec
    tls = host_tls_files(spec, tls_dir)
    line_settings: dict[str, Any] = {
        "site": spec.site,
        "line": spec.line,
        "group_id": spec.sparkplug_group,
        "edge_node_ids": [connector.edge_node_id for connector in topology(spec)],
        "machines": {m.id: machine_kpi_settings(m).model_dump(mode="json") for m in spec.machines},
    }
    if spec.kpi.shift_calendar is not None:
        line_settings["shifts"] = spec.kpi.shift_calendar.model_dump(mode="json")
    mqtt: dict[str, Any] = {
        "brokers": [{"host": spec.broker.host, "port": spec.broker.port, "tls": tls}],
        "client_id": f"{spec.site}-{spec.line}-historian",
    }
    if spec.primary_host_id is not None:
        mqtt["primary_host_id"] = spec.primary_host_id
    return {
        "mqtt": mqtt,
        "database": {"dsn": dsn},
        "lines": [line_settings],
        "api": {"host": api_host, "port": api_port, "token_file": str(token_file)},
        "status_file": str(status_file),
    }
