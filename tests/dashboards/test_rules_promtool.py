"""The line's rule file under promtool: it checks, and every alert fires when it should and only then."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors import metric_names as m
from plantline.dashboards import broker as b
from plantline.dashboards.render import rules_yaml
from plantline.dashboards.rules import alert_names
from plantline_testing import find_program
from plantline_testing.lines import demo_line_view

DEMO_VIEW = demo_line_view()  # the demo line with a bridge and the cloud bridge: every alert is generated

pytestmark = pytest.mark.peer

LINE = 'site="site1", line="line1"'
CONNECTOR = f'{LINE}, component="connector", connector="line1"'
CLOUD_BRIDGE = f'{LINE}, component="bridge"'
MAX_BYTES = 256 << 20
EVAL = "90m"  # past every rule's `for` (the longest is 1h)
SAMPLES = 120  # one a minute


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def _flat(value: float) -> str:
    return f"{value:g}x{SAMPLES}"


def _rising(per_minute: float) -> str:
    return f"0+{per_minute:g}x{SAMPLES}"


def _gauge(name: str, labels: str, fire: float, quiet: float) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return [_series(name, labels, _flat(fire))], [_series(name, labels, _flat(quiet))]


def _dropped(dropped_per_minute: float) -> list[dict[str, str]]:
    return [
        _series(b.PUBLISH_DROPPED.name, f'topic="{b.PUBLISH_DROPPED.topic}", {LINE}', _rising(dropped_per_minute)),
        _series(b.PUBLISH_SENT.name, f'topic="{b.PUBLISH_SENT.topic}", {LINE}', _rising(100)),
    ]


def _histogram(metric: m.MetricDefinition, labels: str, le: str, fast_per_minute: float) -> list[dict[str, str]]:
    """Return a histogram's series: 100 observations a minute, `fast_per_minute` of them within `le`."""
    return [
        _series(f"{metric.name}_bucket", f'{labels}, le="{le}"', _rising(fast_per_minute)),
        _series(f"{metric.name}_count", labels, _rising(100)),
    ]


def _lag(fast_per_minute: float) -> list[dict[str, str]]:
    return _histogram(m.INGEST_LAG, CONNECTOR, "0.5", fast_per_minute)


def _api(fast_per_minute: float, route: str = "/kpi/current") -> list[dict[str, str]]:
    labels = f'{LINE}, component="api", route="{route}", status="200"'
    return _histogram(m.API_REQUEST_DURATION, labels, "0.25", fast_per_minute)


def _bridge(*, up: float = 1, ready: float = 1, kafka: float = 1, pending: float = 0,
            acked_per_minute: float = 100) -> list[dict[str, str]]:  # fmt: skip
    """Return the cloud bridge's series: scraped or not, ready, Kafka reachable, messages waiting and acknowledged."""
    return [
        _series("up", CLOUD_BRIDGE, _flat(up)),
        _series(m.BRIDGE_READY.name, CLOUD_BRIDGE, _flat(ready)),
        _series(m.BRIDGE_KAFKA_UP.name, CLOUD_BRIDGE, _flat(kafka)),
        _series(m.BRIDGE_PENDING.name, CLOUD_BRIDGE, _flat(pending)),
        _series(m.BRIDGE_MESSAGES.name, CLOUD_BRIDGE, _rising(acked_per_minute)),
    ]


def _errors(per_minute: float) -> list[dict[str, str]]:
    labels = 'namespace="plantline", plantline="site1-line1", step="config"'
    return [_series(m.OPERATOR_RECONCILE_ERRORS.name, labels, _rising(per_minute))]


