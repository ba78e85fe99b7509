"""Endpoints of every protocol parse in one place, with the protocol's default port, or say what is wrong."""

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
    ("protocol", "endpoint", "message"),
    [
        ("opcua", "http://x", "'http://x': expected opc.tcp://HOST:PORT/..."),
        ("opcua", "opc.tcp:///path", "expected opc.tcp://"),
        ("opcua", "opc.tcp://h:99999/", "the port is not a number within 1..65535"),
        ("s7", "opc.tcp://127.0.0.1:4840", "expected s7://HOST[:PORT]"),
        ("s7", "s7://", "expected s7://HOST[:PORT]"),
        ("s7", "127.0.0.1:102", "expected s7://HOST[:PORT]"),
        ("s7", "s7://h:99999", "the port is not a number within 1..65535"),
        ("s7", "s7://h/db10", "unexpected path"),
        ("s7", "s7://h?rack=8", "rack must be a whole number within 0..7"),
        ("s7", "s7://h?slot=-1", "slot must be a whole number within 0..31"),
        ("s7", "s7://h?pdu=1000", "pdu must be a whole number within 240..960"),
        ("s7", "s7://h?slot=1&slot=2", "slot is given twice"),
        ("s7", "s7://h?timeout=5", "unknown option 'timeout' (rack, slot, pdu)"),
        ("s7", "s7://h?rack", "the query does not parse"),
        ("cip", "s7://plc", "expected cip://HOST[:PORT][/SLOT]"),
        ("cip", "plc:44818/1", "expected cip://HOST[:PORT][/SLOT]"),
        ("cip", "cip://plc:0x10", "the port is not a number"),
        ("cip", "cip://plc/bp/2", "the slot must be a whole number within 0..255"),
        ("cip", "cip://plc/256", "the slot must be a whole number"),
        ("cip", "cip://plc?slot=1", "unexpected query"),
    ],
)
def test_a_bad_endpoint_says_what_is_wrong(protocol: PlcProtocol, endpoint: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^endpoint: ") as caught:
        parse_endpoint(protocol, endpoint)
    assert message in str(caught.value)


def test_a_broker_url_brackets_an_ipv6_host() -> None:
    assert broker_url("127.0.0.1", 8883) == "mqtts://127.0.0.1:8883"
    assert broker_url("fd00::1", 1883) == "mqtts://[fd00::1]:1883"
