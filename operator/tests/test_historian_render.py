"""The historian beside a line: its configuration, identity and ACL, rendered from the PlantLine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from plantline.connectors.kpi.settings import kpi_config
from plantline.historian.config import HistorianConfig
from plantline.operator.api import PlantLine
from plantline.operator.historian import render_historian_config
from plantline.operator.render import render_acl, render_certificate_requests, render_connector_configs


def test_the_rendered_config_is_the_historians_and_computes_kpis_as_the_edge(demo: PlantLine, tmp_path: Path) -> None:
    data = render_historian_config(
        demo, tls_dir=tmp_path, dsn="host=/x", status_file=tmp_path / "s", token_file=tmp_path / "t", api_port=9999
    )
    config = HistorianConfig.model_validate(data)
    assert config.mqtt.brokers[0].tls is not None
    assert config.mqtt.brokers[0].tls.cert_file == tmp_path / "site1-line1-host.crt"
    assert config.mqtt.primary_host_id is None
    connectors = render_connector_configs(demo, tls_dir=tmp_path, data_dir=tmp_path).values()
    assert {c.sparkplug.edge_node_id for c in connectors} == set(config.lines[0].edge_node_ids)
    for connector in connectors:
        node = connector.sparkplug.edge_node_id
        for device in connector.devices:
            edge = kpi_config(device, connector.shifts)
            assert config.kpi_config("site1", node, device.id) == edge, device.id


def test_the_historian_gets_the_host_identity_and_its_rights_without_a_primary_host(demo: PlantLine) -> None:
    assert "site1-line1-host" not in {r.identity for r in render_certificate_requests(demo)}
    assert "site1-line1-host" in {r.identity for r in render_certificate_requests(demo, historian=True)}
    acl = render_acl(demo, historian=True)
    host = acl.split("user site1-line1-host\n", 1)[1]
    assert "topic write spBv1.0/site1/NCMD/" in host
    assert "topic read spBv1.0/site1/+/line1-capper/#" in host  # the line's edge nodes, nothing wider
    assert "STATE" not in host, "no primary host: no STATE to publish"
    assert "site1-line1-host" not in render_acl(demo)


def test_up_runs_the_line_without_the_historian_when_postgresql_cannot_start(
    demo: PlantLine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plantline.operator import local

    def refused(*_: object, **__: object) -> None:
        raise subprocess.CalledProcessError(1, ["initdb"], stderr=b"unshare: Operation not permitted")

    monkeypatch.setattr(local, "plan_historian", refused)
    line = local.LocalLine(demo, local.Layout(tmp_path), simulate=True, metrics_base_port=9400)
    line._prepare_historian()
    assert (line.historian, line.database, line.hosts) == (None, None, [])
    assert "Operation not permitted): running without the historian" in capsys.readouterr().err
