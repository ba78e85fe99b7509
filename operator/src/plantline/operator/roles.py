"""The line's security roles: who may publish and subscribe what in the line's Sparkplug namespace.

A pure model (no I/O): from a PlantLine, one `Grant` per identity, each a tuple of allow rules.
Everything not granted is denied. The renderers turn it into a broker's own language: Mosquitto's
ACL file (`render.render_acl`) and EMQX's built-in-database authorization (`emqx_model`).

The line's namespace is the topics of its edge nodes, `spBv1.0/<group>/<type>/<node>[/<device>]`,
and the STATE of its primary host. Lines of one site share the Sparkplug group but never an edge
node, so no rule is wider than one of the line's own edge nodes: a rule of one line never matches
another line's topics.

The five roles (identities `<site>-<line>-<name>`):

- edge: each connector (`<group>`) and the site bridge (`bridge`): publish its own births, deaths
  and data; read its own NCMD/DCMD and the primary host's STATE;
- host (`host`, with `primaryHostId`, a historian or a cloud bridge, which connect as it): publish
  and read its own STATE; publish NCMD/DCMD to the line's edge nodes and devices; read all of the line;
- analytics (`reader`): read all of the line and its host's STATE;
- dashboard (`dashboard`): read births, deaths, data and the host's STATE: no commands;
- admin (`admin`): publish and read all of the line and its host's STATE.

The dashboard's and the admin's certificates are not the line's: the security team issues them
(`plantline-pki cert issue <site>-<line>-dashboard`) for the people and tools that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plantline.connectors.addressing.mqtt import SPARKPLUG_NAMESPACE as NAMESPACE
from plantline.operator.api import MachineSpec, PlantLineSpec, connector_groups

Role = Literal["edge", "host", "analytics", "dashboard", "admin"]
ROLES: tuple[Role, ...] = ("edge", "host", "analytics", "dashboard", "admin")
Action = Literal["publish", "subscribe", "all"]

NODE_MESSAGES = ("NBIRTH", "NDEATH", "NDATA")
DEVICE_MESSAGES = ("DBIRTH", "DDEATH", "DDATA")


@dataclass(frozen=True, slots=True)
class ConnectorTopology:
    """One connector of the line: its group, certificate identity, edge node and devices."""

    group: str
    identity: str
    edge_node_id: str
    machines: tuple[MachineSpec, ...]


def _prefix(spec: PlantLineSpec) -> str:
    return f"{spec.site}-{spec.line}"


def topology(spec: PlantLineSpec) -> list[ConnectorTopology]:
    """Return the line's connectors in a stable order (sorted by group name)."""
    return [
        ConnectorTopology(
            group=group,
            identity=f"{_prefix(spec)}-{group}",
            edge_node_id=(
                spec.sparkplug_edge_node
                if spec.connectors.grouping == "perLine"
                else f"{spec.sparkplug_edge_node}-{group}"
            ),
            machines=tuple(machines),
        )
        for group, machines in connector_groups(spec).items()
    ]


def broker_identity(spec: PlantLineSpec) -> str:
    return f"{_prefix(spec)}-broker"


def reader_identity(spec: PlantLineSpec) -> str:
    return f"{_prefix(spec)}-reader"


def bridge_identity(spec: PlantLineSpec) -> str:
    return f"{_prefix(spec)}-bridge"


def host_identity(spec: PlantLineSpec) -> str:
    """Return the identity of the line's primary host application (used when `primaryHostId` is set)."""
    return f"{_prefix(spec)}-host"


def dashboard_identity(spec: PlantLineSpec) -> str:
    return f"{_prefix(spec)}-dashboard"


def admin_identity(spec: PlantLineSpec) -> str:
    return f"{_prefix(spec)}-admin"


@dataclass(frozen=True, slots=True)
class Rule:
    """One allowed action on one topic filter (MQTT wildcards `+` and `#` as in a subscription)."""

    action: Action
    topic: str


@dataclass(frozen=True, slots=True)
class Grant:
    """What one identity of the line may do; everything else is denied."""

    identity: str
    role: Role
    rules: tuple[Rule, ...]


