"""The historian's and the KPI API's configuration, validated, with errors that name their path.

The lines it follows say which Sparkplug group and edge nodes make up each line, and how each
machine's KPIs are computed: the connectors' own `KpiSettings` and `ShiftCalendarSettings`, so the
API computes a machine's OEE exactly as its edge node does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from plantline.connectors.config import ConfigError, HostMqttSettings, KpiSettings, ShiftCalendarSettings, read_yaml
from plantline.connectors.kpi import KpiConfig
from plantline.connectors.kpi.settings import engine_config

DSN_ENV = "PLANTLINE_PG_DSN"  # overrides database.dsn: an existing PostgreSQL
PASSWORD_ENV = "PLANTLINE_PG_PASSWORD"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(HostMqttSettings):
    """The broker the historian subscribes at, as a Sparkplug host application."""

    client_id: Annotated[str, Field(min_length=1, max_length=64)] = "plantline-historian"


class DatabaseSettings(_Strict):
    dsn: str = ""  # libpq connection string; $PLANTLINE_PG_DSN overrides it
    password_file: Path | None = None  # never in the DSN: the DSN may be logged

    def conninfo(self) -> str:
        """Return the connection string to use, with the password from the environment or its file."""
        dsn = os.environ.get(DSN_ENV) or self.dsn
        if not dsn:
            raise ValueError(f"database.dsn is empty and ${DSN_ENV} is not set")
        password = os.environ.get(PASSWORD_ENV)
        if password is None and self.password_file is not None:
            password = self.password_file.read_text(encoding="utf-8").strip()
        return dsn if password is None else f"{dsn} password={password}"


class LineSettings(_Strict):
    """One line: where its Sparkplug data comes from and how its machines' KPIs are computed."""

    site: Annotated[str, Field(min_length=1)]
    line: Annotated[str, Field(min_length=1)]
    group_id: Annotated[str, Field(min_length=1)]
    edge_node_ids: Annotated[list[str], Field(min_length=1)]
    shifts: ShiftCalendarSettings | None = None
    machines: dict[str, KpiSettings] = Field(default_factory=dict)  # device_id -> its KPI settings

    def kpi_config(self, machine: str) -> KpiConfig:
        """Return the KPI engine configuration of `machine`, as its connector builds it."""
        return engine_config(self.machines.get(machine, KpiSettings()), self.shifts)


class RetentionSettings(_Strict):
    """How long each table keeps its rows, in days."""

    samples_days: Annotated[int, Field(ge=1)] = 30
    rollup_1m_days: Annotated[int, Field(ge=1)] = 90
    rollup_5m_days: Annotated[int, Field(ge=1)] = 365
    rollup_1h_days: Annotated[int, Field(ge=1)] = 1830
    kpi_days: Annotated[int, Field(ge=1)] = 1830  # KPI minutes and the edge's KPI snapshots
    events_days: Annotated[int, Field(ge=1)] = 1830  # machine states and faults


class IngestSettings(_Strict):
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 50_000  # per COPY batch and commit
    linger_ms: Annotated[int, Field(ge=0, le=10_000)] = 50  # how long a batch waits for more rows
    partitions_ahead_days: Annotated[int, Field(ge=1, le=60)] = 3
    refresh_interval_s: Annotated[float, Field(gt=0)] = 5.0  # rollups and KPI minutes


class ApiSettings(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8480
    # Bearer tokens of the read-only role, one per line; None: no token is accepted.
    token_file: Path | None = None
    # Server TLS; with client_ca_file, clients may authenticate with a certificate from that CA.
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    # Worker processes: the KPI engine's replays are Python, so one process uses one core.
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    max_raw_range_s: Annotated[int, Field(ge=60)] = 6 * 3600
    max_points: Annotated[int, Field(ge=10)] = 10_000
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 500

    @model_validator(mode="after")
    def _tls_pairs(self) -> ApiSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("client_ca_file (mutual TLS) needs cert_file and key_file")
        return self


class HistorianConfig(_Strict):
    mqtt: MqttSettings
    database: DatabaseSettings
    lines: Annotated[list[LineSettings], Field(min_length=1)]
    retention: RetentionSettings = RetentionSettings()
    ingest: IngestSettings = IngestSettings()
    api: ApiSettings = ApiSettings()
    status_file: Path | None = None  # the historian writes its lag and counters here, for `plantline status`

    @model_validator(mode="after")
    def _unique_lines(self) -> HistorianConfig:
        seen: set[tuple[str, str]] = set()
        for index, line in enumerate(self.lines):
            for node in line.edge_node_ids:
                if (line.group_id, node) in seen:
                    raise ValueError(f"lines[{index}].edge_node_ids: {line.group_id}/{node} belongs to two lines")
                seen.add((line.group_id, node))
        return self

    @property
    def group_ids(self) -> list[str]:
        return sorted({line.group_id for line in self.lines})

    def line_of(self, group_id: str, edge_node_id: str) -> LineSettings | None:
        for line in self.lines:
            if line.group_id == group_id and edge_node_id in line.edge_node_ids:
                return line
        return None

    def kpi_config(self, group_id: str, edge_node_id: str, device_id: str) -> KpiConfig:
        """Return a machine's KPI engine configuration from its line (the engine's defaults for others)."""
        line = self.line_of(group_id, edge_node_id)
        return KpiConfig() if line is None else line.kpi_config(device_id)


def parse_config(data: Any, *, source: str) -> HistorianConfig:
    try:
        return HistorianConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}" if where else item["msg"])
        raise ConfigError(source, problems) from None


def load_config(path: Path) -> HistorianConfig:
    """Return the validated configuration read from a YAML file, or raise ConfigError."""
    return parse_config(read_yaml(path), source=str(path))
