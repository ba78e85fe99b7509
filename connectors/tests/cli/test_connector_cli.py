"""`plantline-connector run --check`: validate a config, report each problem by path, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLI = [sys.executable, "-m", "plantline.connectors.cli"]

CONFIG = {
    "sparkplug": {"group_id": "site1", "edge_node_id": "line1"},
    "brokers": [{"host": "127.0.0.1", "port": 1883, "insecure_plaintext": True}],
    "outbox": {"directory": "/tmp/outbox"},
    "state_directory": "/tmp/state",
    "devices": [
        {
            "id": "filler",
            "protocol": "opcua",
            "endpoint": "opc.tcp://127.0.0.1:4840/",
            "tags": [{"signal": "state.run", "address": "ns=2;s=Filler.state.run", "datatype": "bool"}],
        }
    ],
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_accepts_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    result = run("run", "--config", str(path), "--check", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "valid": True,
        "file": str(path),
        "edge_node": "site1/line1",
        "devices": ["filler"],
        "tags": 1,
    }


def test_check_names_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(CONFIG))
    bad["devices"][0]["tags"][0]["address"] = "DB1.DBX0.0"
    bad["brokers"][0]["insecure_plaintext"] = False
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run("run", "--config", str(path), "--check")
    assert result.returncode == 2
    assert f"{path}: devices[0].tags[0].address: 'DB1.DBX0.0' is not an OPC UA NodeId" in result.stderr
    assert f"{path}: brokers[0]: tls is required" in result.stderr
    assert result.stdout == ""


def test_help_shows_examples_and_exit_status() -> None:
    result = run("run", "--help")
    assert result.returncode == 0
    assert "plantline-connector run --config" in result.stdout
    assert "exit status" in result.stdout


S7_DEVICE = {
    "id": "capper",
    "protocol": "s7",
    "endpoint": "s7://127.0.0.1:1102?rack=0&slot=1",
    "tags": [{"signal": "state.run", "address": "DB10.DBX0.0", "datatype": "bool"}],
}


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a Python that cannot import `module`, as when its extra is not installed."""
    script = f"import sys; sys.modules[{module!r}] = None; from plantline.connectors.cli import main; main()"
    argv = [sys.executable, "-c", script, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _config_file(tmp_path: Path) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["devices"].append(S7_DEVICE)
    config["outbox"]["directory"] = str(tmp_path / "outbox")
    config["state_directory"] = str(tmp_path / "state")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("asyncua", "the OPC UA source needs the 'opcua' extra (no module named 'asyncua'): "
                    "pip install 'plantline-connectors[opcua]'"),
        ("snap7", "the S7 source needs the 's7' extra (no module named 'snap7'): "
                  "pip install 'plantline-connectors[s7]'"),
        ("prometheus_client", "the connector runtime needs the 'runtime' extra (no module named 'prometheus_client'): "
                              "pip install 'plantline-connectors[runtime]'"),
    ],
)  # fmt: skip
def test_run_names_the_missing_extra_and_exits_2(module: str, message: str, tmp_path: Path) -> None:
    path = _config_file(tmp_path)
    result = run_without(module, "run", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert entry["msg"] == f"{path}: {message}"
    assert not (tmp_path / "outbox").exists()  # it stopped before opening anything


def test_check_needs_no_extra(tmp_path: Path) -> None:
    result = run_without("asyncua", "run", "--config", str(_config_file(tmp_path)), "--check")
    assert result.returncode == 0, result.stderr
    assert "valid (2 devices, 2 tags)" in result.stdout
