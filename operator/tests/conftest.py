"""Shared fixtures of the operator tests: the demo line, fresh for each test; the operator's CA and a cluster.

The demo file runs the line as one edge node (`perLine`). Most renderer tests want several edge
nodes, one per machine, to prove the ACL keeps them apart, so these fixtures split the demo per
machine; a test that wants the file as it is reads `DEMO` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.issuer import new_ca

from .recording import MemoryAuthority, RecordingCluster

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-line.yaml"
# The reconcile tests run at 2026-11-18 12:00 UTC; the CA is valid from a day before.
CA_NOT_BEFORE = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)


@pytest.fixture
def demo_data() -> Callable[[], dict[str, Any]]:
    """Return a factory of fresh copies of the demo line's data, to break in each test."""

    def load() -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
        data["spec"]["connectors"] = {"grouping": "perMachine"}
        return data

    return load


@pytest.fixture
def demo(demo_data: Callable[[], dict[str, Any]]) -> PlantLine:
    return parse_plantline(demo_data())


@pytest.fixture(scope="session")
def ca_pems() -> tuple[bytes, bytes]:
    """Return one operator CA (certificate and key PEM) for the session: RSA-3072 keys take a while to make."""
    return new_ca(CA_NOT_BEFORE)


@pytest.fixture
def authority(ca_pems: tuple[bytes, bytes]) -> MemoryAuthority:
    return MemoryAuthority(*ca_pems)


@pytest.fixture
def cluster() -> RecordingCluster:
    return RecordingCluster()
