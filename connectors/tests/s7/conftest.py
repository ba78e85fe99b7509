"""Fixtures for the S7 tests: devices for the S7 source, and the C snap7 server's virtualenv."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plantline.connectors.config import Device, Tag
from plantline_testing.snap7_c import cache_dir, snap7_c_python


def make_s7_device(endpoint: str, tags: list[dict[str, Any]], *, interval_ms: int = 50) -> Device:
    """A Device for the S7 source polling every `interval_ms`.

    config.Device accepts only `protocol: opcua` today, so it is built without validation
    (`model_construct`); the tags are validated one by one.
    """
    return Device.model_construct(
        id="filler-1",
        protocol="s7",
        endpoint=endpoint,
        sampling_interval_ms=interval_ms,
        tags=[Tag.model_validate(tag) for tag in tags],
    )


@pytest.fixture
def s7_device() -> Callable[..., Device]:
    """`s7_device(endpoint, tags, interval_ms=50)` builds a Device for the S7 source."""
    return make_s7_device


@pytest.fixture(scope="session")
def c_snap7_python() -> Path:
    """The Python of the python-snap7 2.x virtualenv (created on first use; skipped if impossible)."""
    try:
        return snap7_c_python()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"cannot create the python-snap7 2.x virtualenv in {cache_dir()}: {exc}")
