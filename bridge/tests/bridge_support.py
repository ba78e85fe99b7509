"""A line's edge-node session, a host session and a bridge configuration, for the bridge's unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plantline.bridge.config import BridgeConfig, parse_config
from plantline.connectors.config import Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.session import BdSeqStore, EdgeNodeSession, Outgoing
from plantline.connectors.sparkplug.host import HostSession, Release

T0 = 1_763_800_000_000
TAGS = {
    "filler": [
        Tag(signal="state.run", address="ns=2;s=F.run", datatype="bool"),
        Tag(signal="counter.good", address="ns=2;s=F.good", datatype="uint32"),
        Tag(signal="process.temperature", address="ns=2;s=F.t", datatype="double"),
    ],
    "capper": [Tag(signal="process.torque", address="ns=2;s=C.q", datatype="double")],
}


def config_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "port": 1883, "insecure_plaintext": True}]},
        "kafka": {"bootstrap_servers": "127.0.0.1:9093", "security_protocol": "PLAINTEXT"},
        "lines": [
            {
                "site": "site1",
                "line": "line1",
                "group_id": "site1",
                "edge_node_ids": ["line1"],
                "machines": {"filler": "filler", "capper": "capper"},
            }
        ],
        "topics": {"filler": "plantline.filler", "capper": "plantline.capper"},
    }
    data.update(overrides)
    return data


def bridge_config(**overrides: Any) -> BridgeConfig:
    return parse_config(config_data(**overrides), source="test")


def edge(tmp_path: Path, *, edge_node_id: str = "line1") -> EdgeNodeSession:
    session = EdgeNodeSession(
        group_id="site1", edge_node_id=edge_node_id, devices=TAGS, bdseq=BdSeqStore(tmp_path / f"b-{edge_node_id}")
    )
    session.prepare_connect()
    for device in TAGS:
        session.set_reachable(device, True)
    return session


def samples(device: str, ts: int, values: dict[str, Any], quality: Quality = Quality.GOOD) -> list[Sample]:
    return [Sample(device, signal, value, quality, ts) for signal, value in values.items()]


def releases(messages: list[Outgoing], host: HostSession[int] | None = None) -> list[Release[int]]:
    host = host if host is not None else HostSession[int](group_ids=["site1"])
    out: list[Release[int]] = []
    for index, message in enumerate(messages):
        out += host.receive(index, message.topic, message.payload, T0).released
    return out
