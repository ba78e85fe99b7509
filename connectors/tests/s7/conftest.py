"""Fixtures for the S7 tests: devices for the S7 source, and the C snap7 server's virtualenv."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from plantline.connectors.config import Device
from plantline_testing import cache_dir
from plantline_testing.snap7_c import snap7_c_python
from plantline_testing.sources import plc_device


@pytest.fixture
def s7_device() -> Callable[..., Device]:
    """`s7_device(endpoint, tags, interval_ms=50)` builds a Device for the S7 source (see `plc_device`)."""
    return functools.partial(plc_device, "s7")


@pytest.fixture(scope="session")
def c_snap7_python() -> Path:
    """The Python of the python-snap7 2.x virtualenv (made by `./dev test`, or here on first use).

    A missing one fails the tests that need it: the C server is the S7 peer PlantLine did not write.
    """
    try:
        return snap7_c_python()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        pytest.fail(f"cannot create the python-snap7 2.x virtualenv in {cache_dir('snap7-c')}: {exc}")
