"""Pure renderer: a PlantLine and a cloud target -> the configuration of the cloud bridge that follows it.

A cloud target comes from one of two doors, both read into the same `CloudSettings` and made a
`CloudTarget` by `cloud_target`, so the bridge's Kafka settings are decided in one place:

- a URL (`plantline up --cloud`, `parse_cloud_url`):

      kafka://[USER@]HOST:PORT[,HOST:PORT...][?OPTIONS]     any Kafka
      eventhubs://NAMESPACE.servicebus.windows.net?password_file=FILE   Azure Event Hubs' Kafka endpoint

  OPTIONS: `security` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; SASL_SSL when a user or password
  file is given, else PLAINTEXT), `mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), `password_file`,
  `ca` (a CA file), `naming` (`eventhubs`: `<type>-equipment` and `dead-letter`, the cloud stack's
  hubs, the default for eventhubs://; `prefixed`: `<prefix>.<type>` and `<prefix>.deadletter`, the
  default for kafka://), `topic_prefix` (default `plantline`), `dlq` (the dead-letter topic),
  `partitions` (create missing topics with that many; 0: they must exist; default 3 for Kafka, 0
  for Event Hubs), `compression`, `linger_ms`, `max_record_bytes`. A password never goes in the
  URL: it is read from `password_file`, so the URL may be logged.
- a PlantLine's `spec.cloud` (the operator, `spec_settings`), whose Secrets are mounted as files.

The bridge is the line's Sparkplug host identity (`<site>-<line>-host`, the historian's) with its
own client id (`<site>-<line>-bridge`); each machine's samples go to the topic of its
`equipmentType` (its id when unset). The data is YAML-ready; the bridge validates it when it starts.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plantline.operator.api import CloudSpec, PlantLine
from plantline.operator.render import host_tls_files, topology

HEALTH_PORT = 9410
EVENT_HUBS_PORT = 9093
EVENT_HUBS_DOMAIN = "servicebus.windows.net"
EVENT_HUBS_USERNAME = "$ConnectionString"
# The cloud stack's names (plantline.stacks.sizing): a hub per equipment type, and the dead letters'.
HUB_SUFFIX = "-equipment"
DEAD_LETTER_HUB = "dead-letter"
TopicNaming = Literal["eventHubs", "prefixed"]
_SCHEMES = ("kafka", "eventhubs")
_OPTIONS = {"security", "mechanism", "password_file", "ca", "naming", "topic_prefix", "dlq", "partitions",
            "compression", "linger_ms", "max_record_bytes"}  # fmt: skip
_NAMINGS: dict[str, TopicNaming] = {"eventhubs": "eventHubs", "prefixed": "prefixed"}


class CloudTargetInvalid(ValueError):
    """The cloud target URL cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class CloudSettings:
    """A cloud target as either door names it; None fields take the defaults of Kafka or Event Hubs."""

    bootstrap_servers: str
    event_hubs: bool = False
    security: str | None = None
    mechanism: str = "PLAIN"
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    naming: TopicNaming | None = None
    topic_prefix: str = "plantline"
    topics: Mapping[str, str] = field(default_factory=dict)  # equipment type -> topic, over the naming
    dead_letter: str | None = None
    partitions: int | None = None  # None: 3 for Kafka, none (they must exist) for Event Hubs; 0: none
    compression: str | None = None
    producer: Mapping[str, int] = field(default_factory=dict)  # linger_ms, max_record_bytes


@dataclass(frozen=True)
class CloudTarget:
    """Where the bridge produces: the bridge's `kafka` settings (as data) and how topics are named."""

    kafka: dict[str, Any]
    endpoint: str  # the first bootstrap server, for messages
    naming: TopicNaming = "prefixed"
    topic_prefix: str = "plantline"
    topics: Mapping[str, str] = field(default_factory=dict)

    def topic(self, equipment_type: str) -> str:
        """Return the topic (Event Hub) of an equipment type's samples."""
        if equipment_type in self.topics:
            return self.topics[equipment_type]
        if self.naming == "eventHubs":
            return f"{equipment_type}{HUB_SUFFIX}"
        return f"{self.topic_prefix}.{equipment_type}"


def cloud_target(settings: CloudSettings) -> CloudTarget:
    """Return the target the settings name, with the defaults of Kafka or Event Hubs filled in."""
    event_hubs = settings.event_hubs
    user = settings.username or (EVENT_HUBS_USERNAME if event_hubs else None)
    secured = user is not None or settings.password_file is not None
    security = (settings.security or ("SASL_SSL" if secured or event_hubs else "PLAINTEXT")).upper()
    naming = settings.naming or ("eventHubs" if event_hubs else "prefixed")
    prefix = settings.topic_prefix
    dead_letter = settings.dead_letter or (DEAD_LETTER_HUB if naming == "eventHubs" else f"{prefix}.deadletter")
    kafka: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": security,
                             "dlq_topic": dead_letter}  # fmt: skip
    if settings.ca_file is not None:
        kafka["ca_file"] = settings.ca_file
    if security.startswith("SASL_"):
        kafka["sasl"] = {"mechanism": settings.mechanism.upper(), "username": user or "",
                         "password_file": settings.password_file}  # fmt: skip
    partitions = settings.partitions if settings.partitions is not None else 0 if event_hubs else 3
    if partitions:
        kafka["create_topics_partitions"] = partitions
    kafka["producer"] = {"compression": settings.compression or ("gzip" if event_hubs else "lz4"), **settings.producer}
    endpoint = settings.bootstrap_servers.split(",")[0]
    return CloudTarget(kafka, endpoint, naming, prefix, dict(settings.topics))


