"""NetworkPolicies: who may reach the broker and the database.

The broker's MQTT port admits the pods of connectors and bridges (from any namespace, by their
`app.kubernetes.io/component`); its API port the operator and Prometheus; its cluster ports the
other EMQX nodes. PostgreSQL admits the historian (any namespace) and Grafana.
"""

from __future__ import annotations

import pulumi_kubernetes as k8s

from plantline.stacks.core import broker, database, monitoring
from plantline.stacks.core.common import (
    COMPONENT_LABEL,
    CONNECTOR_COMPONENTS,
    HISTORIAN_COMPONENT,
    Scope,
    metadata,
    selector,
)

OPERATOR = "plantline-operator"  # operator/deploy's Deployment, labelled app.kubernetes.io/name


def from_components(components: list[str]) -> k8s.networking.v1.NetworkPolicyPeerArgsDict:
    """Return the peer of pods, in any namespace, whose component is one of `components`."""
    return {
        "namespace_selector": {},
        "pod_selector": {"match_expressions": [{"key": COMPONENT_LABEL, "operator": "In", "values": components}]},
    }


def from_pods(name: str) -> k8s.networking.v1.NetworkPolicyPeerArgsDict:
    """Return the peer of the stack's own pods named `name` (this namespace)."""
    return {"pod_selector": {"match_labels": selector(name)}}


def ports(*numbers: int) -> list[k8s.networking.v1.NetworkPolicyPortArgsDict]:
    """Return TCP ports of a rule."""
    return [{"protocol": "TCP", "port": n} for n in numbers]


def ingress_policy(
    scope: Scope, target: str, component: str, rules: list[k8s.networking.v1.NetworkPolicyIngressRuleArgsDict]
) -> k8s.networking.v1.NetworkPolicy:
    """Return `<target>-ingress`: the pods named `target` admit only what `rules` allow."""
    name = f"{target}-ingress"
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata=metadata(name, component),
        spec={"pod_selector": {"match_labels": selector(target)}, "policy_types": ["Ingress"], "ingress": rules},
        opts=scope.opts,
    )


def broker_policy(scope: Scope) -> k8s.networking.v1.NetworkPolicy:
    """Return the broker's policy: MQTT from connectors and bridges, the API from the operator and Prometheus."""
    rules: list[k8s.networking.v1.NetworkPolicyIngressRuleArgsDict] = [
        {"from_": [from_components(list(CONNECTOR_COMPONENTS))], "ports": ports(broker.MQTT_PORT)},
        {"from_": [from_pods(OPERATOR), from_pods(monitoring.PROMETHEUS)], "ports": ports(broker.API_PORT)},
        {"from_": [from_pods(broker.NAME)], "ports": ports(*broker.CLUSTER_PORTS)},
    ]
    return ingress_policy(scope, broker.NAME, broker.COMPONENT, rules)


def database_policy(scope: Scope) -> k8s.networking.v1.NetworkPolicy:
    """Return the database's policy: PostgreSQL from the historian and Grafana only."""
    peers = [from_components([HISTORIAN_COMPONENT]), from_pods(monitoring.GRAFANA)]
    return ingress_policy(scope, database.NAME, database.COMPONENT, [{"from_": peers, "ports": ports(database.PORT)}])


def create(scope: Scope) -> None:
    """Create both policies."""
    broker_policy(scope)
    database_policy(scope)
