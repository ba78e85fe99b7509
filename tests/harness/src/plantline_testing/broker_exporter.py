"""The broker exporter the dashboards read, mqtt-exporter, in a virtualenv of its own: `broker_exporter`.

mqtt-exporter pins paho-mqtt and prometheus-client exactly; beside the workspace's own it gets a
virtualenv under `$PLANTLINE_CACHE/mqtt-exporter`, installed once with the version
`plantline.dashboards.broker.EXPORTER_PACKAGE` names.
"""

from __future__ import annotations

from pathlib import Path

from plantline.dashboards.broker import EXPORTER_PACKAGE, EXPORTER_PROGRAM
from plantline_testing.venvs import cache_dir, cached_venv


def broker_exporter() -> Path:
    """Return the mqtt-exporter program, installing it the first time."""
    python = cached_venv(cache_dir("mqtt-exporter"), EXPORTER_PACKAGE)
    return python.parent / EXPORTER_PROGRAM
