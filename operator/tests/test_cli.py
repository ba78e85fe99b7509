"""The `plantline` command: exit codes, data on stdout, messages on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from plantline.connectors.config import load_config
from plantline.connectors.extras import MissingExtra
from plantline.operator.cli import build_parser, main
from plantline.operator.crd import crd_yaml
from plantline.operator.model import ConnectorSettings

from .certificates import self_signed_pem

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo-line.yaml"
INVALID = Path(__file__).parent / "invalid"


def test_validate_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "valid PlantLine site1-line1 (3 machines)" in err


def test_validate_invalid_prints_paths(capsys: pytest.CaptureFixture[str]) -> None:
    path = INVALID / "duplicate-machine-id.yaml"
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: spec.machines[1].id: 'filler' is already the id of machines[0]\n"


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "json", str(INVALID / "missing-endpoint.yaml")]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    assert data["errors"] == [{"path": "spec.machines[0].endpoint", "message": "Field required"}]
    assert main(["validate", "--format", "json", str(DEMO)]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_validate_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert main(["validate", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_crd_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_render_writes_data_files_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", str(DEMO), "--out", str(out), "--tls-dir", "/tls", "--data-dir", "/data"]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "certificates.json",
        "connectors/line1.yaml",
        "mosquitto/acl",
        "mosquitto/mosquitto.conf",
    ]
    stdout, _ = capsys.readouterr()
    assert sorted(stdout.splitlines()) == [str(out / name) for name in written]
    config = load_config(out / "connectors" / "line1.yaml")
    assert config.sparkplug.edge_node_id == "line1"  # the demo runs the line as one edge node
    assert [d.id for d in config.devices] == ["filler", "capper", "labeler"]
    plan = json.loads((out / "certificates.json").read_text())
    assert [c["identity"] for c in plan["certificates"]][-2:] == ["site1-line1-broker", "site1-line1-reader"]
    assert "PRIVATE KEY" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "acl_file /data/broker/acl" in (out / "mosquitto" / "mosquitto.conf").read_text()

    assert main(["render", str(DEMO), "--out", str(out)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert main(["render", str(DEMO), "--out", str(out), "--force"]) == 0


def test_render_with_a_primary_host_plans_its_certificate_and_grants_it(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text())
    data["spec"]["primaryHostId"] = "scada"
    line_file, out = tmp_path / "line.yaml", tmp_path / "out"
    line_file.write_text(yaml.safe_dump(data))
    assert main(["render", str(line_file), "--out", str(out)]) == 0
    plan = json.loads((out / "certificates.json").read_text())["certificates"]
    assert [(c["identity"], c["role"]) for c in plan if c["role"] == "host"] == [("site1-line1-host", "host")]
    assert {c["role"] for c in plan} == {"connector", "broker", "reader", "host"}
    acl = (out / "mosquitto" / "acl").read_text()
    assert "user site1-line1-host\ntopic write spBv1.0/STATE/scada\n" in acl
    conf = (out / "mosquitto" / "mosquitto.conf").read_text()
    assert "listener 8883 127.0.0.1\n" in conf  # the line's broker.host


def test_render_writes_the_opcua_server_certificates_a_machine_trusts(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text())
    plc = self_signed_pem()
    trust = {"certificates": [plc]}
    data["spec"]["machines"][0]["opcua"] = {
        "securityPolicy": "Basic256Sha256",
        "securityMode": "Sign",
        "serverTrust": trust,
    }
    line_file, out = tmp_path / "line.yaml", tmp_path / "out"
    line_file.write_text(yaml.safe_dump(data))
    assert main(["render", str(line_file), "--out", str(out), "--tls-dir", "/tls"]) == 0
    assert (out / "opcua" / "site1-line1-filler-ua-servers.pem").read_text() == plc.strip() + "\n"
    filler = load_config(out / "connectors" / "line1.yaml").devices[0]
    assert filler.opcua.server_certificate_file == Path("/tls/site1-line1-filler-ua-servers.pem")
    assert (filler.opcua.trusted_ca_file, filler.opcua.crl_file) == (
        Path("/tls/opcua-ca.pem"),
        Path("/tls/opcua-crl.pem"),
    )
    plan = json.loads((out / "certificates.json").read_text())["certificates"]
    assert [c["sans"] for c in plan if c["role"] == "opcua-application"] == [["uri:urn:plantline:site1:line1:filler"]]


def test_render_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(INVALID / "unknown-protocol.yaml"), "--out", str(tmp_path)]) == 2
    assert "spec.machines[0].protocol" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_example_renders_valid_yaml() -> None:
    assert yaml.safe_load(DEMO.read_text())["kind"] == "PlantLine"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ca-secret", "plantline-ca"], "--ca-secret: expected NAMESPACE/NAME"),
        (["--resync-seconds", "0"], "--resync-seconds: expected a positive number"),
    ],
)
def test_operator_run_refuses_bad_flags_before_connecting(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["operator", "run", "--connector-image", "img:1", *flags]) == 2
    assert message in capsys.readouterr().err


def test_operator_run_needs_the_connector_image(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PLANTLINE_CONNECTOR_IMAGE", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["operator", "run"])
    assert exit_.value.code == 2
    assert "--connector-image" in capsys.readouterr().err


def test_operator_run_takes_the_connector_image_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Deployment sets it (kustomize rewrites it with the images), so the flag is not needed there.
    monkeypatch.setenv("PLANTLINE_CONNECTOR_IMAGE", "registry.example/plantline-connectors:2")
    args = build_parser().parse_args(["operator", "run"])
    assert args.connector_image == "registry.example/plantline-connectors:2"
    args = build_parser().parse_args(["operator", "run", "--connector-image", "img:1", "--storage-class", "fast"])
    assert args.connector_image == "img:1"  # the flag wins
    assert args.storage_class == "fast"
    assert build_parser().parse_args(["operator", "run"]).storage_class is None  # the cluster's default class


def test_the_cloud_bridge_image_is_the_connectors_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTLINE_CONNECTOR_IMAGE", "registry.example/plantline-connectors:2")
    monkeypatch.delenv("PLANTLINE_BRIDGE_IMAGE", raising=False)
    assert build_parser().parse_args(["operator", "run"]).bridge_image is None
    assert ConnectorSettings(image="c:2").cloud_bridge_image == "c:2", "the connectors' image holds the bridge"
    monkeypatch.setenv("PLANTLINE_BRIDGE_IMAGE", "registry.example/bridge:3")
    assert build_parser().parse_args(["operator", "run"]).bridge_image == "registry.example/bridge:3"
    assert ConnectorSettings(image="c:2", bridge_image="b:3").cloud_bridge_image == "b:3"


@pytest.fixture
def up_never_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test, instead of running a line, should `up` go past its check of the extras."""
    from plantline.operator import local

    def refuse(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("plantline up went on without an extra it needs")

    monkeypatch.setattr(local, "run_up", refuse)
    monkeypatch.setattr(local, "detach", refuse)


LOCAL = "'plantline-operator[local]'"


@pytest.mark.usefixtures("up_never_starts")
@pytest.mark.parametrize(
    ("module", "flags", "message"),
    [
        ("asyncua", [], f"the OPC UA source needs the 'opcua' extra (no module named 'asyncua'): "
                        f"pip install 'plantline-connectors[opcua]' or {LOCAL}"),
        ("snap7", ["--detach"], "the S7 source needs the 's7' extra (no module named 'snap7')"),
        ("pycomm3", ["--simulate"], "the EtherNet/IP source needs the 'cip' extra (no module named 'pycomm3')"),
        ("paho.mqtt", [], f"the connector runtime needs the 'runtime' extra (no module named 'paho.mqtt'): "
                          f"pip install 'plantline-connectors[runtime]' or {LOCAL}"),
        ("rich", ["--detach"], f"this command needs the 'local' extra (no module named 'rich'): pip install {LOCAL}"),
        ("cpppo", ["--simulate"], "the EtherNet/IP simulator needs the 'simulate' extra (no module named 'cpppo'): "
                                  "pip install 'plantline-operator[simulate]'"),
    ],
)  # fmt: skip
def test_up_names_the_extra_it_misses_and_starts_nothing(
    module: str, flags: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when the module is not installed
    state = tmp_path / "state"
    assert main(["up", str(DEMO), "--state-dir", str(state), *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"plantline up: {message}")
    assert err.count("\n") == 1
    assert not state.exists()


def test_up_without_simulate_does_not_need_the_simulator() -> None:
    from plantline.operator import extras

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "cpppo", None)
        extras.require_up(["opcua", "s7", "cip"], simulate=False)
        with pytest.raises(MissingExtra, match="'simulate' extra"):
            extras.require_up(["opcua", "s7", "cip"], simulate=True)
        extras.require_up(["opcua", "s7"], simulate=True)  # only the EtherNet/IP simulator runs cpppo


@pytest.mark.parametrize("command", ["status", "reload", "down"])
def test_commands_on_a_running_line_name_the_local_extra(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main([command, "--state-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"plantline {command}: this command needs the 'local' extra (no module named 'rich'): pip install {LOCAL}\n"
    )


def test_operator_run_names_the_kube_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "kopf", None)
    assert main(["operator", "run", "--connector-image", "img:1"]) == 2
    assert capsys.readouterr().err == (
        "plantline operator run: this command needs the 'kube' extra (no module named 'kopf'): "
        "pip install 'plantline-operator[kube]'\n"
    )


def test_broker_plan_names_the_emqx_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    assert main(["broker", "plan", str(DEMO), "--emqx", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == (
        "plantline broker plan: this command needs the 'emqx' extra (no module named 'httpx'): "
        "pip install 'plantline-operator[emqx]'\n"
    )


def test_validate_crd_and_render_need_no_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plantline.connectors import extras as connector_extras
    from plantline.operator import extras

    for modules in [*extras.EXTRA_MODULES.values(), *connector_extras.EXTRA_MODULES.values()]:
        for module in set(modules) - {"cryptography"}:  # the pki's, in the base install too
            monkeypatch.setitem(sys.modules, module, None)
    assert main(["validate", str(DEMO)]) == 0
    assert main(["crd"]) == 0
    assert main(["render", str(DEMO), "--out", str(tmp_path / "out")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_dashboards_writes_grafana_and_prometheus_files_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "monitoring"
    assert main(["dashboards", str(DEMO), "--out", str(out), "--runbook-base", "https://runbooks.example/rb"]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "grafana/plantline-site1-line1-broker.json",
        "grafana/plantline-site1-line1-core.json",
        "grafana/plantline-site1-line1-edge.json",
        "grafana/plantline-site1-line1-oee.json",
        "prometheus/plantline-site1-line1.rules.yml",
    ]
    rules = yaml.safe_load((out / "prometheus/plantline-site1-line1.rules.yml").read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"] if "alert" in r]
    assert alerts
    assert all(r["annotations"]["runbook_url"].startswith("https://runbooks.example/rb/") for r in alerts)
    oee = json.loads((out / "grafana/plantline-site1-line1-oee.json").read_text())
    assert oee["title"] == "PlantLine site1/packaging/line1: Line / OEE"
    capsys.readouterr()
    assert main(["dashboards", str(DEMO), "--out", str(out)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert main(["dashboards", str(DEMO), "--out", str(out), "--force"]) == 0


def test_dashboards_adds_the_cloud_bridge_board_and_alerts_only_when_asked(tmp_path: Path) -> None:
    def rendered(out: Path, *flags: str) -> tuple[set[str], set[str]]:
        assert main(["dashboards", str(DEMO), "--out", str(out), *flags]) == 0
        rules = yaml.safe_load((out / "prometheus/plantline-site1-line1.rules.yml").read_text())
        alerts = {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}
        return {p.name for p in (out / "grafana").iterdir()}, alerts

    boards, alerts = rendered(tmp_path / "plain")
    with_bridge, bridge_alerts = rendered(tmp_path / "cloud", "--cloud-bridge")
    assert with_bridge - boards == {"plantline-site1-line1-cloud.json"}
    assert {a for a in bridge_alerts - alerts if a.startswith("PlantLineCloudBridge")} == bridge_alerts - alerts
    assert {"PlantLineCloudBridgeDown", "PlantLineCloudBridgeKafkaUnreachable"} <= bridge_alerts - alerts
