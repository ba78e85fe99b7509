"""Verify plantline.edge.pki_trust: issued on the controller, installed with the right modes, trusted."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from testinfra.host import Host

HostFactory = Callable[[str], Host]

TLS = "/etc/plantline/tls"
CA_DIR = Path(os.environ["PLANTLINE_MOLECULE_WORKDIR"]) / "ca"
OPCUA_CA_DIR = Path(os.environ["PLANTLINE_MOLECULE_WORKDIR"]) / "ca-opcua"


@pytest.mark.parametrize(
    ("name", "mode", "owner"),
    [
        ("ca.crt", 0o644, "root"),
        ("crl.pem", 0o644, "root"),
        ("molecule-line1-broker.crt", 0o644, "root"),
        ("molecule-line1-broker.key", 0o600, "mosquitto"),
        ("molecule-line1-line1.crt", 0o644, "root"),
        ("molecule-line1-line1.key", 0o600, "plantline"),
        ("molecule-line1-filler-ua.crt", 0o644, "root"),
        ("molecule-line1-filler-ua.key", 0o600, "plantline"),
        ("opcua-ca.pem", 0o644, "root"),
        ("opcua-crl.pem", 0o644, "root"),
    ],
)
def test_tls_files_and_modes(hosts: HostFactory, name: str, mode: int, owner: str) -> None:
    f = hosts("node").file(f"{TLS}/{name}")
    assert (f.mode, f.user) == (mode, owner)


def test_certificates_chain_to_the_ca_and_carry_the_sans(hosts: HostFactory) -> None:
    node = hosts("node")
    for identity in ("molecule-line1-broker", "molecule-line1-line1"):
        assert (
            node.run(f"openssl verify -CAfile {TLS}/ca.crt -crl_check -CRLfile {TLS}/crl.pem {TLS}/{identity}.crt").rc
            == 0
        )
    text = node.check_output(f"openssl x509 -noout -text -in {TLS}/molecule-line1-broker.crt")
    assert "IP Address:127.0.0.1" in text
    assert "DNS:edge" in text


def test_key_matches_its_certificate(hosts: HostFactory) -> None:
    node = hosts("node")
    cert = node.check_output(f"openssl x509 -noout -pubkey -in {TLS}/molecule-line1-line1.crt")
    key = node.check_output(f"openssl pkey -pubout -in {TLS}/molecule-line1-line1.key")
    assert cert == key


def test_issued_in_the_controllers_ca_inventory() -> None:
    listing = subprocess.run(
        ["plantline-pki", "cert", "list", "--ca", str(CA_DIR)], capture_output=True, text=True, check=True
    ).stdout
    assert "molecule-line1-broker" in listing
    assert "molecule-line1-line1" in listing


def test_system_trust_store_has_the_ca(hosts: HostFactory) -> None:
    node = hosts("node")
    assert node.file("/usr/local/share/ca-certificates/plantline-ca.crt").exists
    assert node.run(f"openssl verify {TLS}/molecule-line1-line1.crt").rc == 0  # via /etc/ssl/certs


def test_opcua_trust_list_folders(hosts: HostFactory) -> None:
    node = hosts("node")
    base = "/etc/plantline/opcua/line1/pki"
    for folder in ("own/certs", "trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl", "rejected"):
        d = node.file(f"{base}/{folder}")
        assert d.is_directory
        assert d.user == "plantline"
    assert node.file(f"{base}/own/private").mode == 0o700
    trusted = node.file(f"{base}/trusted/certs/plantline-ca.pem")
    assert trusted.mode == 0o644
    assert trusted.content_string == (OPCUA_CA_DIR / "trust-bundle.pem").read_text()


def test_the_opcua_crls_are_one_file_named_by_their_content(hosts: HostFactory) -> None:
    # A new CRL is a new file name, which a server watching the folder picks up (node-opcua does
    # not re-read a file replaced in place); the CRLs of both CAs of the chain are in it.
    node = hosts("node")
    crl_dir = "/etc/plantline/opcua/line1/pki/trusted/crl"
    (name,) = node.check_output(f"ls {crl_dir}").split()
    crls = (OPCUA_CA_DIR / "crl.pem").read_text() + (CA_DIR / "crl.pem").read_text()
    assert name == f"plantline-ca-{hashlib.sha256(crls.encode()).hexdigest()[:16]}.crl.pem"
    assert node.file(f"{crl_dir}/{name}").content_string == crls
    assert node.file(f"{TLS}/opcua-crl.pem").content_string == crls


def test_the_opcua_application_certificate_chains_to_the_root_through_the_opcua_ca(hosts: HostFactory) -> None:
    node = hosts("node")
    checked = node.run(
        f"openssl verify -CAfile {TLS}/opcua-ca.pem -crl_check_all -CRLfile {TLS}/opcua-crl.pem"
        f" {TLS}/molecule-line1-filler-ua.crt"
    )
    assert checked.rc == 0, checked.stderr
    text = node.check_output(f"openssl x509 -noout -text -in {TLS}/molecule-line1-filler-ua.crt")
    assert "URI:urn:plantline:molecule:line1:filler" in text
    assert "Public Key Algorithm: rsaEncryption" in text
    listing = subprocess.run(
        ["plantline-pki", "cert", "list", "--ca", str(OPCUA_CA_DIR)], capture_output=True, text=True, check=True
    ).stdout
    assert "molecule-line1-filler-ua" in listing
