"""The broker's own metrics: Mosquitto's `$SYS` topics, as the mqtt-exporter program exposes them.

Mosquitto publishes its counters on `$SYS/broker/...` every `sys_interval` (10 s). No Mosquitto
exporter is packaged by Debian, and the Go module proxy refuses `github.com/sapcc/mosquitto-exporter`;
`mqtt-exporter` (PyPI, MIT) runs, speaks mutual TLS, and turns a `$SYS` topic whose payload is a
number into a gauge: with `KEEP_FULL_TOPIC`, the last topic level becomes the metric name (after
`PROMETHEUS_PREFIX`) and the rest, lower-cased with `/` as `_`, the `topic` label. `EXPORTER_ENV`
is the configuration that makes these names; `BrokerMetric` derives each name and label once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

EXPORTER_PACKAGE: Final = "mqtt-exporter==1.12.1"
EXPORTER_PROGRAM: Final = "mqtt-exporter"
PREFIX: Final = "mosquitto_"
TOPIC_LABEL: Final = "topic"
SYS_TOPICS: Final = "$SYS/broker/#"

EXPORTER_ENV: Final = {
    "MQTT_TOPIC": SYS_TOPICS,
    "KEEP_FULL_TOPIC": "True",
    "PROMETHEUS_PREFIX": PREFIX,
    "TOPIC_LABEL": TOPIC_LABEL,
    "MQTT_ENABLE_TLS": "True",
    "MAX_METRICS": "200",
}
"""The exporter's settings (environment variables) that give the names below."""


@dataclass(frozen=True, slots=True)
class BrokerMetric:
    """One `$SYS` topic of the broker, and the gauge the exporter makes of it."""

    sys_topic: str
    help: str

    @property
    def name(self) -> str:
        return PREFIX + self.sys_topic.rsplit("/", 1)[1]

    @property
    def topic(self) -> str:
        return self.sys_topic.rsplit("/", 1)[0].lower().replace("/", "_")

    def selector(self, matchers: str = "") -> str:
        """Return the PromQL selector of this gauge, with further `matchers` (`a="b", ...`)."""
        inner = f'{TOPIC_LABEL}="{self.topic}"' + (f", {matchers}" if matchers else "")
        return f"{self.name}{{{inner}}}"


CLIENTS_CONNECTED: Final = BrokerMetric("$SYS/broker/clients/connected", "Clients connected")
MESSAGES_RECEIVED: Final = BrokerMetric("$SYS/broker/messages/received", "Messages of any kind received")
MESSAGES_SENT: Final = BrokerMetric("$SYS/broker/messages/sent", "Messages of any kind sent")
PUBLISH_RECEIVED: Final = BrokerMetric("$SYS/broker/publish/messages/received", "PUBLISH messages received")
PUBLISH_SENT: Final = BrokerMetric("$SYS/broker/publish/messages/sent", "PUBLISH messages sent")
PUBLISH_DROPPED: Final = BrokerMetric(
    "$SYS/broker/publish/messages/dropped", "PUBLISH messages dropped by queue or in-flight limits"
)
STORE_MESSAGES: Final = BrokerMetric("$SYS/broker/store/messages/count", "Messages held in the broker's store")
STORE_BYTES: Final = BrokerMetric("$SYS/broker/store/messages/bytes", "Payload bytes held in the broker's store")

BROKER_METRICS: Final = (
    CLIENTS_CONNECTED,
    MESSAGES_RECEIVED,
    MESSAGES_SENT,
    PUBLISH_RECEIVED,
    PUBLISH_SENT,
    PUBLISH_DROPPED,
    STORE_MESSAGES,
    STORE_BYTES,
)


def bridge_state(connection: str) -> BrokerMetric:
    """Return the gauge of a bridge's state (1 connected, 0 not), published with bridge notifications."""
    return BrokerMetric(f"$SYS/broker/connection/{connection}/state", f"Bridge {connection}: 1 while connected")
