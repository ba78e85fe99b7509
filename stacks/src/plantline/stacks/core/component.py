"""`PlantLineCore`: the core side of PlantLine in one cluster, as one Pulumi component."""

from __future__ import annotations

import pulumi

from plantline.stacks.core import broker, database, monitoring, operator, policies
from plantline.stacks.core.args import NAMESPACE, CoreArgs
from plantline.stacks.core.common import Scope

TYPE = "plantline:core:PlantLineCore"


class PlantLineCore(pulumi.ComponentResource):
    """The operator (from operator/deploy), EMQX, Prometheus and Grafana, PostgreSQL and the NetworkPolicies.

    Outputs: `broker_endpoint` (mqtts:// inside the cluster), `grafana_url`, `ca_bundle` (what
    clients verify the broker with), `operator_namespace`, `database_host`, `broker_api_url`.
    """

    broker_endpoint: pulumi.Output[str]
    broker_api_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str]
    ca_bundle: pulumi.Output[str]
    operator_namespace: pulumi.Output[str]
    database_host: pulumi.Output[str]

    def __init__(self, name: str, args: CoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        scope = Scope(args, pulumi.ResourceOptions(parent=self))
        foundation = operator.create_foundation(scope)
        inside = Scope(args, scope.after(*foundation))  # everything else lives in the namespace
        core_broker = broker.create(inside)
        observed = monitoring.create(inside)
        store = database.create(inside)
        policies.create(inside)
        operator.create(Scope(args, inside.after(core_broker.api_secret)))
        self.broker_endpoint = pulumi.Output.from_input(core_broker.endpoint)
        self.broker_api_url = pulumi.Output.from_input(core_broker.api_url)
        self.grafana_url = pulumi.Output.from_input(observed.grafana_url)
        self.ca_bundle = pulumi.Output.from_input(args.tls.ca_bundle)
        self.operator_namespace = pulumi.Output.from_input(NAMESPACE)
        self.database_host = pulumi.Output.from_input(store.host)
        self.register_outputs(
            {
                "broker_endpoint": self.broker_endpoint,
                "broker_api_url": self.broker_api_url,
                "grafana_url": self.grafana_url,
                "ca_bundle": self.ca_bundle,
                "operator_namespace": self.operator_namespace,
                "database_host": self.database_host,
            }
        )
