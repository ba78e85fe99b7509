"""`plantline up --monitoring`: a Prometheus with the line's rules, scraping everything the line runs.

Prometheus (Debian's `prometheus`) scrapes the connectors, the broker exporter, the certificate
facts `up` serves itself from its local CA and, when the line runs the historian, its KPI API
(with the API's bearer token) and, with `--cloud`, the cloud bridge's /metrics (its health port),
each target labelled with the line's site and line as the generated dashboards and rules expect;
with the bridge, its alerts and SLO are in the rule file too. The broker's metrics come from
`mqtt-exporter` (PyPI, `pipx install 'mqtt-exporter==1.12.1'`), connected as the line's reader
identity to Mosquitto's `$SYS` topics; without it the line runs and the broker dashboard stays
empty (`up` says so).
Ports: Prometheus on `--prometheus-port` (default 9090), the exporter on the next port, the
certificate facts on the one after.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from plantline.dashboards import Targets, prometheus_config
from plantline.dashboards import broker as exporter
from plantline.dashboards.render import rules_yaml
from plantline.operator.api import PlantLine
from plantline.operator.render import TRUST_BUNDLE, line_view, reader_identity
from plantline.operator.telemetry import PkiMetrics, serve

DEFAULT_PROMETHEUS_PORT = 9090
ADDRESS = "127.0.0.1"


class MonitoringUnavailable(Exception):
    """A program monitoring needs is not installed; the message says how to install it."""


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Where the line's monitoring listens, and the broker exporter program (None: not installed)."""

    prometheus_port: int = DEFAULT_PROMETHEUS_PORT
    exporter: str | None = None

    @property
    def exporter_port(self) -> int:
        return self.prometheus_port + 1

    @property
    def pki_port(self) -> int:
        return self.prometheus_port + 2

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.prometheus_port}"

    def ports(self) -> dict[str, int]:
        """Return each listener of monitoring by name, for the check that they are free."""
        found = {"prometheus": self.prometheus_port, "certificate metrics": self.pki_port}
        if self.exporter is not None:
            found["broker exporter"] = self.exporter_port
        return found


def installed(program: str) -> str | None:
    """Return where `program` is, looking in /usr/sbin too (Debian puts daemons there), or None."""
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin:/usr/bin")


def find_prometheus() -> str:
    """Return the prometheus program; raise MonitoringUnavailable naming the package when it is missing."""
    path = installed("prometheus")
    if path is None:
        raise MonitoringUnavailable("prometheus is not installed; run: sudo apt-get install prometheus")
    return path


def find_exporter(given: str | None) -> str | None:
    """Return the broker exporter program: `given`, else mqtt-exporter on PATH or beside Python, else None."""
    if given is not None:
        found = shutil.which(given)
        if found is None:
            raise MonitoringUnavailable(f"--broker-exporter: {given} is not an executable program")
        return found
    beside = Path(sys.executable).parent / exporter.EXPORTER_PROGRAM
    return shutil.which(exporter.EXPORTER_PROGRAM) or (str(beside) if beside.exists() else None)


def exporter_environment(line: PlantLine, tls_dir: Path, monitoring: Monitoring) -> dict[str, str]:
    """Return the broker exporter's settings: the broker, the reader's TLS files, where to serve."""
    reader = reader_identity(line.spec)
    return {
        **exporter.EXPORTER_ENV,
        "MQTT_ADDRESS": line.spec.broker.host,
        "MQTT_PORT": str(line.spec.broker.port),
        "MQTT_TLS_CA_CERT": str(tls_dir / TRUST_BUNDLE),
        "MQTT_TLS_CLIENT_CERT": str(tls_dir / f"{reader}.crt"),
        "MQTT_TLS_CLIENT_KEY": str(tls_dir / f"{reader}.key"),
        "MQTT_CLIENT_ID": f"{reader}-exporter",
        "PROMETHEUS_ADDRESS": ADDRESS,
        "PROMETHEUS_PORT": str(monitoring.exporter_port),
    }


def write_configuration(
    line: PlantLine,
    directory: Path,
    monitoring: Monitoring,
    connector_ports: Mapping[str, int],
    *,
    api: tuple[int, Path] | None = None,
    cloud_bridge: int | None = None,
) -> Path:
    """Write the line's rule file and prometheus.yml into `directory`; return prometheus.yml's path.

    `api` is the KPI API's port and bearer token file, when the line runs the historian;
    `cloud_bridge` the cloud bridge's health port, when it runs the bridge (`--cloud`).
    """
    view = line_view(line, cloud_bridge=cloud_bridge is not None)
    directory.mkdir(parents=True, exist_ok=True)
    rules = directory / "rules.yml"
    rules.write_text(rules_yaml(view))
    targets = Targets(
        connectors={group: f"{ADDRESS}:{port}" for group, port in connector_ports.items()},
        broker_exporter=f"{ADDRESS}:{monitoring.exporter_port}" if monitoring.exporter else None,
        pki=f"{ADDRESS}:{monitoring.pki_port}",
        api=None if api is None else f"{ADDRESS}:{api[0]}",
        api_token_file=None if api is None else str(api[1].resolve()),
        cloud_bridge=None if cloud_bridge is None else f"{ADDRESS}:{cloud_bridge}",
    )
    config = prometheus_config(view, targets, rule_files=[str(rules.resolve())], scrape_interval="5s")
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_argv(program: str, config: Path, data: Path, monitoring: Monitoring) -> list[str]:
    return [
        program,
        f"--config.file={config.resolve()}",
        f"--storage.tsdb.path={data.resolve()}",
        f"--web.listen-address={ADDRESS}:{monitoring.prometheus_port}",
        "--storage.tsdb.retention.time=7d",
    ]


def serve_certificate_facts(monitoring: Monitoring) -> PkiMetrics:
    """Serve the certificate facts on the monitoring's port from this process; return the gauges to set."""
    metrics = PkiMetrics.create()
    serve(metrics.registry, ADDRESS, monitoring.pki_port)
    return metrics