DAY = 86400.0
PLANTLINE = 'namespace="plantline", plantline="site1-line1"'
OTHER_LINE = 'namespace="plantline", plantline="site1-line2"'
CERTIFICATE = f'{PLANTLINE}, identity="site1-line1-line1", role="connector", machines="filler,capper,labeler"'
BRIDGE = b.bridge_state("site1-line1-bridge")
# alert -> (input series that make it fire, input series that keep it quiet)
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {
    "PlantLinePlcDisconnected": _gauge(m.SOURCE_CONNECTED.name, f'{CONNECTOR}, device="capper"', 0, 1),
    "PlantLineConnectorDown": _gauge("up", CONNECTOR, 0, 1),
    "PlantLineBrokerUnreachable": _gauge(m.MQTT_CONNECTED.name, f'{CONNECTOR}, broker="127.0.0.1:8883"', 0, 1),
    "PlantLineBrokerRefusesIdentity": _gauge(m.MQTT_REFUSED.name, CONNECTOR, 1, 0),
    "PlantLineOutboxOld": _gauge(m.OUTBOX_OLDEST_AGE.name, CONNECTOR, 900, 5),
    "PlantLineOutboxFilling": _gauge(m.OUTBOX_BYTES.name, CONNECTOR, 0.6 * MAX_BYTES, 0.1 * MAX_BYTES),
    "PlantLineOutboxQuarantine": _gauge(m.OUTBOX_CORRUPT.name, CONNECTOR, 1, 0),
    # The operator's certificate facts carry their PlantLine, not the scrape's site and line; another
    # line's expiring certificate or CRL is not this line's alert.
    "PlantLineCertificateRenewalOverdue": (
        [_series(m.PKI_CERTIFICATE_NOT_AFTER.name, CERTIFICATE, _flat(10 * DAY))],
        [
            _series(m.PKI_CERTIFICATE_NOT_AFTER.name, CERTIFICATE, _flat(60 * DAY)),
            _series(m.PKI_CERTIFICATE_NOT_AFTER.name, CERTIFICATE.replace(PLANTLINE, OTHER_LINE), _flat(10 * DAY)),
        ],
    ),
    "PlantLineCrlStale": (
        [_series(m.PKI_CRL_NEXT_UPDATE.name, PLANTLINE, _flat(1800))],
        [
            _series(m.PKI_CRL_NEXT_UPDATE.name, PLANTLINE, _flat(30 * DAY)),
            _series(m.PKI_CRL_NEXT_UPDATE.name, OTHER_LINE, _flat(1800)),
        ],
    ),
    "PlantLineBridgeDown": _gauge(BRIDGE.name, f'topic="{BRIDGE.topic}", {LINE}', 0, 1),
    "PlantLineMessagesDroppedBudgetBurn": (_dropped(10), _dropped(0)),
    "PlantLineIngestLagBudgetBurn": (_lag(50), _lag(100)),
    "PlantLineReconcileFailing": (_errors(1), _errors(0)),
    # ready fails without Kafka too: that is Kafka's alert, not the bridge's
    "PlantLineCloudBridgeDown": (_bridge(ready=0), _bridge(ready=0, kafka=0, pending=5, acked_per_minute=0)),
    "PlantLineCloudBridgeKafkaUnreachable": (_bridge(ready=0, kafka=0), _bridge()),
    # messages wait and none is acknowledged: stalled with Kafka there, unreachable without it
    "PlantLineCloudBridgeProduceStalled": (
        _bridge(pending=5, acked_per_minute=0),
        _bridge(ready=0, kafka=0, pending=5, acked_per_minute=0),
    ),
    "PlantLineCloudBridgeDeadLetters": (
        [_series(m.BRIDGE_DEAD_LETTERS.name, f'{CLOUD_BRIDGE}, reason="undecodable"', _rising(1))],
        [_series(m.BRIDGE_DEAD_LETTERS.name, f'{CLOUD_BRIDGE}, reason="undecodable"', _flat(3))],
    ),
    "PlantLineCloudBridgeMqttLag": _gauge(m.BRIDGE_MQTT_LAG.name, CLOUD_BRIDGE, 120, 2),
    "PlantLineCloudBridgeLatencyBudgetBurn": (
        _histogram(m.BRIDGE_PRODUCE_LATENCY, CLOUD_BRIDGE, "1.0", 50),  # prometheus_client writes 1 as 1.0
        _histogram(m.BRIDGE_PRODUCE_LATENCY, CLOUD_BRIDGE, "1.0", 100),
    ),
    # quiet: the API's requests are fast; its slow /metrics scrapes are no request of the objective
    "PlantLineApiLatencyBudgetBurn": (_api(50), _api(100) + _api(0, route="/metrics")),
}


