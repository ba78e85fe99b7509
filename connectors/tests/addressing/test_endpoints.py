"""Endpoints of every protocol parse in one place, with the protocol's default port."""

from __future__ import annotations

import pytest

from plantline.connectors.addressing.cip import CipEndpoint
from plantline.connectors.addressing.endpoints import DEFAULT_PORTS, PlcProtocol, parse_endpoint
from plantline.connectors.addressing.mqtt import broker_url
from plantline.connectors.addressing.opcua import OpcUaEndpoint
from plantline.connectors.addressing.s7 import S7Endpoint


@pytest.mark.parametrize(
    ("protocol", "endpoint", "expected"),
    [
        ("opcua", "opc.tcp://plc1.local/ua", OpcUaEndpoint("plc1.local", 4840)),
        ("opcua", "opc.tcp://[fd00::5]:4841/", OpcUaEndpoint("fd00::5", 4841)),
        ("s7", "s7://10.0.0.6?rack=0&slot=2", S7Endpoint("10.0.0.6", 102, rack=0, slot=2)),
        ("cip", "cip://10.0.0.7:2222/1", CipEndpoint("10.0.0.7", 2222, 1)),
        ("cip", "cip://10.0.0.7", CipEndpoint("10.0.0.7", 44818)),
    ],
)
def test_an_endpoint_parses_with_its_protocols_default_port(
    protocol: PlcProtocol, endpoint: str, expected: object
) -> None:
    assert parse_endpoint(protocol, endpoint) == expected


def test_the_default_ports_are_the_protocols_registered_ones() -> None:
    assert DEFAULT_PORTS == {"opcua": 4840, "s7": 102, "cip": 44818}


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://x", "'http://x': expected opc.tcp://HOST:PORT/..."),
        ("opc.tcp:///path", "expected opc.tcp://"),
        ("opc.tcp://h:99999/", "the port is not a number within 1..65535"),
    ],
)
def test_a_bad_opcua_endpoint_says_what_is_wrong(endpoint: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^endpoint: ") as caught:
        parse_endpoint("opcua", endpoint)
    assert message in str(caught.value)


def test_a_broker_url_brackets_an_ipv6_host() -> None:
    assert broker_url("127.0.0.1", 8883) == "mqtts://127.0.0.1:8883"
    assert broker_url("fd00::1", 1883) == "mqtts://[fd00::1]:1883"
