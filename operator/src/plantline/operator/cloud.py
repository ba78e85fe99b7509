"""Pure renderer: a PlantLine and a cloud target -> the configuration of the cloud bridge that follows it.

A cloud target is a URL (`plantline up --cloud`):

    kafka://[USER@]HOST:PORT[,HOST:PORT...][?OPTIONS]     any Kafka
    eventhubs://NAMESPACE.servicebus.windows.net?password_file=FILE   Azure Event Hubs' Kafka endpoint

OPTIONS: `security` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; SASL_SSL when a user or password
file is given, else PLAINTEXT), `mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), `password_file`,
`ca` (a CA file), `topic_prefix` (default `plantline`: topic `<prefix>.<equipment type>`),
`dlq` (default `<prefix>.deadletter`), `partitions` (create missing topics with that many; 0: they
must exist; default 3 for Kafka, 0 for Event Hubs), `compression`, `linger_ms`, `max_record_bytes`.
A password never goes in the URL: it is read from `password_file`, so the URL may be logged.

The bridge is the line's Sparkplug host identity (`<site>-<line>-host`, the historian's) with its
own client id (`<site>-<line>-bridge`); each machine's samples go to the topic of its
`equipmentType` (its id when unset). The data is YAML-ready; the bridge validates it when it starts.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantline.operator.api import PlantLine
from plantline.operator.render import host_tls_files, topology

HEALTH_PORT = 9410
EVENT_HUBS_PORT = 9093
_SCHEMES = ("kafka", "eventhubs")
_OPTIONS = {"security", "mechanism", "password_file", "ca", "topic_prefix", "dlq", "partitions", "compression",
            "linger_ms", "max_record_bytes"}  # fmt: skip


class CloudTargetInvalid(ValueError):
    """The cloud target URL cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class CloudTarget:
    """Where the bridge produces: the bridge's `kafka` settings (as data) and the topic prefix."""

    kafka: dict[str, Any]
    topic_prefix: str
    endpoint: str  # the first bootstrap server, for messages

    def topic(self, equipment_type: str) -> str:
        return f"{self.topic_prefix}.{equipment_type}"


def _options(query: str) -> dict[str, str]:
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise CloudTargetInvalid(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(_OPTIONS))})")
    return options


def _int(options: dict[str, str], name: str, default: int | None) -> int | None:
    if name not in options:
        return default
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
    user = urllib.parse.unquote(parts.username) if parts.username else ("$ConnectionString" if event_hubs else None)
    secured = user is not None or "password_file" in options
    security = options.get("security", "SASL_SSL" if secured or event_hubs else "PLAINTEXT").upper()
    prefix = options.get("topic_prefix", "plantline")
    kafka: dict[str, Any] = {"bootstrap_servers": hosts, "security_protocol": security,
                             "dlq_topic": options.get("dlq", f"{prefix}.deadletter")}  # fmt: skip
    if "ca" in options:
        kafka["ca_file"] = options["ca"]
    if security.startswith("SASL_"):
        kafka["sasl"] = {"mechanism": options.get("mechanism", "PLAIN").upper(), "username": user or "",
                         "password_file": options.get("password_file")}  # fmt: skip
    partitions = _int(options, "partitions", 0 if event_hubs else 3)
    if partitions:
        kafka["create_topics_partitions"] = partitions
    producer: dict[str, Any] = {"compression": options.get("compression", "gzip" if event_hubs else "lz4")}
    for name in ("linger_ms", "max_record_bytes"):
        if name in options:
            producer[name] = _int(options, name, None)
    kafka["producer"] = producer
    return CloudTarget(kafka, prefix, hosts.split(",")[0])


def equipment_types(line: PlantLine) -> dict[str, str]:
    """Return each machine's equipment type (its id when the PlantLine sets none)."""
    return {m.id: m.equipment_type or m.id for m in line.spec.machines}


def render_bridge_config(
    line: PlantLine, target: CloudTarget, *, tls_dir: Path, status_file: Path, health_port: int = HEALTH_PORT
) -> dict[str, Any]:
    """Return the cloud bridge's configuration for the line (plantline-bridge's BridgeConfig, as data)."""
    spec = line.spec
    tls = host_tls_files(spec, tls_dir)
    machines = equipment_types(line)
    return {
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
        "health": {"address": "127.0.0.1", "port": health_port},
        "status_file": str(status_file),
    }
