"""From what the Sparkplug host released to Kafka records and dead letters; pure.

Schema `plantline.sample` version 1 (docs/bridge.md): one JSON object per sample, UTF-8, in the
topic of the machine's equipment type, keyed by the machine (`<group>/<edge node>/<device>`, the
partition key: a machine's samples stay in order). Every record has the headers `content-type:
application/json` and `schema: plantline.sample/1`. Its `id`, `<group>/<edge node>/<device>/<signal>/
<source ts>`, is stable across re-deliveries: a consumer that keeps the first record of each id
sees every sample once (the historian's unique key is the same).

A message the bridge cannot turn into records becomes a dead letter (schema `plantline.deadletter/1`,
the original MQTT payload as the record's value, the reason in headers): undecodable payloads, a
line or machine the configuration does not know, values JSON cannot carry, records too large.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

from plantline.bridge.config import BridgeConfig
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import Release

SCHEMA = "plantline.sample"
SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"
DEAD_LETTER_SCHEMA = "plantline.deadletter/1"
Headers = list[tuple[str, str | bytes | None]]  # as confluent-kafka takes them
SAMPLE_HEADERS: Headers = [("content-type", CONTENT_TYPE.encode()), ("schema", f"{SCHEMA}/{SCHEMA_VERSION}".encode())]

# Why a message went to the dead-letter topic (the `reason` header and the metric's label).
UNDECODABLE = "undecodable"  # not a Sparkplug topic or payload, or data no birth ever resolved
UNKNOWN_LINE = "unknown-line"  # an edge node no configured line lists
UNKNOWN_MACHINE = "unknown-machine"  # a device its line does not list
UNSUPPORTED_VALUE = "unsupported-value"  # a data set or template: no JSON value of schema 1
TOO_LARGE = "too-large"  # a record above kafka.producer.max_record_bytes
REASONS = (UNDECODABLE, UNKNOWN_LINE, UNKNOWN_MACHINE, UNSUPPORTED_VALUE, TOO_LARGE)

_QUALITY = {"good": '"good"', "uncertain": '"uncertain"', "bad": '"bad"'}
_DATA = (MessageType.DDATA, MessageType.DBIRTH)


class Record:
    """One Kafka record to produce."""

    __slots__ = ("key", "topic", "value")

    def __init__(self, topic: str, key: bytes, value: bytes) -> None:
        self.topic, self.key, self.value = topic, key, value


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (or part of one) that goes to the dead-letter topic, with its original bytes."""

    reason: str
    detail: str
    mqtt_topic: str
    payload: bytes
    key: bytes = b""  # the machine when known, so a machine's dead letters stay in order too

    def headers(self) -> Headers:
        return [
            ("content-type", b"application/vnd.sparkplug.b+protobuf"),
            ("schema", DEAD_LETTER_SCHEMA.encode()),
            ("reason", self.reason.encode()),
            ("detail", self.detail.encode()[:1024]),
            ("mqtt-topic", self.mqtt_topic.encode()),
        ]


