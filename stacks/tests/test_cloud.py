"""The cloud stack under Pulumi's mocks: the namespace's security, hubs, partitions, retention, the bridge's key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stack_mocks import Recorder, Settled, run_program

from plantline.stacks.cloud import program
from plantline.stacks.cloud.component import kafka_endpoint
from plantline.stacks.sizing import SizingError


@pytest.fixture
def recorder() -> Recorder:
    """Fresh mocks for one test."""
    return Recorder()


KEY = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=bridge-send;SharedAccessKey=c2VjcmV0LWtleQ=="
LIST_KEYS = "azure-native:eventhub:listNamespaceKeys"
NAMESPACE = "azure-native:eventhub:Namespace"
HUB = "azure-native:eventhub:EventHub"
GROUP = "azure-native:eventhub:ConsumerGroup"
RULE = "azure-native:eventhub:NamespaceAuthorizationRule"
EQUIPMENT = [{"name": "Packaging", "expectedMBps": 2.5}, {"name": "filling line", "expectedMBps": 0.2}]


def provision(recorder: Recorder, **config: Any) -> dict[str, Settled]:
    recorder.calls = {LIST_KEYS: {"primaryConnectionString": KEY, "primaryKey": "c2VjcmV0LWtleQ=="}}
    settings = {"location": "westeurope", "equipment": EQUIPMENT, **config}
    hubs = program.main
    return run_program(
        recorder,
        lambda: _outputs(hubs()),
        project="plantline-cloud",
        config={k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()},
        secret_keys=[],
    )


def _outputs(hubs: Any) -> dict[str, Any]:
    import pulumi

    return {
        "namespaceName": hubs.namespace_name,
        "kafkaEndpoint": hubs.kafka_endpoint,
        "hubs": pulumi.Output.from_input(hubs.hubs),
        "bridgeConnectionString": hubs.bridge_connection_string,
    }


@pytest.fixture
def cloud(recorder: Recorder) -> Recorder:
    provision(recorder)
    return recorder


def test_the_namespace_speaks_kafka_over_tls_1_2_with_a_managed_identity(cloud: Recorder) -> None:
    (namespace,) = cloud.of_type(NAMESPACE)
    inputs = namespace.inputs
    assert inputs["sku"] == {"name": "Standard", "tier": "Standard", "capacity": 1}
    assert inputs["kafkaEnabled"] is True
    assert inputs["minimumTlsVersion"] == "1.2"
    assert inputs["publicNetworkAccess"] == "Enabled"
    assert inputs["identity"] == {"type": "SystemAssigned"}
    assert inputs["disableLocalAuth"] is False
    assert inputs["location"] == "westeurope"
    (group,) = cloud.of_type("azure-native:resources:ResourceGroup")
    assert inputs["resourceGroupName"] == group.inputs.get("resourceGroupName", group.name)


def test_public_access_tier_and_capacity_come_from_the_config(recorder: Recorder) -> None:
    provision(recorder, tier="Premium", capacity="4", publicNetworkAccess="false", resourceGroup="plant-rg")
    (namespace,) = recorder.of_type(NAMESPACE)
    assert namespace.inputs["sku"] == {"name": "Premium", "tier": "Premium", "capacity": 4}
    assert namespace.inputs["publicNetworkAccess"] == "Disabled"
    assert namespace.inputs["resourceGroupName"] == "plant-rg"
    assert recorder.of_type("azure-native:resources:ResourceGroup") == []


def test_one_hub_per_equipment_type_and_a_dead_letter_hub_each_kept_seven_days(cloud: Recorder) -> None:
    hubs = {h.inputs["eventHubName"]: h.inputs for h in cloud.of_type(HUB)}
    assert set(hubs) == {"packaging-equipment", "filling-line-equipment", "dead-letter"}
    assert hubs["packaging-equipment"]["partitionCount"] == 3  # ceil(2.5 MB/s)
    assert hubs["filling-line-equipment"]["partitionCount"] == 1
    assert hubs["dead-letter"]["partitionCount"] == 1
    for name, hub in hubs.items():
        assert hub["retentionDescription"] == {"cleanupPolicy": "Delete", "retentionTimeInHours": 168}, name


def test_partitions_are_clamped_to_the_tiers_limit(recorder: Recorder) -> None:
    provision(recorder, equipment=[{"name": "press", "expectedMBps": 500}], tier="Standard", capacity="40")
    (press,) = [h for h in recorder.of_type(HUB) if h.inputs["eventHubName"] == "press-equipment"]
    assert press.inputs["partitionCount"] == 32
    premium = Recorder()
    provision(premium, equipment=[{"name": "press", "expectedMBps": 500}], tier="Premium", capacity="16")
    (press,) = [h for h in premium.of_type(HUB) if h.inputs["eventHubName"] == "press-equipment"]
    assert press.inputs["partitionCount"] == 100


def test_every_hub_has_a_consumer_group_per_consumer(cloud: Recorder) -> None:
    groups = sorted((g.inputs["eventHubName"], g.inputs["consumerGroupName"]) for g in cloud.of_type(GROUP))
    assert groups == sorted(
        (hub, consumer)
        for hub in ("packaging-equipment", "filling-line-equipment", "dead-letter")
        for consumer in ("analytics", "lakehouse")
    )


def test_the_bridge_may_only_send_and_its_connection_string_is_a_secret_output(cloud: Recorder) -> None:
    (rule,) = cloud.of_type(RULE)
    assert rule.inputs["rights"] == ["Send"]
    assert rule.inputs["authorizationRuleName"] == "bridge-send"
    ((token, asked),) = cloud.invoked
    assert token == LIST_KEYS
    assert asked["authorizationRuleName"] == "bridge-send"


def test_outputs_name_the_hubs_and_keep_the_key_secret(recorder: Recorder) -> None:
    outputs = provision(recorder)
    assert outputs["bridgeConnectionString"] == Settled(KEY, secret=True)
    assert outputs["hubs"] == Settled(
        {"Packaging": "packaging-equipment", "filling line": "filling-line-equipment"}, secret=False
    )
    assert outputs["kafkaEndpoint"].value == f"{outputs['namespaceName'].value}.servicebus.windows.net:9093"
    for name, settled in outputs.items():
        if not settled.secret:
            assert "SharedAccessKey" not in json.dumps(settled.value), name


def test_kafka_endpoint_is_the_namespaces_host_on_9093() -> None:
    assert kafka_endpoint("https://plant-ns.servicebus.windows.net:443/") == "plant-ns.servicebus.windows.net:9093"


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"tier": "Basic"}, "expected one of Standard, Premium"),
        ({"tier": "Premium", "capacity": "3"}, "Premium offers a capacity of 1..16, not 3"),
        ({"capacity": "41"}, "Standard offers a capacity of 1..40, not 41"),
        ({"equipment": []}, "no equipment type"),
        ({"equipment": [{"name": "Press"}, {"name": "press"}]}, "two equipment types name the same hub"),
        ({"equipment": {"name": "press"}}, "expected a JSON list"),
        ({"consumers": []}, "no consumer"),
    ],
)
def test_arguments_the_tier_cannot_take_are_refused(recorder: Recorder, config: dict[str, Any], error: str) -> None:
    with pytest.raises(SizingError, match=error):
        provision(recorder, **config)
