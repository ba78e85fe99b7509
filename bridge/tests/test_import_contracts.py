"""The bridge's whitelist of connectors modules covers modules the connectors add later."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import plantline.connectors

ROOT = Path(__file__).resolve().parents[2]
# A Sparkplug host's share: the codec and host session, the hosts' MQTT link and transport
# settings, samples, metric names, the config models, and the health endpoint.
BRIDGE_MAY_USE = {
    "sparkplug", "samples", "metric_names", "config", "addressing", "extras", "transport", "hostlink", "health"
}  # fmt: skip


def test_the_bridge_contract_forbids_every_connectors_module_it_does_not_use() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["name"].startswith("the bridge takes from the connectors only")]
    modules = {m.name for m in pkgutil.iter_modules(plantline.connectors.__path__)}
    forbidden = {name.removeprefix("plantline.connectors.") for name in contract["forbidden_modules"]}
    assert modules >= BRIDGE_MAY_USE
    assert sorted(forbidden) == sorted(modules - BRIDGE_MAY_USE)
