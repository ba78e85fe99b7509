"""The bridge's configuration: every machine has a topic, credentials fit the protocol, errors name their path."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_support import bridge_config, config_data
from plantline.bridge.config import load_config, parse_config
from plantline.connectors.config import ConfigError


def test_a_machine_whose_equipment_type_has_no_topic_is_refused_naming_the_machine() -> None:
    data = config_data(topics={"filler": "plantline.filler"})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="bridge.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("bridge.yaml") is False
    assert "lines[0].machines.capper: equipment type 'capper' has no topic" in problem
    assert "add topics.capper" in problem


def test_topic_names_and_edge_nodes_are_checked() -> None:
    line = config_data()["lines"][0]
    data = config_data(topics={"filler": "bad topic!", "capper": "ok"}, lines=[line, line])
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="bridge.yaml")
    text = str(caught.value)
    assert "topics.filler: 'bad topic!' is not a Kafka topic name" in text
    assert "lines[1].edge_node_ids: site1/line1 belongs to two lines" in text


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "security_protocol SASL_SSL needs sasl"),
        ({"security_protocol": "SSL", "sasl": {"password_file": "/p"}}, "sasl is set but security_protocol SSL"),
        ({"sasl": {"mechanism": "PLAIN"}}, "PLAIN needs password_file"),
        (
            {"sasl": {"mechanism": "OAUTHBEARER", "client_id": "a"}},
            "OAUTHBEARER needs token_endpoint, client_secret_file",
        ),
    ],
)
def test_kafka_credentials_must_fit_the_security_protocol(kafka: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_data(kafka={"bootstrap_servers": "ns.servicebus.windows.net:9093", **kafka}), source="b")


def test_event_hubs_defaults_sasl_ssl_plain_with_the_connection_string_user(tmp_path: Path) -> None:
    secret = tmp_path / "connection-string"
    config = bridge_config(kafka={"bootstrap_servers": "ns.servicebus.windows.net:9093",
                                  "sasl": {"password_file": str(secret)}})  # fmt: skip
    assert config.kafka.security_protocol == "SASL_SSL"
    assert (config.kafka.sasl and config.kafka.sasl.username) == "$ConnectionString"
    assert config.kafka.endpoint == "ns.servicebus.windows.net:9093"
    assert config.group_ids == ["site1"]


def test_a_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("mqtt: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