def _options(query: str) -> dict[str, str]:
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise CloudTargetInvalid(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_OPTIONS))})")
    if "naming" in options and options["naming"] not in _NAMINGS:
        raise CloudTargetInvalid(f"naming: {options['naming']!r}: expected eventhubs or prefixed")
    return options


def _int(options: dict[str, str], name: str) -> int | None:
    if name not in options:
        return None
    try:
        return int(options[name])
    except ValueError:
        raise CloudTargetInvalid(f"{name}: {options[name]!r} is not a whole number") from None


def parse_cloud_url(url: str) -> CloudTarget:
    """Return the cloud target a URL names, or raise CloudTargetInvalid."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise CloudTargetInvalid(f"{url.split('://', maxsplit=1)[0]!r}: expected kafka:// or eventhubs://")
    if parts.password is not None or ":" in parts.netloc.rpartition("@")[0]:
        raise CloudTargetInvalid("a password does not go in the URL: put it in a file and pass password_file=FILE")
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise CloudTargetInvalid("no host: expected kafka://HOST:PORT or eventhubs://NAMESPACE.servicebus.windows.net")
    options = _options(parts.query)
    event_hubs = parts.scheme == "eventhubs"
    if event_hubs:
        hosts = hosts if ":" in hosts else f"{hosts}:{EVENT_HUBS_PORT}"
        if "password_file" not in options:
            raise CloudTargetInvalid("eventhubs:// needs password_file=FILE (the connection string of the send rule)")
    producer = {name: value for name in ("linger_ms", "max_record_bytes") if (value := _int(options, name)) is not None}
    settings = CloudSettings(
        bootstrap_servers=hosts,
        event_hubs=event_hubs,
        security=options.get("security"),
        mechanism=options.get("mechanism", "PLAIN"),
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password_file=options.get("password_file"),
        ca_file=options.get("ca"),
        naming=_NAMINGS[options["naming"]] if "naming" in options else None,
        topic_prefix=options.get("topic_prefix", "plantline"),
        dead_letter=options.get("dlq"),
        partitions=_int(options, "partitions"),
        compression=options.get("compression"),
        producer=producer,
    )
    return cloud_target(settings)


def spec_settings(cloud: CloudSpec, *, password_file: Path | None, ca_file: Path | None) -> CloudSettings:
    """Return the settings of a (validated) `spec.cloud`, its Secrets read from the files they are mounted as."""
    namespace = cloud.event_hubs_namespace
    servers = (
        f"{namespace}.{EVENT_HUBS_DOMAIN}:{EVENT_HUBS_PORT}" if namespace else ",".join(cloud.bootstrap_servers or ())
    )
    return CloudSettings(
        bootstrap_servers=servers,
        event_hubs=namespace is not None,
        security=cloud.security_protocol,
        mechanism=cloud.sasl_mechanism,
        username=cloud.username,
        password_file=str(password_file) if cloud.credentials_secret_ref and password_file else None,
        ca_file=str(ca_file) if cloud.ca_secret_ref and ca_file else None,
        naming=cloud.topics.naming,
        topic_prefix=cloud.topics.prefix,
        topics=dict(cloud.topics.by_equipment_type),
        dead_letter=cloud.topics.dead_letter,
        partitions=cloud.partitions,
        compression=cloud.compression,
    )


def equipment_types(line: PlantLine) -> dict[str, str]:
    """Return each machine's equipment type (its id when the PlantLine sets none)."""
    return {m.id: m.equipment_type or m.id for m in line.spec.machines}


def render_bridge_config(
    line: PlantLine,
    target: CloudTarget,
    *,
    tls_dir: Path,
    status_file: Path | None = None,
    health_port: int = HEALTH_PORT,
    health_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """Return the cloud bridge's configuration for the line (plantline-bridge's BridgeConfig, as data)."""
    spec = line.spec
    tls = host_tls_files(spec, tls_dir)
    machines = equipment_types(line)
    config: dict[str, Any] = {
        "mqtt": {
            "brokers": [{"host": spec.broker.host, "port": spec.broker.port, "tls": tls}],
            "client_id": f"{spec.site}-{spec.line}-bridge",
        },
        "kafka": target.kafka,
        "lines": [
            {
                "site": spec.site,
                "line": spec.line,
                "group_id": spec.sparkplug_group,
                "edge_node_ids": [connector.edge_node_id for connector in topology(spec)],
                "machines": machines,
            }
        ],
        "topics": {kind: target.topic(kind) for kind in sorted(set(machines.values()))},
        "health": {"address": health_address, "port": health_port},
    }
    if status_file is not None:
        config["status_file"] = str(status_file)
    return config