def _case(alert: str, series: list[dict[str, str]], *, fires: bool) -> dict[str, Any]:
    # firing: at least the critical (or only) one; quiet: not even pending
    state = 'alertstate="firing"' if fires else 'alertstate=~".+"'
    expr = f'count(ALERTS{{alertname="{alert}", {state}}}) > bool 0 or vector(0)'
    test = {"expr": expr, "eval_time": EVAL, "exp_samples": [{"labels": "{}", "value": 1 if fires else 0}]}
    return {"name": f"{alert} {'fires' if fires else 'stays quiet'}", "interval": "1m", "input_series": series,
            "promql_expr_test": [test]}  # fmt: skip


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([find_program("promtool"), *args], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yml").write_text(rules_yaml(DEMO_VIEW))
    return tmp_path


def test_promtool_checks_the_rule_file(rules_dir: Path) -> None:
    done = _promtool("check", "rules", "rules.yml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_here() -> None:
    assert sorted(alert_names(DEMO_VIEW)) == sorted(CASES)


def _passes(rules_dir: Path, cases: list[dict[str, Any]]) -> None:
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": cases}
    (rules_dir / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    done = _promtool("test", "rules", "test.yml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_fires_when_it_should_and_stays_quiet_otherwise(rules_dir: Path, alert: str) -> None:
    fire, quiet = CASES[alert]
    _passes(rules_dir, [_case(alert, fire, fires=True), _case(alert, quiet, fires=False)])


# Further situations of the cloud bridge's alerts: (alert, input series, fires).
MORE_CLOUD_BRIDGE_CASES = [
    ("PlantLineCloudBridgeDown", _bridge(up=0), True),  # not scraped: crashed, or stopped by a refusal
    ("PlantLineCloudBridgeDown", _bridge(), False),
    ("PlantLineCloudBridgeProduceStalled", _bridge(pending=5), False),  # messages wait, and keep being acknowledged
    ("PlantLineCloudBridgeKafkaUnreachable", _bridge(ready=0, pending=5, acked_per_minute=0), False),
]


@pytest.mark.parametrize(("alert", "series", "fires"), MORE_CLOUD_BRIDGE_CASES)
def test_the_cloud_bridge_alerts_tell_their_causes_apart(
    rules_dir: Path, alert: str, series: list[dict[str, str]], fires: bool
) -> None:
    _passes(rules_dir, [_case(alert, series, fires=fires)])


def test_a_promtool_case_fails_when_the_alert_does_not_fire(rules_dir: Path) -> None:
    quiet = CASES["PlantLinePlcDisconnected"][1]
    case = _case("PlantLinePlcDisconnected", quiet, fires=True)
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [case]}
    (rules_dir / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    assert _promtool("test", "rules", "test.yml", cwd=rules_dir).returncode == 1


def test_the_certificate_alert_names_the_line_the_identity_its_role_and_machines(rules_dir: Path) -> None:
    fire = CASES["PlantLineCertificateRenewalOverdue"][0]
    alert = {"eval_time": EVAL, "alertname": "PlantLineCertificateRenewalOverdue", "exp_alerts": []}
    test = {"interval": "1m", "input_series": fire, "alert_rule_test": [alert]}
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [test]}
    (rules_dir / "test.yml").write_text(yaml.safe_dump(tests))
    done = _promtool("test", "rules", "test.yml", cwd=rules_dir)
    # promtool prints the alert it got against the (empty) expectation: its labels and annotations
    assert done.returncode == 1
    for shown in ('site="site1"', 'line="line1"', 'role="connector"', "filler,capper,labeler", "site1-line1-line1",
                  "PlantLine plantline/site1-line1"):  # fmt: skip
        assert shown in done.stdout + done.stderr, shown