def _base(spec: PlantLineSpec) -> str:
    return f"{NAMESPACE}/{spec.sparkplug_group}"


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def node_filters(spec: PlantLineSpec) -> tuple[str, ...]:
    """Return one filter per edge node of the line, matching every topic of that node and its devices."""
    return tuple(f"{_base(spec)}/+/{c.edge_node_id}/#" for c in topology(spec))


def _publishes(spec: PlantLineSpec, connector: ConnectorTopology) -> list[Rule]:
    base, node = _base(spec), connector.edge_node_id
    rules = [Rule("publish", f"{base}/{kind}/{node}") for kind in NODE_MESSAGES]
    for machine in connector.machines:
        rules += [Rule("publish", f"{base}/{kind}/{node}/{machine.id}") for kind in DEVICE_MESSAGES]
    return rules


def _commands_in(spec: PlantLineSpec, connector: ConnectorTopology) -> list[Rule]:
    base, node = _base(spec), connector.edge_node_id
    return [Rule("subscribe", f"{base}/NCMD/{node}"), Rule("subscribe", f"{base}/DCMD/{node}/+")]


def _state_in(spec: PlantLineSpec) -> list[Rule]:
    return [Rule("subscribe", state_topic(spec.primary_host_id))] if spec.primary_host_id is not None else []


def _edge(spec: PlantLineSpec) -> list[Grant]:
    grants = [
        Grant(c.identity, "edge", (*_publishes(spec, c), *_commands_in(spec, c), *_state_in(spec)))
        for c in topology(spec)
    ]
    if spec.broker.bridge is not None:
        # The site bridge carries every edge node of the line to the core, and their commands back.
        connectors = topology(spec)
        rules = [r for c in connectors for r in _publishes(spec, c)]
        rules += [r for c in connectors for r in _commands_in(spec, c)]
        grants.append(Grant(bridge_identity(spec), "edge", (*rules, *_state_in(spec))))
    return grants


def _host(spec: PlantLineSpec, host_id: str | None) -> Grant:
    """Return the host's grant: a primary host's own STATE (birth, will, reading it back), commands, the line."""
    base = _base(spec)
    rules = [] if host_id is None else [Rule("publish", state_topic(host_id)), Rule("subscribe", state_topic(host_id))]
    for connector in topology(spec):
        node = connector.edge_node_id
        rules.append(Rule("publish", f"{base}/NCMD/{node}"))
        rules += [Rule("publish", f"{base}/DCMD/{node}/{m.id}") for m in connector.machines]
    rules += [Rule("subscribe", f) for f in node_filters(spec)]
    return Grant(host_identity(spec), "host", tuple(rules))


def _dashboard(spec: PlantLineSpec) -> Grant:
    base = _base(spec)
    rules: list[Rule] = []
    for connector in topology(spec):
        node = connector.edge_node_id
        rules += [Rule("subscribe", f"{base}/{kind}/{node}") for kind in NODE_MESSAGES]
        rules += [Rule("subscribe", f"{base}/{kind}/{node}/+") for kind in DEVICE_MESSAGES]
    return Grant(dashboard_identity(spec), "dashboard", (*rules, *_state_in(spec)))


def line_grants(spec: PlantLineSpec, *, historian: bool = False) -> tuple[Grant, ...]:
    """Return every identity's grant, edge first, then host, analytics, dashboard and admin.

    The host identity has its grant when the line has a primary host, a cloud bridge (`cloud`) or,
    with `historian`, a historian (a host application that is not the primary one publishes no STATE).
    """
    grants = _edge(spec)
    if spec.primary_host_id is not None or historian or spec.cloud is not None:
        grants.append(_host(spec, spec.primary_host_id))
    everything = node_filters(spec)
    grants.append(
        Grant(reader_identity(spec), "analytics", (*(Rule("subscribe", f) for f in everything), *_state_in(spec)))
    )
    grants.append(_dashboard(spec))
    state = (state_topic(spec.primary_host_id),) if spec.primary_host_id is not None else ()
    grants.append(Grant(admin_identity(spec), "admin", tuple(Rule("all", f) for f in (*everything, *state))))
    return tuple(grants)


def topic_matches(pattern: str, topic: str) -> bool:
    """Return whether an MQTT topic filter matches a concrete topic name."""
    filter_levels, topic_levels = pattern.split("/"), topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels) or (level != "+" and level != topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)
