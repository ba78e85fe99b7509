"""`plantline up --monitoring` end to end: Prometheus scrapes the line and every query finds its series.

Prometheus (Debian's) scrapes the connector, the broker exporter (mqtt-exporter), the certificate
facts `up` serves and, with PostgreSQL installed, the historian's KPI API (after one request to
it). Every dashboard query and every rule's probe must return at least one series, save those
named in EVENT_ONLY (series that exist only once something has happened), the operator's (no
operator runs under `up`) and the KPI API's when the line runs no historian. Then a PLC simulator
and the broker are stopped in turn (SIGSTOP: a hung PLC and a hung broker), and the matching
alerts must go pending.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantline.connectors import metric_names as m
from plantline.dashboards import LineView
from plantline.dashboards.line import OPERATOR
from plantline.operator.api import parse_plantline
from plantline.operator.local_historian import postgres_bin
from plantline.operator.render import line_view
from plantline_testing.broker_exporter import broker_exporter
from plantline_testing.lines import UpRun, free_run, line_copy
from plantline_testing.prometheus import PrometheusApi, line_queries, wait_for

pytestmark = [pytest.mark.peer, pytest.mark.slow]

# Series a connector exposes only once the event they count has happened (a labelled counter has no
# sample before its first increment; MTTR and MTBF are undefined before a fault has ended).
EVENT_ONLY = {
    m.KPI_MTTR.name: "defined once a fault has ended",
    m.KPI_MTBF.name: "defined once a fault has ended",
    m.SOURCE_READ_ERRORS.name: "counted from the first read error",
    m.SAMPLES_BAD_QUALITY.name: "counted from the first bad-quality sample",
    m.OUTBOX_DROPPED.name: "counted from the first sample the outbox drops at its bounds",
    m.OUTBOX_QUARANTINED.name: "counted from the first sample set aside as no longer fitting the configuration",
}
OPERATOR_NAMES = tuple(metric.name for metric in m.OPERATOR_METRICS)
API_NAMES = tuple(metric.name for metric in m.API_METRICS)


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[tuple[UpRun, PrometheusApi, LineView]]:
    line_file = tmp_path / "line.yaml"
    data = line_copy(line_file)
    port = free_run(3)
    args = ["--monitoring", "--prometheus-port", str(port), "--broker-exporter", str(broker_exporter())]
    run = UpRun(line_file, tmp_path / "state", up_args=args)
    try:
        done = run.up_detached()
        assert f"prometheus: http://127.0.0.1:{port}" in done.stdout
        yield run, PrometheusApi(f"http://127.0.0.1:{port}"), line_view(parse_plantline(data))
    finally:
        run.down()
        run.kill_all()


def _exempt(expr: str, *, historian: bool) -> str | None:
    if any(name in expr for name in OPERATOR_NAMES):
        return f"{OPERATOR}: no operator runs under plantline up"
    if not historian and any(name in expr for name in API_NAMES):
        return "no PostgreSQL here: the line runs no historian and no KPI API"
    return next((why for name, why in EVENT_ONLY.items() if name in expr), None)


def _answers(run: UpRun) -> bool | None:
    try:
        run.api("/machines/status")
    except (OSError, ValueError):  # not listening yet, or the historian's schema not there yet
        return None
    return True


def test_every_query_finds_series_and_outages_raise_their_alerts(
    monitored: tuple[UpRun, PrometheusApi, LineView],
) -> None:
    run, api, view = monitored
    historian = postgres_bin() is not None  # with PostgreSQL, up runs the historian and its KPI API
    assert ("api" in json.loads((run.state_dir / "pids.json").read_text())["children"]) == historian
    targets = 4 if historian else 3  # connector, broker exporter, certificate facts (and the KPI API)
    up = wait_for(lambda: len([t for t in api.targets() if t["health"] == "up"]) == targets or None, 90, "targets up")
    assert up
    if historian:  # the API's histogram has series from its first request
        wait_for(lambda: _answers(run), 90, "the KPI API")
        wait_for(lambda: api.query(f"{m.API_REQUEST_DURATION.name}_count"), 60, "the KPI API's request timings")
    wait_for(lambda: api.query("plantline:ingest_lag_slow:ratio_rate5m"), 120, "the SLO recording rules")

    capper = run.child_pid("sim/capper")
    os.kill(capper, signal.SIGSTOP)  # a PLC that stops answering
    try:
        wait_for(lambda: api.active("PlantLinePlcDisconnected", device="capper"), 120, "PLC alert pending")
    finally:
        os.kill(capper, signal.SIGCONT)
    wait_for(lambda: not api.active("PlantLinePlcDisconnected") or None, 120, "the PLC alert to clear")

    broker = run.child_pid("broker")
    os.kill(broker, signal.SIGSTOP)  # a broker that stops answering
    try:
        found = wait_for(lambda: api.active("PlantLineBrokerUnreachable"), 120, "broker alert pending")
        assert found[0]["labels"]["connector"] == "line1"
        assert "filler, capper, labeler" in str(found[0]["annotations"]["description"])
    finally:
        os.kill(broker, signal.SIGCONT)
    wait_for(lambda: api.query(f"{m.MQTT_CONNECTED.name} == 1"), 120, "the MQTT session again")

    queries = [(where, expr) for where, expr in line_queries(view) if not _exempt(expr, historian=historian)]
    empty = [(where, expr) for where, expr in queries if not api.query(expr)]
    assert empty == [], "\n".join(f"{where}: {expr}" for where, expr in empty)
    assert api.query(f'{m.SOURCE_RECONNECTS.name}{{device="capper"}}'), "the stopped PLC was reconnected"
