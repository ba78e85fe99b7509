"""Which extra of plantline-operator each command needs; `MissingExtra` names the one to install.

The base install validates, prints the CRD and renders. `plantline up` (and `status`, `reload`,
`down`) needs `local`: the connectors it starts, with every protocol, and the status table.
`up --simulate` with an EtherNet/IP machine needs `simulate` (cpppo, GPLv3, run as a separate
program); `plantline operator run` needs `kube`; `plantline broker plan` needs `emqx` (httpx).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from plantline.connectors.extras import PROTOCOL_LABELS, SIMULATOR_MODULES, MissingExtra, absent, require_connector

PACKAGE: Final = "plantline-operator"

# extra -> the modules it brings that the operator imports itself (`local` brings the connectors' too)
EXTRA_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "kube": ("kopf", "kubernetes", "httpx"),
    "local": ("rich",),
    "emqx": ("httpx",),
    "simulate": tuple(sorted({m for modules in SIMULATOR_MODULES.values() for m in modules})),
}


def require(extra: str, what: str) -> None:
    """Raise MissingExtra when a module of this package's `extra` is not installed."""
    missing = absent(EXTRA_MODULES[extra])
    if missing is not None:
        raise MissingExtra(what, extra, missing, package=PACKAGE)


def require_up(protocols: Iterable[str], *, simulate: bool) -> None:
    """Raise MissingExtra unless this install runs a line of `protocols` (and, with `simulate`, its simulators)."""
    protocols = sorted(set(protocols))
    require("local", "this command")
    require_connector(protocols, instead=f"{PACKAGE}[local]")
    if not simulate:
        return
    for protocol in protocols:
        missing = absent(SIMULATOR_MODULES.get(protocol, ()))
        if missing is not None:
            raise MissingExtra(f"the {PROTOCOL_LABELS[protocol]} simulator", "simulate", missing, package=PACKAGE)
