"""A CA's CRL Distribution Point: openssl follows a revoked certificate's CDP to a CRL that lists it.

The CA is made by the CLI with `--crl-url`; its `crl.der` is served by a real HTTP server (Python's
`http.server`, run as a program, from a web root that holds nothing but a link to the CA's
published `crl.der`), and `openssl verify -crl_check -crl_download` fetches the CRL from the URL
in each certificate, as EMQX does with `enable_crl_check`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PkiCli, require_program
from plantline_testing import free_port

pytestmark = pytest.mark.peer


@contextlib.contextmanager
def serving(web_root: Path, port: int) -> Iterator[None]:
    """Serve `web_root` over HTTP on 127.0.0.1:`port`; stop the server by its PID."""
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(web_root)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, "http.server exited"
                assert time.monotonic() < deadline, "http.server did not listen"
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_program("openssl"), *args], capture_output=True, text=True, timeout=60, check=False)


def test_a_revoked_certificates_cdp_resolves_to_a_crl_that_lists_it(pki: PkiCli, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/site1/crl.der"
    ca = tmp_path / "ca"
    pki("ca", "init", str(ca), "--name", "Site 1 CA", "--crl-url", url)
    out = tmp_path / "out"
    out.mkdir()
    for identity in ("site1-line1-filler", "site1-line1-capper"):
        pki("cert", "issue", identity, "--ca", str(ca), "--profile", "mqtt-client")
        pki("cert", "export", identity, "--ca", str(ca), "--format", "pem", "--out", str(out / f"{identity}.crt"))
    pki("cert", "revoke", "site1-line1-filler", "--ca", str(ca), "--reason", "key-compromise")
    web = tmp_path / "web" / "site1"
    web.mkdir(parents=True)
    (web / "crl.der").symlink_to(ca / "crl.der")  # the web root holds the CRL only, never the CA's keys

    cdp = openssl("x509", "-in", str(out / "site1-line1-filler.crt"), "-noout", "-ext", "crlDistributionPoints")
    assert f"URI:{url}" in cdp.stdout

    with serving(tmp_path / "web", port):
        revoked = openssl(
            "verify", "-CAfile", str(ca / "ca.crt"), "-crl_check", "-crl_download", str(out / "site1-line1-filler.crt")
        )
        valid = openssl(
            "verify", "-CAfile", str(ca / "ca.crt"), "-crl_check", "-crl_download", str(out / "site1-line1-capper.crt")
        )
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    assert valid.returncode == 0, valid.stdout + valid.stderr


def test_where_no_crl_is_served_openssl_cannot_check(pki: PkiCli, tmp_path: Path) -> None:
    """The proof above rests on the download: where the server has no CRL, the same check fails."""
    port = free_port()
    ca = tmp_path / "ca"
    pki("ca", "init", str(ca), "--name", "Site 1 CA", "--crl-url", f"http://127.0.0.1:{port}/crl.der")
    pki("cert", "issue", "site1-line1-capper", "--ca", str(ca), "--profile", "mqtt-client")
    pki("cert", "export", "site1-line1-capper", "--ca", str(ca), "--format", "pem", "--out", str(tmp_path / "c.crt"))
    (tmp_path / "empty").mkdir()
    with serving(tmp_path / "empty", port):
        result = openssl(
            "verify", "-CAfile", str(ca / "ca.crt"), "-crl_check", "-crl_download", str(tmp_path / "c.crt")
        )
    assert result.returncode != 0
    assert "unable to get certificate CRL" in result.stdout + result.stderr


def test_a_crl_url_must_be_plain_http(pki: PkiCli, tmp_path: Path) -> None:
    result = pki(
        "ca", "init", str(tmp_path / "ca"), "--name", "CA", "--crl-url", "https://pki.example/crl", check=False
    )
    assert result.returncode != 0
    assert "--crl-url: expected an http:// URL" in result.stderr
    assert not (tmp_path / "ca" / "pki.db").exists()


def test_without_a_crl_url_no_cdp(pki: PkiCli, root_ca: Path, tmp_path: Path) -> None:
    pki("cert", "issue", "site1-line1-capper", "--ca", str(root_ca), "--profile", "mqtt-client")
    path = tmp_path / "c.crt"
    pki("cert", "export", "site1-line1-capper", "--ca", str(root_ca), "--format", "pem", "--out", str(path))
    assert "Distribution" not in openssl("x509", "-in", str(path), "-noout", "-text").stdout
