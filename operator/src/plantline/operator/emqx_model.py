"""A line's objects in EMQX (REST API v5), and the plan that makes EMQX hold them (pure, no I/O).

What a PlantLine `<ns>/<name>` with `broker.kind: emqx` owns in EMQX:

- one rule set per identity of the line in the built-in database authorization source
  (`/authorization/sources/built_in_database/rules/users/<identity>`): the role model
  (`roles.line_grants`) as allow rules, then `deny all #`. The username is the certificate
  identity (EMQX's `peer_cert_as_username = cn`). EMQX users carry no description, so each rule
  set starts with the owner rule, deny all `eq plantline-owner/<ns>/<name>`: a topic nobody uses,
  by which the operator recognises the rule sets it owns;
- in the rules for all clients, `deny all` on each of the line's edge nodes after every user's own
  rules: the line's default deny, for clients of other lines and of no line;
- with `broker.bridge`: the MQTT connector `plantline-<ns>-<name>-upstream` (TLS with the line's
  bridge certificate) and one action `plantline-<ns>-<name>-up-<group>` per connector group, whose
  `local_topic` is that edge node's filter: only the line's namespace goes upstream, at QoS 1,
  with no rule.

Named objects carry the line's description (`LineRef.description`); an object is the line's only
when both its name and its description say so. The cluster-wide settings a line needs (the
built-in database source enabled, `mqtt.peer_cert_as_username = cn`, and, when the operator is
given one, a listener with mutual TLS, the operator's CA and CRL checks) are ensured, never deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plantline.connectors.addressing.mqtt import SPARKPLUG_NAMESPACE as NAMESPACE
from plantline.operator.api import PlantLine
from plantline.operator.roles import Grant, line_grants, node_filters, topology

Kind = Literal["user", "default-deny", "connector", "action", "source", "zone", "listener"]
Operation = Literal["create", "change", "delete"]
ALL_TOPICS = "#"
PEER_CERT_AS_USERNAME = "cn"


class BrokerError(Exception):
    """The line's broker could not be reconciled; `reason` is the BrokerReady condition's reason."""

    reason = "Rejected"


class BrokerUnreachable(BrokerError):
    reason = "BrokerUnreachable"


class BrokerUnauthorized(BrokerError):
    reason = "Unauthorized"


class BrokerRejected(BrokerError):
    """The broker refused a request; the message holds the broker's own."""

    reason = "Rejected"


@dataclass(frozen=True, slots=True)
class LineRef:
    """Which line owns an object: its Kubernetes namespace and name."""

    namespace: str
    name: str

    @property
    def prefix(self) -> str:
        return f"plantline-{self.namespace}-{self.name}-"

    @property
    def description(self) -> str:
        return f"Owned by plantline-operator: PlantLine {self.namespace}/{self.name}; edits are reverted"

    @property
    def upstream(self) -> str:
        """The name of the line's bridge connector."""
        return f"{self.prefix}upstream"

    @property
    def owner_rule(self) -> dict[str, Any]:
        return {"permission": "deny", "action": "all", "topic": f"eq plantline-owner/{self.namespace}/{self.name}"}


@dataclass(frozen=True, slots=True)
class BridgeMaterial:
    """The bridge certificate, its key and the trust bundle for the remote broker, as PEM."""

    certificate_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    @property
    def tag(self) -> str:
        """Return a tag naming the certificate, so a renewed one changes the connector."""
        return "plantline-cert-" + hashlib.sha256(self.certificate_pem).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ListenerWant:
    """The listener the line's clients use (e.g. `ssl:default`) and the CA it must trust, as PEM."""

    id: str
    ca_pem: bytes

    def body(self) -> dict[str, Any]:
        """Return the partial update that makes it mutual TLS with this CA and CRL checks."""
        return {
            "id": self.id,
            "type": self.id.partition(":")[0],
            "ssl_options": {**LISTENER_TLS, "cacertfile": self.ca_pem.decode()},
        }


# What the listener's ssl_options must say (its CA file is not compared: EMQX shows a path, not the PEM).
LISTENER_TLS: dict[str, Any] = {"verify": "verify_peer", "fail_if_no_peer_cert": True, "enable_crl_check": True}


@dataclass
class EmqxState:
    """A line's objects as bodies of the REST API, by name; `default_deny` are rules of the all-list."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_deny: list[dict[str, Any]] = field(default_factory=list)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_enabled: bool | None = True  # the built-in database source: None when EMQX has none
    foreign_users: set[str] = field(default_factory=set)  # users of the line's names that it does not own
    peer_cert_as_username: str = PEER_CERT_AS_USERNAME
    listener: ListenerWant | None = None  # desired: the listener to ensure
    listener_tls: dict[str, Any] | None = None  # current: its ssl_options as read


@dataclass(frozen=True, slots=True)
class Change:
    """One request's worth of work: create, change or delete one object (body None for a delete).

    A connector's body holds the bridge's private key: it is left out of the repr.
    """

    kind: Kind
    name: str
    operation: Operation
    body: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "operation": self.operation}


@dataclass(frozen=True, slots=True)
class Result:
    """What one reconcile of a line's EMQX objects did: the changes applied and the requests sent."""

    changes: list[Change]
    requests: int

    def summary(self) -> str:
        counts = {op: [c for c in self.changes if c.operation == op] for op in ("create", "change", "delete")}
        done = {"create": "created", "change": "changed", "delete": "deleted"}
        parts = [
            f"{done[op]} {', '.join(f'{c.kind} {c.name}' for c in found)}" for op, found in counts.items() if found
        ]
        return "; ".join(parts) or "nothing to change"


