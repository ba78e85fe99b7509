"""The bridge's configuration, validated, with errors that name their path; pure.

Which Kafka topic a machine's samples go to is decided here, once: each line lists its machines
with their equipment type, and `topics` maps every equipment type to its topic (an Event Hub). A
machine whose type has no topic is refused when the configuration is read, naming the machine.
Secrets (the SASL password, an Event Hubs connection string, an OAuth client secret) are read from
files, never written in the configuration, so that the configuration may be shown and logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from plantline.connectors.config import ConfigError, HostMqttSettings, problems_of, read_yaml

DEFAULT_HEALTH_PORT = 9410
# Kafka topic names: legal characters and length (Kafka's own rule; Event Hub names are a subset).
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
EVENT_HUBS_USERNAME = "$ConnectionString"  # what Event Hubs' Kafka endpoint takes as the SASL PLAIN user


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(HostMqttSettings):
    """The core broker the bridge subscribes at, as a (non-primary) Sparkplug host application."""

    client_id: Annotated[str, Field(min_length=1, max_length=64)] = "plantline-bridge"


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class SaslSettings(_Strict):
    """SASL credentials: PLAIN or SCRAM with a password file, or OAUTHBEARER with client credentials.

    Azure Event Hubs takes PLAIN with the user `$ConnectionString` and the namespace's (or hub's)
    connection string as the password, or OAUTHBEARER with a Microsoft Entra ID application.
    """

    mechanism: SaslMechanism = "PLAIN"
    username: str = EVENT_HUBS_USERNAME
    password_file: Path | None = None  # PLAIN and SCRAM; Kubernetes mounts the Secret here
    token_endpoint: str | None = None  # OAUTHBEARER (OIDC client credentials)
    client_id: str | None = None
    client_secret_file: Path | None = None
    scope: str | None = None  # Event Hubs: https://<namespace>.servicebus.windows.net/.default

    @model_validator(mode="after")
    def _credentials(self) -> SaslSettings:
        if self.mechanism == "OAUTHBEARER":
            missing = [n for n in ("token_endpoint", "client_id", "client_secret_file") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"OAUTHBEARER needs {', '.join(missing)}")
        elif self.password_file is None:
            raise ValueError(f"{self.mechanism} needs password_file")
        return self


class ProducerSettings(_Strict):
    """How the producer batches: linger and batch limits that give 100-1000 records per batch."""

    linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 20
    batch_records: Annotated[int, Field(ge=1, le=1_000_000)] = 1000  # librdkafka batch.num.messages
    batch_bytes: Annotated[int, Field(ge=1024, le=2**31 - 1)] = 1_000_000  # batch.size
    # Event Hubs compresses gzip only (its Kafka endpoint); any Kafka takes the others too.
    compression: Compression = "lz4"
    # 0: never give up on a record (the MQTT message stays unacknowledged while Kafka is away).
    message_timeout_ms: Annotated[int, Field(ge=0)] = 0
    max_record_bytes: Annotated[int, Field(ge=4096, le=100 * 1024 * 1024)] = 1_000_000  # Event Hubs' limit
    queue_records: Annotated[int, Field(ge=1000, le=10_000_000)] = 200_000  # records waiting in the client


class KafkaSettings(_Strict):
    """The Kafka cluster (or Event Hubs namespace, port 9093) the bridge produces to."""

    bootstrap_servers: Annotated[str, Field(min_length=1)]
    security_protocol: SecurityProtocol = "SASL_SSL"
    ca_file: Path | None = None  # None: the system's CA store (Event Hubs' public certificates)
    sasl: SaslSettings | None = None
    producer: ProducerSettings = ProducerSettings()
    dlq_topic: Annotated[str, Field(pattern=_TOPIC.pattern)] = "plantline.deadletter"
    client_id: Annotated[str, Field(min_length=1)] = "plantline-bridge"
    # Create missing topics with this many partitions (a plain Kafka, e.g. under `plantline up`);
    # None: every topic must exist (Event Hubs are made by the cloud stack).
    create_topics_partitions: Annotated[int, Field(ge=1, le=1024)] | None = None

    @model_validator(mode="after")
    def _sasl_when_needed(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and self.sasl is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl")
        if not self.security_protocol.startswith("SASL_") and self.sasl is not None:
            raise ValueError(f"sasl is set but security_protocol {self.security_protocol} does not use it")
        return self

    @property
    def endpoint(self) -> str:
        """Return the first bootstrap server: how errors name the cluster."""
        return self.bootstrap_servers.split(",")[0].strip()


class LineRoute(_Strict):
    """One line: its Sparkplug group and edge nodes, and each machine's equipment type."""

    site: Annotated[str, Field(min_length=1)]
    line: Annotated[str, Field(min_length=1)]
    group_id: Annotated[str, Field(min_length=1)]
    edge_node_ids: Annotated[list[str], Field(min_length=1)]
    machines: Annotated[dict[str, str], Field(min_length=1)]  # device id -> equipment type


class HealthSettings(_Strict):
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_HEALTH_PORT


class BridgeConfig(_Strict):
    mqtt: MqttSettings
    kafka: KafkaSettings
    lines: Annotated[list[LineRoute], Field(min_length=1)]
    topics: Annotated[dict[str, str], Field(min_length=1)]  # equipment type -> Kafka topic (Event Hub)
    health: HealthSettings = HealthSettings()
    # MQTT messages taken from the broker and not yet acknowledged by Kafka (back-pressure).
    max_pending_messages: Annotated[int, Field(ge=1, le=100_000)] = 5000
    status_file: Path | None = None  # counters and state, for `plantline status`

    @model_validator(mode="after")
    def _routes(self) -> BridgeConfig:
        problems = [f"topics.{kind}: {topic!r} is not a Kafka topic name" for kind, topic in self.topics.items()
                    if not _TOPIC.fullmatch(topic)]  # fmt: skip
        seen: set[tuple[str, str]] = set()
        for index, line in enumerate(self.lines):
            for node in line.edge_node_ids:
                if (line.group_id, node) in seen:
                    problems.append(f"lines[{index}].edge_node_ids: {line.group_id}/{node} belongs to two lines")
                seen.add((line.group_id, node))
            for machine, kind in line.machines.items():
                if kind not in self.topics:
                    problems.append(
                        f"lines[{index}].machines.{machine}: equipment type {kind!r} has no topic"
                        f" (add topics.{kind}; known: {', '.join(sorted(self.topics))})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def group_ids(self) -> list[str]:
        return sorted({line.group_id for line in self.lines})


def parse_config(data: Any, *, source: str) -> BridgeConfig:
    """Return the validated configuration from parsed YAML data, or raise ConfigError naming each problem."""
    try:
        return BridgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_of(exc)) from None


def load_config(path: Path) -> BridgeConfig:
    """Return the validated configuration read from a YAML file, or raise ConfigError."""
    return parse_config(read_yaml(path), source=str(path))