@dataclass(slots=True)
class Made:
    """What one released message makes: records (in metric order) and dead letters."""

    records: list[Record] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def _value_json(value: object) -> str | None:
    """Return the JSON text of a value of schema 1, None for values it cannot carry."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else _NON_FINITE[str(value)]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, bytes):
        return json.dumps(base64.b64encode(value).decode())
    if isinstance(value, tuple) and all(isinstance(v, int | str) or _finite(v) for v in value):
        return json.dumps(list(value))
    return None  # data sets, templates, arrays holding NaN


def _finite(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value)


# JSON has no NaN or infinities: they travel as the strings JavaScript prints for them.
_NON_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


@dataclass(frozen=True, slots=True)
class _Machine:
    topic: str
    key: bytes
    head: str  # the record's fields that are the machine's, JSON, without the closing brace
    id_prefix: str  # JSON-escaped `<group>/<edge>/<device>/`


def _machine(group: str, edge: str, device: str, site: str, line: str, kind: str, topic: str) -> _Machine:
    key = f"{group}/{edge}/{device}"
    head = json.dumps(
        {"v": SCHEMA_VERSION, "site": site, "line": line, "machine": device, "equipment_type": kind,
         "group_id": group, "edge_node_id": edge},
        separators=(",", ":"),
    )[:-1]  # fmt: skip
    return _Machine(topic, key.encode(), head, json.dumps(key + "/")[1:-1])


class Router:
    """Makes the records of released messages, per the configuration's lines and topics."""

    def __init__(self, config: BridgeConfig) -> None:
        self.max_record_bytes = config.kafka.producer.max_record_bytes
        self._lines = {(r.group_id, n): r for r in config.lines for n in r.edge_node_ids}
        self._machines: dict[tuple[str, str, str], _Machine] = {}
        for (group, edge), route in self._lines.items():
            for device, kind in route.machines.items():
                topic = config.topics[kind]
                self._machines[group, edge, device] = _machine(group, edge, device, route.site, route.line, kind, topic)
        self._signals: dict[str, str] = {}
        self._datatypes = {d: json.dumps(d.name) for d in DataType}

    def make(self, release: Release[Any], mqtt_topic: str, payload: bytes) -> Made:
        """Return the records and dead letters of one released message (`payload`: its original bytes)."""
        made = Made()
        if release.error is not None:
            made.dead.append(DeadLetter(UNDECODABLE, release.error, mqtt_topic, payload))
            return made
        node = release.node
        if release.kind not in _DATA or node is None or release.device_id is None:
            return made  # STATE, commands, deaths, the node's own metrics: the session's, not samples
        if (node.group_id, node.edge_node_id) not in self._lines:
            why = f"edge node {node.group_id}/{node.edge_node_id} is in no configured line"
            made.dead.append(DeadLetter(UNKNOWN_LINE, why, mqtt_topic, payload))
            return made
        machine = self._machines.get((node.group_id, node.edge_node_id, release.device_id))
        if machine is None:
            why = f"machine {release.device_id} is not listed in line of {node.group_id}/{node.edge_node_id}"
            made.dead.append(DeadLetter(UNKNOWN_MACHINE, why, mqtt_topic, payload))
            return made
        self._samples(machine, release, mqtt_topic, payload, made)
        return made

    def _samples(self, machine: _Machine, release: Release[Any], mqtt_topic: str, payload: bytes, made: Made) -> None:
        tail = (
            f',"kind":"{release.kind.name if release.kind else ""}",'
            f'"seq":{_int_json(release.seq)},"bdseq":{_int_json(release.bdseq)}}}'
        )
        append, signal_json = made.records.append, self._signal_json
        for metric in release.metrics:
            value = _value_json(metric.value)
            if value is None:
                why = f"{metric.name}: a {metric.datatype.name} value has no JSON form in schema {SCHEMA_VERSION}"
                made.dead.append(DeadLetter(UNSUPPORTED_VALUE, why, mqtt_topic, payload, machine.key))
                continue
            text = (
                f'{machine.head},"id":"{machine.id_prefix}{signal_json(metric.name)[1:-1]}/{metric.timestamp_ms}",'
                f'"signal":{signal_json(metric.name)},"datatype":{self._datatypes[metric.datatype]},'
                f'"value":{value},"quality":{_QUALITY[metric.quality.value]},"ts":{metric.timestamp_ms},'
                f'"historical":{"true" if metric.historical else "false"}{tail}'
            ).encode()
            if len(text) > self.max_record_bytes:
                why = f"{metric.name}: the record has {len(text)} bytes, above {self.max_record_bytes}"
                made.dead.append(DeadLetter(TOO_LARGE, why, mqtt_topic, payload, machine.key))
                continue
            append(Record(machine.topic, machine.key, text))

    def _signal_json(self, name: str) -> str:
        found = self._signals.get(name)
        if found is None:
            found = self._signals[name] = json.dumps(name)
        return found


def _int_json(value: int | None) -> str:
    return "null" if value is None else str(value)


def sample_of(value: bytes) -> dict[str, Any]:
    """Return a record's JSON object (for consumers and tests), refusing another schema version."""
    data: dict[str, Any] = json.loads(value)
    if data.get("v") != SCHEMA_VERSION:
        raise ValueError(f"not a {SCHEMA} record of version {SCHEMA_VERSION}: v={data.get('v')!r}")
    return data


def dedupe(records: list[dict[str, Any]], seen: set[str] | None = None) -> list[dict[str, Any]]:
    """Return `records` without those whose `id` was seen before: the consumer's rule, as code."""
    seen = set() if seen is None else seen
    out = []
    for record in records:
        if record["id"] not in seen:
            seen.add(record["id"])
            out.append(record)
    return out
