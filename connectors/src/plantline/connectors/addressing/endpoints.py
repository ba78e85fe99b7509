"""PLC endpoints of every protocol, pure: which parser reads a device's endpoint, and its port."""

from __future__ import annotations

from typing import Final, Literal

from plantline.connectors.addressing import cip, opcua, s7
from plantline.connectors.addressing.cip import CipEndpoint, parse_cip_endpoint
from plantline.connectors.addressing.opcua import OpcUaEndpoint, parse_opcua_endpoint
from plantline.connectors.addressing.s7 import S7Endpoint, parse_s7_endpoint

PlcProtocol = Literal["opcua", "s7", "cip"]
DEFAULT_PORTS: Final[dict[PlcProtocol, int]] = {
    "opcua": opcua.DEFAULT_PORT,
    "s7": s7.DEFAULT_PORT,
    "cip": cip.DEFAULT_PORT,
}

Endpoint = OpcUaEndpoint | S7Endpoint | CipEndpoint


def parse_endpoint(protocol: PlcProtocol, endpoint: str) -> Endpoint:
    """Return the parts of a device's endpoint (`host` and `port` at least); raise ValueError naming the problem."""
    if protocol == "opcua":
        return parse_opcua_endpoint(endpoint)
    if protocol == "s7":
        return parse_s7_endpoint(endpoint)
    return parse_cip_endpoint(endpoint)
