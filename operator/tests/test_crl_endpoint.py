"""The operator's CRL Distribution Point: certificates name it, its HTTP endpoint serves the CRL.

`openssl verify -crl_check -crl_download` follows the URL in each certificate to the operator's
endpoint (`telemetry.serve`, the same server as /metrics) and finds the revoked one listed.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from plantline.operator.api import PlantLine
from plantline.operator.cli import main
from plantline.operator.issuer import issue, load_ca, new_ca, with_revoked
from plantline.operator.render import render_certificate_requests
from plantline.operator.telemetry import CrlPublisher, serve
from plantline_testing import find_program, free_port

pytestmark = pytest.mark.peer
NOW = datetime.now(UTC)  # openssl checks the CRL against the real clock


def verify(ca: Path, certificate: Path) -> subprocess.CompletedProcess[str]:
    argv = [find_program("openssl"), "verify", "-CAfile", str(ca), "-crl_check", "-crl_download", str(certificate)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_revoked_certificates_cdp_resolves_to_the_operators_crl(demo: PlantLine, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/crl.der"
    certificate, key = new_ca(NOW - timedelta(days=1))
    ca = load_ca({"ca.crt": certificate, "ca.key": key}, where="test")
    first, second = [r for r in render_certificate_requests(demo) if r.profile == "mqtt-client"][:2]
    revoked, valid = issue(ca, first, NOW, crl_url=url), issue(ca, second, NOW, crl_url=url)
    ca, _ = with_revoked(ca, [(revoked.serial, "key-compromise")], NOW)
    (tmp_path / "ca.crt").write_bytes(certificate)
    (tmp_path / "revoked.crt").write_bytes(revoked.certificate_pem)
    (tmp_path / "valid.crt").write_bytes(valid.certificate_pem)
    publisher = CrlPublisher()
    server = serve(CollectorRegistry(), "127.0.0.1", port, crl=publisher)
    try:
        with pytest.raises(urllib.error.HTTPError, match="503"):
            urllib.request.urlopen(url, timeout=5)
        publisher.set(ca.crl_pem)
        denied, accepted = (
            verify(tmp_path / "ca.crt", tmp_path / "revoked.crt"),
            verify(tmp_path / "ca.crt", tmp_path / "valid.crt"),
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()
    assert denied.returncode != 0
    assert "certificate revoked" in denied.stdout + denied.stderr
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_operator_run_refuses_a_crl_url_it_cannot_serve(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["operator", "run", "--connector-image", "c:1"]
    assert main([*base, "--crl-url", "https://operator/crl.der", "--metrics", "127.0.0.1:9402"]) == 2
    assert main([*base, "--crl-url", "http://operator:9402/crl.der"]) == 2
    err = capsys.readouterr().err
    assert "expected an http:// URL" in err
    assert "give --metrics" in err
