"""`plantline-connector run --check`: validate a config, report each problem by path, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
