"""`IngestionHubs`: the Event Hubs namespace of the plant's cloud ingestion, as one Pulumi component.

One hub per equipment type (`<type>-equipment`), partitions from the plan's rule
(`plantline.stacks.sizing.partition_count`), seven days' retention, a consumer group per consumer,
a `dead-letter` hub, and a send-only rule for the bridge whose connection string is a secret output.
The namespace speaks Kafka, refuses TLS below 1.2 and has a system-assigned managed identity.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import eventhub, resources

from plantline.stacks.cloud.args import CloudArgs
from plantline.stacks.sizing import DEAD_LETTER_HUB, RETENTION_HOURS, hub_name, partition_count

TYPE = "plantline:cloud:IngestionHubs"
BRIDGE_RULE = "bridge-send"


class IngestionHubs(pulumi.ComponentResource):
    """The namespace, its hubs and consumer groups, and the bridge's send-only rule.

    Outputs: `namespace_name`, `kafka_endpoint` (host:9093), `hubs` (equipment type -> hub name),
    `bridge_connection_string` (a secret).
    """

    namespace_name: pulumi.Output[str]
    kafka_endpoint: pulumi.Output[str]
    hubs: dict[str, str]
    bridge_connection_string: pulumi.Output[str]

    def __init__(self, name: str, args: CloudArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = self._resource_group(name, args, child)
        namespace = self._namespace(name, args, group, child)
        scope = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        self.hubs = {}
        for equipment in args.equipment:
            hub = hub_name(equipment.name)
            partitions = partition_count(args.tier, args.capacity, equipment.expected_mb_per_s)
            self._hub(hub, partitions, args, group, namespace, scope)
            self.hubs[equipment.name] = hub
        self._hub(DEAD_LETTER_HUB, 1, args, group, namespace, scope)
        rule = eventhub.NamespaceAuthorizationRule(
            BRIDGE_RULE,
            authorization_rule_name=BRIDGE_RULE,
            namespace_name=namespace.name,
            resource_group_name=group,
            rights=[eventhub.AccessRights.SEND],
            opts=scope,
        )
        keys = eventhub.list_namespace_keys_output(
            authorization_rule_name=rule.name, namespace_name=namespace.name, resource_group_name=group
        )
        self.bridge_connection_string = pulumi.Output.secret(keys.primary_connection_string)
        self.namespace_name = namespace.name
        self.kafka_endpoint = namespace.service_bus_endpoint.apply(kafka_endpoint)
        self.register_outputs(
            {
                "namespace_name": self.namespace_name,
                "kafka_endpoint": self.kafka_endpoint,
                "hubs": self.hubs,
                "bridge_connection_string": self.bridge_connection_string,
            }
        )

    @staticmethod
    def _resource_group(name: str, args: CloudArgs, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        if args.resource_group is not None:
            return pulumi.Output.from_input(args.resource_group)
        group = resources.ResourceGroup(f"{name}-ingestion", location=args.location, tags=args.tags, opts=opts)
        return group.name

    @staticmethod
    def _namespace(
        name: str, args: CloudArgs, group: pulumi.Output[str], opts: pulumi.ResourceOptions
    ) -> eventhub.Namespace:
        return eventhub.Namespace(
            name,
            namespace_name=args.namespace_name,
            resource_group_name=group,
            location=args.location,
            sku={"name": args.tier, "tier": args.tier, "capacity": args.capacity},
            kafka_enabled=True,
            minimum_tls_version=eventhub.TlsVersion.TLS_VERSION_1_2,
            public_network_access=(
                eventhub.PublicNetworkAccess.ENABLED
                if args.public_network_access
                else eventhub.PublicNetworkAccess.DISABLED
            ),
            identity={"type": eventhub.ManagedServiceIdentityType.SYSTEM_ASSIGNED},
            disable_local_auth=False,  # the bridge authenticates with the send-only rule's key
            tags=args.tags,
            opts=opts,
        )

    @staticmethod
    def _hub(
        hub: str,
        partitions: int,
        args: CloudArgs,
        group: pulumi.Output[str],
        namespace: eventhub.Namespace,
        opts: pulumi.ResourceOptions,
    ) -> eventhub.EventHub:
        created = eventhub.EventHub(
            hub,
            event_hub_name=hub,
            namespace_name=namespace.name,
            resource_group_name=group,
            partition_count=partitions,
            retention_description={
                "cleanup_policy": eventhub.CleanupPolicyRetentionDescription.DELETE,
                "retention_time_in_hours": RETENTION_HOURS,
            },
            opts=opts,
        )
        for consumer in args.consumers:
            eventhub.ConsumerGroup(
                f"{hub}-{consumer}",
                consumer_group_name=consumer,
                event_hub_name=created.name,
                namespace_name=namespace.name,
                resource_group_name=group,
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(parent=created)),
            )
        return created


def kafka_endpoint(service_bus_endpoint: str) -> str:
    """Return the Kafka bootstrap server of a namespace (`https://NS.servicebus.windows.net:443/` -> `NS...:9093`)."""
    host = service_bus_endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return f"{host}:9093"
