"""The operator's import rules hold for modules added later, and at run time without the connectors' extras."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import plantline.connectors
import plantline.operator

ROOT = Path(__file__).resolve().parents[2]
# The connectors' pure models: all the operator may import from the connectors.
OPERATOR_MAY_USE = {"config", "addressing", "samples", "metric_names", "extras"}
# What the connectors' runtime extra and protocol extras bring; the operator installs none of them.
RUNTIME_ONLY = ["google.protobuf", "paho", "asyncua", "snap7", "pycomm3"]


def _contract(name_start: str) -> dict[str, Any]:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = document["tool"]["importlinter"]["contracts"]
    (found,) = [c for c in contracts if c["name"].startswith(name_start)]
    return found


def test_the_operator_contract_forbids_every_connectors_module_but_the_pure_models() -> None:
    contract = _contract("the operator takes from the connectors only")
    modules = {m.name for m in pkgutil.iter_modules(plantline.connectors.__path__)}
    forbidden = {name.removeprefix("plantline.connectors.") for name in contract["forbidden_modules"]}
    assert modules >= OPERATOR_MAY_USE
    assert sorted(forbidden) == sorted(modules - OPERATOR_MAY_USE)


def test_every_operator_module_imports_without_the_connectors_runtime_extras() -> None:
    # import-linter sees `import a.b.c` as an import of c alone; Python runs a/__init__ and
    # a/b/__init__ too. This catches a whitelisted module whose package pulls in the codec.
    modules = [f"plantline.operator.{m.name}" for m in pkgutil.iter_modules(plantline.operator.__path__)]
    code = "\n".join(
        [
            "import importlib, sys",
            *(f"sys.modules[{name!r}] = None" for name in RUNTIME_ONLY),
            f"for name in {modules!r}: importlib.import_module(name)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
