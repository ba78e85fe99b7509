"""Which extra of plantline-connectors each piece needs, and `MissingExtra` naming the one to install.

The runtime and each protocol are extras, so that other components can import the config model
alone. A command that is about to run a piece checks first that its extra is installed, so a
user reads what to install instead of a ModuleNotFoundError raised deep inside an import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Final

PACKAGE: Final = "plantline-connectors"

# extra -> the modules it brings that the code imports
EXTRA_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "runtime": ("google.protobuf", "paho.mqtt", "prometheus_client"),
    "opcua": ("asyncua", "cryptography"),
    "s7": ("snap7",),
    "cip": ("pycomm3",),
}

PROTOCOL_LABELS: Final[dict[str, str]] = {"opcua": "OPC UA", "s7": "S7", "cip": "EtherNet/IP"}

# What a protocol's simulator (plantline.connectors.sim) runs besides its protocol's extra. No extra
# of this package brings it: cpppo is GPLv3, and the CIP simulator runs it as a separate program.
SIMULATOR_MODULES: Final[dict[str, tuple[str, ...]]] = {"cip": ("cpppo",)}


class MissingExtra(Exception):
    """A piece needs an extra that is not installed; the message says what to install."""

    def __init__(self, what: str, extra: str, module: str, *, package: str = PACKAGE, instead: str = "") -> None:
        self.what = what
        self.extra = extra
        self.module = module
        self.package = package
        self.instead = instead  # another requirement that brings the extra too, e.g. 'plantline-operator[local]'
        install = f"pip install '{package}[{extra}]'" + (f" or '{instead}'" if instead else "")
        super().__init__(f"{what} needs the '{extra}' extra (no module named '{module}'): {install}")


def absent(modules: Iterable[str]) -> str | None:
    """Return the first of `modules` that this install cannot import, or None when all are there."""
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a missing parent package, or one without a spec
            spec = None
        if spec is None:
            return name
    return None


def require(extra: str, what: str, *, instead: str = "") -> None:
    """Raise MissingExtra when a module of this package's `extra` is not installed."""
    missing = absent(EXTRA_MODULES[extra])
    if missing is not None:
        raise MissingExtra(what, extra, missing, instead=instead)


def require_connector(protocols: Iterable[str], *, instead: str = "") -> None:
    """Raise MissingExtra unless the runtime and the source of every protocol in `protocols` are installed."""
    require("runtime", "the connector runtime", instead=instead)
    for protocol in sorted(set(protocols)):
        require(protocol, f"the {PROTOCOL_LABELS[protocol]} source", instead=instead)
