"""Certificates made by the CLI, checked by the real `openssl` (verify, crl, pkcs12, x509, pkey).

Every artefact here comes from `plantline-pki` run as a subprocess; openssl is the independent
judge of whether chains verify, CRLs revoke, and the export formats hold what they claim.
"""

from __future__ import annotations

import base64
import re
import stat
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from conftest import PASSPHRASE, PkiCli, require_program

PARENT_ENV = {"PLANTLINE_PKI_PARENT_PASSPHRASE": PASSPHRASE}
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----\r?\n?", re.DOTALL)


def openssl(*args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real openssl; with check, fail the test (showing its output) on a non-zero exit."""
    proc = subprocess.run(
        [require_program("openssl"), *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    result = subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )
    if check and proc.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} exited {proc.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    """`openssl verify ARGS` without failing the test: the caller asserts the outcome."""
    return openssl("verify", *args, check=False)


def export(pki: PkiCli, ca: Path, identity: str, fmt: str, out: Path, *extra: str) -> Path:
    pki("cert", "export", identity, "--ca", str(ca), "--format", fmt, "--out", str(out), *extra)
    return out


def subject_issuer(pem: bytes) -> tuple[str, str]:
    """Return (subject, issuer) of one PEM certificate as openssl prints them."""
    out = openssl("x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253", stdin=pem).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if line)
    return fields["subject"], fields["issuer"]


def chain_names(path: Path) -> list[tuple[str, str]]:
    """Return (subject, issuer) of every certificate of a PEM file, in file order."""
    blocks = PEM_CERT.findall(path.read_bytes())
    assert blocks, f"{path} holds no PEM certificate"
    return [subject_issuer(block) for block in blocks]


def public_key_of_cert(cert: Path, *, inform: str = "PEM") -> str:
    return openssl("x509", "-inform", inform, "-in", str(cert), "-noout", "-pubkey").stdout


def public_key_of_key(key: Path) -> str:
    return openssl("pkey", "-in", str(key), "-pubout").stdout


def sha256_of(cert: Path, *, inform: str = "PEM") -> str:
    out = openssl("x509", "-inform", inform, "-in", str(cert), "-noout", "-fingerprint", "-sha256").stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def crl_number(crl: Path) -> int:
    out = openssl("crl", "-in", str(crl), "-noout", "-crlnumber").stdout.strip()
    return int(out.split("=", 1)[1], 16)


def serial_of(cert: Path) -> str:
    return openssl("x509", "-in", str(cert), "-noout", "-serial").stdout.strip().split("=", 1)[1].upper()


# -- chains -----------------------------------------------------------------------------------


PROFILES = {
    # profile: (issue options, openssl purposes it must pass, purposes it must fail)
    "mqtt-server": (["--san", "localhost", "--san", "127.0.0.1"], ["sslserver"], ["sslclient"]),
    "mqtt-client": ([], ["sslclient"], ["sslserver"]),
    "operator": ([], ["sslclient", "sslserver"], []),
}


@pytest.mark.peer
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_leaf_of_each_profile_verifies_against_the_ca(profile: str, pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    options, good_purposes, bad_purposes = PROFILES[profile]
    pki("cert", "issue", "leaf-1", "--ca", str(root_ca), "--profile", profile, *options)
    leaf = export(pki, root_ca, "leaf-1", "pem", workdir / "leaf.pem")

    for anchor in (root_ca / "ca.crt", root_ca / "trust-bundle.pem"):
        result = verify("-x509_strict", "-CAfile", str(anchor), str(leaf))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{leaf}: OK"
    for purpose in good_purposes:
        result = verify("-x509_strict", "-purpose", purpose, "-CAfile", str(root_ca / "ca.crt"), str(leaf))
        assert result.returncode == 0, f"{profile} should serve as {purpose}: {result.stderr}"
    for purpose in bad_purposes:
        result = verify("-purpose", purpose, "-CAfile", str(root_ca / "ca.crt"), str(leaf))
        assert result.returncode != 0, f"{profile} must not serve as {purpose}"
        assert "unsuitable certificate purpose" in result.stderr

    # A certificate of some other CA with the same names must not verify against this one.
    other = root_ca.parent / "other"
    pki("ca", "init", str(other), "--name", "Test Root CA", "--organization", "PlantLine Tests")
    result = verify("-CAfile", str(other / "ca.crt"), str(leaf))
    assert result.returncode != 0
    assert "certificate signature failure" in result.stderr or "unable to get local issuer" in result.stderr


@pytest.mark.peer
def test_server_leaf_carries_its_sans(pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    pki(
        "cert",
        "issue",
        "broker",
        "--ca",
        str(root_ca),
        "--profile",
        "mqtt-server",
        "--san",
        "localhost",
        "--san",
        "127.0.0.1",
    )
    leaf = export(pki, root_ca, "broker", "pem", workdir / "broker.pem")
    ca = str(root_ca / "ca.crt")

    ok = verify("-CAfile", ca, "-purpose", "sslserver", "-verify_hostname", "localhost", str(leaf))
    assert ok.returncode == 0, ok.stderr
    ok = verify("-CAfile", ca, "-purpose", "sslserver", "-verify_ip", "127.0.0.1", str(leaf))
    assert ok.returncode == 0, ok.stderr
    wrong = verify("-CAfile", ca, "-verify_hostname", "broker.example.com", str(leaf))
    assert wrong.returncode != 0
    assert "hostname mismatch" in wrong.stderr
    wrong = verify("-CAfile", ca, "-verify_ip", "10.0.0.1", str(leaf))
    assert wrong.returncode != 0
    assert "IP address mismatch" in wrong.stderr


@pytest.mark.peer
def test_intermediate_hierarchy_verifies_up_to_the_untouched_root(pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    root_files = {name: (root_ca / name).read_bytes() for name in ("ca.crt", "trust-bundle.pem", "crl.pem")}
    site = root_ca.parent / "site"
    pki("ca", "init", str(site), "--name", "Site 1 CA", "--parent", str(root_ca), env=PARENT_ENV)
    pki("cert", "issue", "broker", "--ca", str(site), "--profile", "mqtt-server", "--san", "localhost")

    # The root's own certificate, bundle and CRL are untouched; it only records what it signed.
    for name, data in root_files.items():
        assert (root_ca / name).read_bytes() == data, f"root {name} changed"
    inventory = pki("cert", "list", "--ca", str(root_ca)).stdout.splitlines()
    assert len(inventory) == 1
    assert "intermediate-ca" in inventory[0]

    leaf = export(pki, site, "broker", "pem", workdir / "leaf.pem")
    chain = export(pki, site, "broker", "chain", workdir / "chain.pem")
    fullchain = export(pki, site, "broker", "fullchain", workdir / "fullchain.pem")
    root_crt, site_crt = root_ca / "ca.crt", site / "ca.crt"

    result = verify("-x509_strict", "-CAfile", str(root_crt), "-untrusted", str(chain), str(leaf))
    assert result.returncode == 0, result.stderr
    result = verify("-x509_strict", "-CAfile", str(root_crt), "-untrusted", str(fullchain), str(leaf))
    assert result.returncode == 0, result.stderr
    # Without the intermediate the root alone cannot vouch for the leaf.
    result = verify("-CAfile", str(root_crt), str(leaf))
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stderr
    # The site's trust bundle holds the site CA and the root: enough on its own.
    result = verify("-x509_strict", "-CAfile", str(site / "trust-bundle.pem"), str(leaf))
    assert result.returncode == 0, result.stderr
    # The intermediate itself verifies against the root.
    result = verify("-x509_strict", "-CAfile", str(root_crt), str(site_crt))
    assert result.returncode == 0, result.stderr

    # Order: chain = leaf, intermediate; fullchain = leaf, intermediate, root; each issued by the next.
    leaf_name = subject_issuer(leaf.read_bytes())
    site_name = subject_issuer(site_crt.read_bytes())
    root_name = subject_issuer(root_crt.read_bytes())
    assert root_name[0] == root_name[1], "the root is self-issued"
    assert chain_names(chain) == [leaf_name, site_name]
    assert chain_names(fullchain) == [leaf_name, site_name, root_name]
    for (_, issuer), (subject, _) in pairwise(chain_names(fullchain)):
        assert issuer == subject
    ca_chain = workdir / "site-chain.pem"
    pki("ca", "export", "--ca", str(site), "--format", "chain", "--out", str(ca_chain))
    assert chain_names(ca_chain) == [site_name, root_name]

    # Revocation down the hierarchy: with both CRLs openssl checks every link (-crl_check_all).
    crl_args = ["-CRLfile", str(root_ca / "crl.pem"), "-CRLfile", str(site / "crl.pem")]
    result = verify("-crl_check_all", "-CAfile", str(root_crt), "-untrusted", str(chain), *crl_args, str(leaf))
    assert result.returncode == 0, result.stderr
    pki("cert", "revoke", "broker", "--ca", str(site), "--reason", "key-compromise")
    result = verify("-crl_check_all", "-CAfile", str(root_crt), "-untrusted", str(chain), *crl_args, str(leaf))
    assert result.returncode != 0
    assert "certificate revoked" in result.stderr


@pytest.mark.peer
def test_path_length_zero_intermediate_cannot_sign_another_ca(pki: PkiCli, root_ca: Path) -> None:
    assert "CA:TRUE, pathlen:1" in openssl("x509", "-in", str(root_ca / "ca.crt"), "-noout", "-text").stdout
    mid = root_ca.parent / "mid"
    pki("ca", "init", str(mid), "--name", "Mid CA", "--parent", str(root_ca), "--path-length", "0", env=PARENT_ENV)
    text = openssl("x509", "-in", str(mid / "ca.crt"), "-noout", "-text").stdout
    assert "CA:TRUE, pathlen:0" in text

    below = root_ca.parent / "below"
    refused = pki("ca", "init", str(below), "--name", "Below CA", "--parent", str(mid), env=PARENT_ENV, check=False)
    assert refused.returncode == 3, refused.stderr
    assert "error[PKI_INVALID_INPUT]" in refused.stderr
    assert "path length 0 and cannot sign another CA" in refused.stderr
    assert not (below / "pki.db").exists()
    assert pki("cert", "list", "--ca", str(mid)).stdout.strip() == "", "the refused CA left an inventory record"

    # Leaves are still fine under the pathlen:0 intermediate.
    pki("cert", "issue", "filler", "--ca", str(mid), "--profile", "mqtt-client")
    leaf = export(pki, mid, "filler", "pem", mid.parent / "filler.pem")
    chain = export(pki, mid, "filler", "chain", mid.parent / "filler-chain.pem")
    result = verify("-x509_strict", "-CAfile", str(root_ca / "ca.crt"), "-untrusted", str(chain), str(leaf))
    assert result.returncode == 0, result.stderr


# -- revocation -------------------------------------------------------------------------------


@pytest.mark.peer
def test_revoked_leaf_fails_crl_check_and_the_crl_names_the_reason(pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    for name in ("line1-capper", "line1-filler"):
        pki("cert", "issue", name, "--ca", str(root_ca), "--profile", "mqtt-client")
    capper = export(pki, root_ca, "line1-capper", "pem", workdir / "capper.pem")
    filler = export(pki, root_ca, "line1-filler", "pem", workdir / "filler.pem")
    ca, crl = root_ca / "ca.crt", root_ca / "crl.pem"

    for leaf in (capper, filler):
        result = verify("-crl_check", "-CAfile", str(ca), "-CRLfile", str(crl), str(leaf))
        assert result.returncode == 0, result.stderr
    number_before = crl_number(crl)
    crl_before = crl.read_bytes()

    pki("cert", "revoke", "line1-capper", "--ca", str(root_ca), "--reason", "key-compromise")

    assert crl.read_bytes() != crl_before, "revoke did not re-sign crl.pem"
    assert crl_number(crl) > number_before
    result = verify("-crl_check", "-CAfile", str(ca), "-CRLfile", str(crl), str(capper))
    assert result.returncode != 0
    assert "certificate revoked" in result.stderr
    result = verify("-crl_check", "-CAfile", str(ca), "-CRLfile", str(crl), str(filler))
    assert result.returncode == 0, result.stderr

    # The CRL is signed by the CA and lists exactly the revoked serial, with its reason.
    checked = openssl("crl", "-in", str(crl), "-noout", "-verify", "-CAfile", str(ca))
    assert "verify OK" in checked.stdout + checked.stderr
    text = openssl("crl", "-in", str(crl), "-noout", "-text").stdout
    assert re.findall(r"Serial Number: ([0-9A-F]+)", text) == [serial_of(capper)]
    assert "Key Compromise" in text
    # What `ca export --format crl` gives is the published crl.pem.
    exported = workdir / "exported-crl.pem"
    pki("ca", "export", "--ca", str(root_ca), "--format", "crl", "--out", str(exported))
    assert exported.read_bytes() == crl.read_bytes()

    # A second revocation (reason unspecified: no reason extension) bumps the number again.
    number_after_first = crl_number(crl)
    pki("cert", "revoke", "line1-filler", "--ca", str(root_ca))
    assert crl_number(crl) > number_after_first
    text = openssl("crl", "-in", str(crl), "-noout", "-text").stdout
    assert sorted(re.findall(r"Serial Number: ([0-9A-F]+)", text)) == sorted([serial_of(capper), serial_of(filler)])
    result = verify("-crl_check", "-CAfile", str(ca), "-CRLfile", str(crl), str(filler))
    assert result.returncode != 0
    assert "certificate revoked" in result.stderr


# -- export formats ---------------------------------------------------------------------------


@pytest.mark.peer
def test_pkcs12_export_opens_with_the_export_passphrase_only(pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    pki("cert", "issue", "line1-filler", "--ca", str(root_ca), "--profile", "mqtt-client")
    leaf = export(pki, root_ca, "line1-filler", "pem", workdir / "leaf.pem")
    secret = workdir / "p12.pass"
    secret.write_text("export secret, not the CA's\n")
    p12 = export(pki, root_ca, "line1-filler", "pkcs12", workdir / "filler.p12", "--key-passphrase-file", str(secret))
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600

    certs = openssl("pkcs12", "-in", str(p12), "-passin", f"file:{secret}", "-nokeys", "-clcerts").stdout
    (workdir / "from-p12.pem").write_text(certs)
    assert sha256_of(workdir / "from-p12.pem") == sha256_of(leaf)
    key_pem = openssl("pkcs12", "-in", str(p12), "-passin", f"file:{secret}", "-nocerts", "-noenc").stdout
    assert "PRIVATE KEY" in key_pem
    (workdir / "from-p12.key").write_text(key_pem)
    assert public_key_of_key(workdir / "from-p12.key") == public_key_of_cert(leaf)

    for wrong in ("pass:wrong passphrase", f"pass:{PASSPHRASE}"):
        result = openssl("pkcs12", "-in", str(p12), "-passin", wrong, "-noenc", check=False)
        assert result.returncode != 0, f"PKCS#12 opened with {wrong!r}"
        assert "PRIVATE KEY" not in result.stdout
        assert "invalid password" in result.stderr or "mac verify" in result.stderr.lower()


@pytest.mark.peer
def test_der_export_is_the_same_certificate(pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    pki("cert", "issue", "filler-opcua", "--ca", str(root_ca), "--profile", "mqtt-client")
    der = export(pki, root_ca, "filler-opcua", "der", workdir / "filler.der")
    pem = export(pki, root_ca, "filler-opcua", "pem", workdir / "filler.pem")
    assert not der.read_bytes().startswith(b"-----"), "der export wrote PEM"

    text = openssl("x509", "-inform", "DER", "-in", str(der), "-noout", "-subject").stdout
    assert "CN=filler-opcua" in text.replace(" ", "")
    assert sha256_of(der, inform="DER") == sha256_of(pem)
    inventory = pki("cert", "inspect", "filler-opcua", "--ca", str(root_ca), "--format", "json").stdout
    assert sha256_of(pem) in inventory
    result = verify("-CAfile", str(root_ca / "ca.crt"), str(pem))
    assert result.returncode == 0, result.stderr


def parse_k8s_manifest(text: str) -> dict[str, str | dict[str, str]]:
    """Parse the two-level YAML mapping a kubernetes.io/tls Secret manifest is (no YAML library here)."""
    document: dict[str, str | dict[str, str]] = {}
    section: dict[str, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        assert "\t" not in line, f"line {number}: YAML forbids tabs for indentation"
        top = re.fullmatch(r"([A-Za-z][\w.-]*):(?: (\S.*))?", line)
        nested = re.fullmatch(r"  ([A-Za-z][\w.-]*): (\S+)", line)
        if top:
            key, value = top.groups()
            assert key not in document, f"line {number}: duplicate key {key}"
            if value is None:
                section = {}
                document[key] = section
            else:
                section = None
                document[key] = value
        elif nested and section is not None:
            section[nested.group(1)] = nested.group(2)
        else:
            pytest.fail(f"line {number} is not part of a two-level YAML mapping: {line!r}")
    return document


@pytest.mark.peer
def test_k8s_secret_export_holds_a_matching_certificate_and_key(pki: PkiCli, root_ca: Path, workdir: Path) -> None:
    pki("cert", "issue", "operator", "--ca", str(root_ca), "--profile", "operator")
    refused = pki(
        "cert",
        "export",
        "operator",
        "--ca",
        str(root_ca),
        "--format",
        "k8s-secret",
        "--out",
        str(workdir / "x.yaml"),
        check=False,
    )
    assert refused.returncode == 3
    assert "--unsafe-plaintext-key" in refused.stderr
    assert not (workdir / "x.yaml").exists()

    manifest = export(
        pki,
        root_ca,
        "operator",
        "k8s-secret",
        workdir / "secret.yaml",
        "--unsafe-plaintext-key",
        "--namespace",
        "line1",
    )
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    document = parse_k8s_manifest(manifest.read_text())
    assert document["apiVersion"] == "v1"
    assert document["kind"] == "Secret"
    assert document["type"] == "kubernetes.io/tls"
    assert document["metadata"] == {"name": "operator-tls", "namespace": "line1"}
    data = document["data"]
    assert isinstance(data, dict)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}

    for name, encoded in data.items():
        (workdir / name).write_bytes(base64.b64decode(encoded, validate=True))
    tls_crt, tls_key, ca_crt = workdir / "tls.crt", workdir / "tls.key", workdir / "ca.crt"
    assert public_key_of_cert(tls_crt) == public_key_of_key(tls_key)
    assert "ENCRYPTED" not in tls_key.read_text()
    assert ca_crt.read_bytes() == (root_ca / "trust-bundle.pem").read_bytes()
    result = verify("-purpose", "sslclient", "-CAfile", str(ca_crt), str(tls_crt))
    assert result.returncode == 0, result.stderr
    assert "CN=operator" in subject_issuer(tls_crt.read_bytes())[0]
