"""The historian's whitelist of connectors modules covers modules the connectors add later."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import plantline.connectors

ROOT = Path(__file__).resolve().parents[2]
# The codec and host session, samples, metric names, KPI maths, the config models they need, and
# the MQTT transport settings (TLS context, TCP_NODELAY) every PlantLine client shares, and the
# hosts' MQTT link (persistent session, manual acknowledgement) it shares with the cloud bridge.
HISTORIAN_MAY_USE = {
    "sparkplug",
    "samples",
    "metric_names",
    "kpi",
    "config",
    "addressing",
    "extras",
    "transport",
    "hostlink",
}


def test_the_historian_contract_forbids_every_connectors_module_it_does_not_use() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["name"].startswith("the historian takes from the connectors only")]
    modules = {m.name for m in pkgutil.iter_modules(plantline.connectors.__path__)}
    forbidden = {name.removeprefix("plantline.connectors.") for name in contract["forbidden_modules"]}
    assert modules >= HISTORIAN_MAY_USE
    assert sorted(forbidden) == sorted(modules - HISTORIAN_MAY_USE)