def user_rules(grant: Grant, ref: LineRef) -> dict[str, Any]:
    """Return the `rules_for_username` body of one identity: owner rule, its allows, then deny all."""
    rules = [ref.owner_rule]
    rules += [{"permission": "allow", "action": r.action, "topic": r.topic} for r in grant.rules]
    rules.append({"permission": "deny", "action": "all", "topic": ALL_TOPICS})
    return {"username": grant.identity, "rules": rules}


def default_deny(line: PlantLine) -> list[dict[str, Any]]:
    """Return the line's rules for all clients: deny every topic of the line's edge nodes."""
    return [{"permission": "deny", "action": "all", "topic": f} for f in node_filters(line.spec)]


def connector_body(line: PlantLine, ref: LineRef, material: BridgeMaterial | None) -> dict[str, Any] | None:
    """Return the upstream MQTT connector (None without a bridge); PEM in the body, as EMQX accepts it."""
    bridge = line.spec.broker.bridge
    if bridge is None:
        return None
    ssl: dict[str, Any] = {"enable": True, "verify": "verify_peer", "server_name_indication": bridge.host}
    tags = ["plantline"]
    if material is not None:
        ssl |= {
            "cacertfile": material.ca_pem.decode(),
            "certfile": material.certificate_pem.decode(),
            "keyfile": material.key_pem.decode(),
        }
        tags.append(material.tag)
    return {
        "type": "mqtt",
        "name": ref.upstream,
        "server": f"{bridge.host}:{bridge.port}",
        "proto_ver": "v4",
        # Keep the session upstream: QoS 1 messages queued during a WAN outage survive.
        "clean_start": False,
        "description": ref.description,
        "tags": tags,
        "ssl": ssl,
    }


def action_bodies(line: PlantLine, ref: LineRef) -> dict[str, dict[str, Any]]:
    """Return one egress action per connector group: its edge node's topics, upstream, at QoS 1."""
    bridge = line.spec.broker.bridge
    if bridge is None:
        return {}
    group, connector = line.spec.sparkplug_group, ref.upstream
    actions = {}
    for topo in topology(line.spec):
        name = f"{ref.prefix}up-{topo.group}"
        actions[name] = {
            "type": "mqtt",
            "name": name,
            "connector": connector,
            "local_topic": f"{NAMESPACE}/{group}/+/{topo.edge_node_id}/#",
            "parameters": {
                "topic": bridge.remote_prefix + "${topic}",
                "qos": 1,
                "retain": False,
                "payload": "${payload}",
            },
            "description": ref.description,
        }
    return actions


def desired_state(
    line: PlantLine, ref: LineRef, material: BridgeMaterial | None, listener: ListenerWant | None = None
) -> EmqxState:
    """Return everything the line should own in EMQX, and the listener to ensure (if any)."""
    connector = connector_body(line, ref, material)
    return EmqxState(
        users={g.identity: user_rules(g, ref) for g in line_grants(line.spec)},
        default_deny=default_deny(line),
        connectors={connector["name"]: connector} if connector is not None else {},
        actions=action_bodies(line, ref),
        listener=listener,
    )


# -- reading what EMQX holds ----------------------------------------------------------------------


def owns_user(body: Mapping[str, Any], ref: LineRef) -> bool:
    """Return whether a user's rule set carries the line's owner rule."""
    return any(_rule_key(r) == _rule_key(ref.owner_rule) for r in body.get("rules") or [])


def owns_named(body: Mapping[str, Any], ref: LineRef) -> bool:
    """Return whether a connector or action is the line's: its name and its description both say so."""
    return str(body.get("name", "")).startswith(ref.prefix) and body.get("description") == ref.description


def deny_filters(line: PlantLine | None, owned_users: Sequence[Mapping[str, Any]]) -> set[str]:
    """Return the edge-node filters the line denies to all: its own now, and those its users were given.

    The admin's rule set names every edge node the line had when it was written, so a node the line
    no longer has is still recognised as the line's and its deny is taken out.
    """
    filters = set(node_filters(line.spec)) if line is not None else set()
    for user in owned_users:
        for rule in user.get("rules") or []:
            levels = str(rule.get("topic", "")).split("/")
            is_node = len(levels) == 5 and levels[0] == NAMESPACE and levels[2] == "+" and levels[4] == "#"
            if rule.get("permission") == "allow" and rule.get("action") == "all" and is_node:
                filters.add("/".join(levels))
    return filters


