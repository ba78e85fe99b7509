"""The primary host's certificate: site.yml and rotate_certs.yml issue it on the controller only.

A controller with no edge node in its inventory runs the playbooks from the clone, as an OT
engineer does: only the plays on the controller run, which is where the host identity lives.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
DEMO = REPO / "examples" / "demo-line.yaml"
HOST = "site1-line1-host"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}:/usr/sbin"
    return env


def _controller(tmp_path: Path, primary_host: str | None) -> Path:
    """Return an inventory whose controller has a CA and the demo line (with `primary_host`)."""
    data = yaml.safe_load(DEMO.read_text())
    if primary_host is not None:
        data["spec"]["primaryHostId"] = primary_host
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(data))
    passphrase = tmp_path / "ca.passphrase"
    passphrase.write_text("controller-test-passphrase\n")
    passphrase.chmod(0o600)
    init = [str(BIN / "plantline-pki"), "ca", "init", str(tmp_path / "ca"), "--name", "Controller test CA"]
    subprocess.run([*init, "--passphrase-file", str(passphrase)], check=True, capture_output=True, timeout=60)
    inventory = {
        "all": {
            "vars": {
                "plantline_line_file": str(tmp_path / "line.yaml"),
                "plantline_rendered_dir": str(tmp_path / "rendered"),
                "plantline_ca_dir": str(tmp_path / "ca"),
                "plantline_ca_passphrase_file": str(passphrase),
            },
            "children": {"plantline_edge": {"hosts": {}}},
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def _play(inventory: Path, playbook: str) -> int:
    """Run a playbook of the clone; return how many tasks changed on the controller."""
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), f"playbooks/{playbook}"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    recap = re.search(r"(?m)^localhost\s+: ok=\d+\s+changed=(\d+)", result.stdout)
    assert recap is not None, result.stdout[-3000:]
    return int(recap[1])


def _certificate(exports: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((exports / HOST / f"{HOST}.crt").read_bytes())


@pytest.mark.slow
def test_the_host_certificate_is_issued_renewed_and_kept_on_the_controller(tmp_path: Path) -> None:
    inventory = _controller(tmp_path, "scada")
    assert _play(inventory, "site.yml") > 0
    exports = tmp_path / "ca-exports"
    assert sorted(p.name for p in exports.iterdir()) == [HOST]  # no edge identity is issued here
    bundle = exports / HOST
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "crl.pem", f"{HOST}.crt", f"{HOST}.key"]
    assert (bundle / f"{HOST}.key").stat().st_mode & 0o777 == 0o600
    assert exports.stat().st_mode & 0o777 == 0o700
    first = _certificate(exports)
    assert first.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == HOST
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    first.verify_directly_issued_by(ca)

    assert _play(inventory, "site.yml") == 0  # issued once: a second run changes nothing
    assert _certificate(exports).serial_number == first.serial_number

    assert _play(inventory, "rotate_certs.yml") > 0
    renewed = _certificate(exports)
    assert renewed.serial_number != first.serial_number
    assert renewed.public_key() == first.public_key()  # rotate_new_keys is off: the key stays


@pytest.mark.slow
def test_a_line_without_a_primary_host_issues_no_host_certificate(tmp_path: Path) -> None:
    inventory = _controller(tmp_path, None)
    _play(inventory, "site.yml")
    assert not (tmp_path / "ca-exports").exists()
