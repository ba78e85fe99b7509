"""The `plantline` command: exit codes, data on stdout, messages on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from plantline.connectors.config import load_config
from plantline.operator.cli import main
from plantline.operator.crd import crd_yaml

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


def test_operator_run_needs_the_connector_image(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["operator", "run"])
    assert exit_.value.code == 2
    assert "--connector-image" in capsys.readouterr().err