def owned_default_deny(all_rules: Sequence[Mapping[str, Any]], filters: set[str]) -> list[dict[str, Any]]:
    """Return the rules of the all-list that deny one of the line's edge-node filters."""
    return [
        dict(r)
        for r in all_rules
        if r.get("permission") == "deny" and r.get("action") == "all" and r.get("topic") in filters
    ]


def merged_all_rules(
    all_rules: Sequence[Mapping[str, Any]], remove: Sequence[Mapping[str, Any]], add: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Return the all-list with the line's old rules taken out and its new ones appended, others kept in order."""
    gone = {_rule_key(r) for r in remove}
    kept = [_as_written(r) for r in all_rules if _rule_key(r) not in gone]
    present = {_rule_key(r) for r in kept}
    return kept + [dict(r) for r in add if _rule_key(r) not in present]


def _as_written(rule: Mapping[str, Any]) -> dict[str, Any]:
    """Return another owner's rule as the API takes it back: QoS as numbers, retain as a boolean or `all`.

    EMQX's own description shows rules read back with `qos: ["1"]` and `retain: "true"`, which its
    schema for writing refuses.
    """
    written = dict(rule)
    if "qos" in written:
        written["qos"] = [int(q) for q in written["qos"]]
    if written.get("retain") in ("true", "false"):
        written["retain"] = written["retain"] == "true"
    return written


# -- the plan -------------------------------------------------------------------------------------


def _rule_key(rule: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(rule.get("permission")), str(rule.get("action")), str(rule.get("topic")))


def _rules(body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [_rule_key(r) for r in body.get("rules") or []]


def _connector_view(body: Mapping[str, Any], *, with_certificate: bool) -> dict[str, Any]:
    ssl = body.get("ssl") or {}
    tags = sorted(t for t in body.get("tags") or [] if with_certificate or not t.startswith("plantline-cert-"))
    return {
        "server": body.get("server"),
        "proto_ver": body.get("proto_ver", "v4"),
        "clean_start": body.get("clean_start", True),
        "description": body.get("description"),
        "enable": body.get("enable", True),
        "tags": tags,
        "ssl": {k: ssl.get(k) for k in ("enable", "verify", "server_name_indication")},
    }


def _action_view(body: Mapping[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters") or {}
    return {
        "connector": body.get("connector"),
        "local_topic": body.get("local_topic"),
        "description": body.get("description"),
        "enable": body.get("enable", True),
        "parameters": {k: parameters.get(k) for k in ("topic", "qos", "retain", "payload")},
    }


def _diff(kind: Kind, desired: Mapping[str, Any], current: Mapping[str, Any], same: Any) -> list[Change]:
    changes = [Change(kind, name, "create", body) for name, body in desired.items() if name not in current]
    changes += [
        Change(kind, name, "change", body)
        for name, body in desired.items()
        if name in current and not same(body, current[name])
    ]
    changes += [Change(kind, name, "delete") for name in current if name not in desired]
    return changes


def plan(desired: EmqxState, current: EmqxState, *, certificate_known: bool = True) -> list[Change]:
    """Return the changes that turn `current` (the line's objects as read) into `desired`.

    Order matters to EMQX: settings, then users, default deny, connectors before the actions that
    use them; deletes of actions before their connector.
    """
    changes: list[Change] = []
    if current.source_enabled is not True:
        operation: Operation = "create" if current.source_enabled is None else "change"
        changes.append(Change("source", "built_in_database", operation, {"type": "built_in_database", "enable": True}))
    if current.peer_cert_as_username != PEER_CERT_AS_USERNAME:
        changes.append(Change("zone", "mqtt.peer_cert_as_username", "change", PEER_CERT_AS_USERNAME))
    if desired.listener is not None:
        tls = current.listener_tls or {}
        if any(tls.get(key) != value for key, value in LISTENER_TLS.items()):
            changes.append(Change("listener", desired.listener.id, "change", desired.listener.body()))
    changes += _diff("user", desired.users, current.users, lambda a, b: _rules(a) == _rules(b))
    if sorted(map(_rule_key, desired.default_deny)) != sorted(map(_rule_key, current.default_deny)):
        operation = "create" if not current.default_deny else "change" if desired.default_deny else "delete"
        changes.append(Change("default-deny", "all", operation, desired.default_deny))

    def same_connector(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return _connector_view(a, with_certificate=certificate_known) == _connector_view(
            b, with_certificate=certificate_known
        )

    connectors = _diff("connector", desired.connectors, current.connectors, same_connector)
    actions = _diff("action", desired.actions, current.actions, lambda a, b: _action_view(a) == _action_view(b))
    changes += [c for c in connectors if c.operation != "delete"]
    changes += [c for c in actions if c.operation != "delete"]
    changes += [c for c in actions if c.operation == "delete"]
    changes += [c for c in connectors if c.operation == "delete"]
    return changes
