"""The producer's settings (idempotent, acks=all, batching), its secrets, and the batch statistics it reports."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from bridge_support import bridge_config
from plantline.bridge.kafka import KafkaLink, KafkaUnavailable, batch_stats, client_settings, producer_settings

CONNECTION_STRING = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=s3cr3t="


def _event_hubs(tmp_path: Path, **producer: object) -> dict[str, object]:
    secret = tmp_path / "connection-string"
    secret.write_text(CONNECTION_STRING + "\n")
    return {"bootstrap_servers": "ns.servicebus.windows.net:9093", "sasl": {"password_file": str(secret)},
            "producer": producer}  # fmt: skip


def test_the_producer_is_idempotent_with_acks_all_and_the_configured_batching(tmp_path: Path) -> None:
    config = bridge_config(kafka=_event_hubs(tmp_path, linger_ms=50, batch_records=800, compression="gzip"))
    settings = producer_settings(config.kafka)
    assert settings["enable.idempotence"] is True
    assert settings["acks"] == "all"
    assert settings["max.in.flight.requests.per.connection"] <= 5  # what idempotence allows
    assert (settings["linger.ms"], settings["batch.num.messages"], settings["compression.type"]) == (50, 800, "gzip")
    assert settings["message.timeout.ms"] == 0, "records never expire: their MQTT messages stay unacknowledged"
    assert settings["message.max.bytes"] > config.kafka.producer.max_record_bytes


def test_event_hubs_gets_sasl_ssl_plain_with_the_connection_string_from_its_file(tmp_path: Path) -> None:
    settings = client_settings(bridge_config(kafka=_event_hubs(tmp_path)).kafka)
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanism"] == "PLAIN"
    assert settings["sasl.username"] == "$ConnectionString"
    assert settings["sasl.password"] == CONNECTION_STRING, "read from the file, without its newline"


def test_oauth_uses_oidc_client_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("app-secret")
    sasl = {"mechanism": "OAUTHBEARER", "token_endpoint": "https://login.example/t", "client_id": "app",
            "client_secret_file": str(secret), "scope": "https://ns.servicebus.windows.net/.default"}  # fmt: skip
    settings = client_settings(bridge_config(kafka={"bootstrap_servers": "ns:9093", "sasl": sasl}).kafka)
    assert settings["sasl.oauthbearer.method"] == "oidc"
    assert settings["sasl.oauthbearer.client.secret"] == "app-secret"
    assert settings["sasl.oauthbearer.scope"] == "https://ns.servicebus.windows.net/.default"


def test_a_missing_secret_file_is_named_and_the_configuration_shows_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = bridge_config(kafka=_event_hubs(tmp_path))
    assert "s3cr3t" not in repr(config)
    assert "s3cr3t" not in config.model_dump_json()
    (tmp_path / "connection-string").unlink()
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(KafkaUnavailable, match=r"SASL password file .*connection-string"),
    ):
        client_settings(config.kafka)


def test_batch_statistics_weigh_each_topics_window() -> None:
    report = {
        "topics": {
            "plantline.filler": {"batchcnt": {"cnt": 30, "avg": 400, "p50": 380, "p99": 990, "max": 1000}},
            "plantline.capper": {"batchcnt": {"cnt": 10, "avg": 200, "p50": 190, "p99": 260, "max": 300}},
            "plantline.deadletter": {"batchcnt": {"cnt": 0, "avg": 0}},
        }
    }
    stats = batch_stats(json.loads(json.dumps(report)))
    assert stats.batches == 40
    assert stats.avg == pytest.approx(350)
    assert (stats.p50, stats.p99, stats.max) == (380, 990, 1000)
    assert batch_stats({}).batches == 0


def test_refused_credentials_are_fatal_and_name_the_endpoint_while_other_errors_are_retried() -> None:
    link = KafkaLink(bridge_config(kafka={"bootstrap_servers": "127.0.0.1:1,127.0.0.2:1",
                                          "security_protocol": "PLAINTEXT"}).kafka)  # fmt: skip
    reports = [
        KafkaError(KafkaError._TRANSPORT, "Connection refused"),
        KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"),
        KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed"),
        KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "later"),
    ]
    link.up = True
    seen = []
    for report in reports:
        link._on_error(report)
        seen.append((link.up, link.fatal))
    refused = (
        "Kafka at 127.0.0.1:1 refused the bridge: _AUTHENTICATION: SASL authentication error: Authentication failed"
    )
    assert seen == [(True, None), (False, None), (False, refused), (False, refused)], "the first refusal is kept"


def test_the_statistics_report_sets_batch_sizes_and_whether_a_broker_is_up() -> None:
    link = KafkaLink(bridge_config(kafka={"bootstrap_servers": "127.0.0.1:1", "security_protocol": "PLAINTEXT"}).kafka)
    report: dict[str, Any] = {
        "brokers": {
            "127.0.0.1:1/bootstrap": {"nodeid": -1, "state": "UP"},
            "127.0.0.1:1/1": {"nodeid": 1, "state": "DOWN"},
        },
        "topics": {"t": {"batchcnt": {"cnt": 2, "avg": 500, "p50": 480, "p99": 900, "max": 1000}}},
    }
    link._on_stats(json.dumps(report))
    assert link.up is False, "a bootstrap connection is not a broker"
    assert (link.batches.avg, link.batches.max) == (500, 1000)
    report["brokers"]["127.0.0.1:1/1"]["state"] = "UP"
    report["topics"]["t"]["batchcnt"] = {"cnt": 0, "avg": 0, "p50": 0, "p99": 0, "max": 0}
    link._on_stats(json.dumps(report))
    assert (link.up, link.batches.avg) == (True, 500), "an idle window keeps the sizes of the last batches sent"
