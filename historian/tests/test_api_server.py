"""`plantline-historian api` as a program: mutual TLS with the toolkit's CA, and no anonymous start."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from plantline.historian.api.server import open_pool
from plantline.historian.config import load_config
from plantline.historian.schema import migrate
from plantline.historian.store import connect
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import free_port

pytestmark = pytest.mark.peer


def _files(ca: Authority, identity: str, directory: Path) -> tuple[Path, Path]:
    cert, key = directory / f"{identity}.crt", directory / f"{identity}.key"
    cert.write_bytes(ca.export(identity, CertFormat.CHAIN))
    key.write_bytes(ca.export(identity, CertFormat.KEY))
    key.chmod(0o600)
    return cert, key


def _config(tmp_path: Path, dsn: str, api: dict[str, object]) -> Path:
    data = {
        "mqtt": {"brokers": [{"host": "127.0.0.1", "insecure_plaintext": True}]},
        "database": {"dsn": dsn},
        "lines": [{"site": "s1", "line": "l1", "group_id": "site1", "edge_node_ids": ["line1"]}],
        "api": {"workers": 1, **api},
    }
    path = tmp_path / "historian.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_with_a_client_ca_the_api_serves_certificates_of_that_ca_and_nobody_else(tmp_path: Path, dsn: str) -> None:
    with connect(dsn) as conn:
        migrate(conn)
    ca = Authority.init(tmp_path / "ca", name="test CA", passphrase=b"x" * 16, encrypt=False)
    ca.issue("api", profile="mqtt-server", sans=["ip:127.0.0.1"])
    ca.issue("dashboard", profile="mqtt-client")
    (tmp_path / "ca.crt").write_bytes(ca.trust_bundle())
    server_cert, server_key = _files(ca, "api", tmp_path)
    client_cert, client_key = _files(ca, "dashboard", tmp_path)
    port = free_port()
    api = {"port": port, "cert_file": str(server_cert), "key_file": str(server_key),
           "client_ca_file": str(tmp_path / "ca.crt")}  # fmt: skip
    config = _config(tmp_path, dsn, api)
    argv = [sys.executable, "-m", "plantline.historian", "api", "--config", str(config)]
    log = (tmp_path / "api.log").open("ab")
    server = subprocess.Popen(argv, stdout=log, stderr=log)
    url = f"https://127.0.0.1:{port}/machines/status"
    try:
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with_cert.load_cert_chain(str(client_cert), str(client_key))
        body = _get(url, with_cert, tmp_path / "api.log")
        assert body == [], "no machines yet; served without a token: the certificate authenticated"
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url, context=trusted, timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _get(url: str, context: ssl.SSLContext, log: Path) -> object:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310 - loopback
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {exc}\n{log.read_text(errors='replace')}") from None
            time.sleep(0.3)


def test_without_tokens_or_a_client_ca_the_api_refuses_to_start(tmp_path: Path, dsn: str) -> None:
    config = _config(tmp_path, dsn, {"port": free_port()})
    done = subprocess.run(
        [sys.executable, "-m", "plantline.historian", "api", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "never serves anonymously" in done.stderr


def test_each_request_reads_one_snapshot_and_writes_nothing(tmp_path: Path, dsn: str) -> None:
    # A checkpoint and the samples after it must come from the same data, whatever commits meanwhile.
    config = load_config(_config(tmp_path, dsn, {}))
    with open_pool(config, max_size=1) as pool, pool.connection() as conn:
        settings = conn.execute(
            "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
        )
        assert settings.fetchone() == ("repeatable read", "on")
