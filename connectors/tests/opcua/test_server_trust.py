"""check_server_certificate: OPC UA Part 4's checks of a server certificate, each with its status code.

The certificates come from plantline-pki, as a line's do: an EC root, an RSA OPC UA issuing CA
under it (what `plantline up` makes), a foreign RSA CA, and leaves of the opcua-application
profile.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plantline.connectors.certificates import (
    CertificateRejected,
    TrustList,
    check_server_certificate,
    load_certificates,
    load_crls,
    load_der_chain,
)
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing.opcua_pki import LinePki

URI = "urn:plantline:test:plc"
SANS = [f"uri:{URI}", "dns:plc.example", "ip:127.0.0.1"]


def chain_of(authority: Authority, identity: str) -> list[x509.Certificate]:
    """Return the identity's certificate with its issuing chain, as the server sends it."""
    return load_certificates(authority.export(identity, CertFormat.CHAIN))


def line_trust(pki: LinePki, *, crls: bool = True) -> TrustList:
    """Trust the line's root only, with both CRLs: the chain goes through the OPC UA CA."""
    return TrustList(
        authorities=tuple(load_certificates(pki.root.trust_bundle())),
        crls=tuple(load_crls(pki.crls())) if crls else (),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LinePki:
    line = LinePki.create(tmp_path_factory.mktemp("trust"))
    for authority, identity in ((line.opcua, "plc"), (line.opcua, "revoked-plc"), (line.foreign, "foreign-plc")):
        authority.issue(identity, profile="opcua-application", sans=SANS)
    line.root.issue("mqtt-plc", profile="mqtt-server", sans=["dns:plc.example", "ip:127.0.0.1"])
    line.opcua.revoke("revoked-plc", reason="key-compromise")
    return line


def later(delta: timedelta) -> datetime:
    """Return the time `delta` from now.

    Taken when a test runs, never when the module is collected: the fixture's certificates are
    backdated by only five minutes, and a full run reaches this module later than that.
    """
    return datetime.now(UTC) + delta


def problem_of(
    chain: list[x509.Certificate],
    trust: TrustList,
    *,
    host: str = "127.0.0.1",
    uri: str | None = URI,
    now: datetime | None = None,
) -> CertificateRejected | None:
    """Return why the check refuses the server's chain at `now` (default: the present), None when it trusts it."""
    when = later(timedelta()) if now is None else now
    try:
        check_server_certificate(chain, trust=trust, host=host, application_uri=uri, now=when)
    except CertificateRejected as exc:
        return exc
    return None


def rejected(chain: list[x509.Certificate], trust: TrustList, **where: Any) -> CertificateRejected:
    problem = problem_of(chain, trust, **where)
    assert problem is not None, "trusted"
    return problem


def test_a_chain_to_the_trusted_root_with_current_crls_is_trusted(pki: LinePki) -> None:
    assert problem_of(chain_of(pki.opcua, "plc"), line_trust(pki)) is None
    assert problem_of(chain_of(pki.opcua, "plc"), line_trust(pki), host="PLC.example") is None  # names ignore case


def test_the_chain_may_come_from_the_trust_list_instead_of_the_server(pki: LinePki) -> None:
    leaf_only = chain_of(pki.opcua, "plc")[:1]
    trust = line_trust(pki)
    with_issuer = TrustList((*trust.authorities, *load_certificates(pki.opcua.trust_bundle())), trust.crls)
    assert problem_of(leaf_only, with_issuer) is None
    assert rejected(leaf_only, trust).code == "BadCertificateUntrusted"


def test_a_certificate_of_a_foreign_ca_is_untrusted(pki: LinePki) -> None:
    problem = rejected(chain_of(pki.foreign, "foreign-plc"), line_trust(pki))
    assert (problem.code, problem.reason) == (
        "BadCertificateUntrusted",
        "it is issued by 'Foreign CA', which is not in the trust list",
    )
    full = load_certificates(pki.foreign.export("foreign-plc", CertFormat.FULLCHAIN))
    problem = rejected(full, line_trust(pki))  # the server sends its root along: still not ours
    assert problem.reason == "its chain ends at 'Foreign CA', which is not in the trust list"


def test_a_revoked_certificate_and_a_missing_or_stale_crl_are_refused(pki: LinePki) -> None:
    problem = rejected(chain_of(pki.opcua, "revoked-plc"), line_trust(pki))
    assert (problem.code, problem.reason) == ("BadCertificateRevoked", "it is revoked by the CRL of 'Line OPC UA CA'")
    assert rejected(chain_of(pki.opcua, "plc"), line_trust(pki, crls=False)).code == "BadCertificateRevocationUnknown"
    only_leaf_crl = TrustList(line_trust(pki).authorities, tuple(load_crls(pki.opcua.crl_pem())))
    problem = rejected(chain_of(pki.opcua, "plc"), only_leaf_crl)
    assert (problem.code, problem.reason) == (
        "BadCertificateIssuerRevocationUnknown",
        "the trust list holds no CRL of 'Line CA'",
    )
    stale = rejected(chain_of(pki.opcua, "plc"), line_trust(pki), now=later(timedelta(days=30)))
    assert stale.code == "BadCertificateRevocationUnknown"
    assert "expired on" in stale.reason


def test_a_certificate_trusted_as_it_is_needs_no_chain_nor_crl(pki: LinePki) -> None:
    chain = chain_of(pki.foreign, "foreign-plc")
    assert problem_of(chain[:1], TrustList(servers=(chain[0],))) is None


def test_host_uri_time_policy_and_usage_are_checked(pki: LinePki) -> None:
    chain, trust = chain_of(pki.opcua, "plc"), line_trust(pki)
    assert rejected(chain, trust, host="10.0.0.9").code == "BadCertificateHostNameInvalid"
    assert rejected(chain, trust, host="other.example").code == "BadCertificateHostNameInvalid"
    problem = rejected(chain, trust, uri="urn:someone:else")
    assert (problem.code, problem.reason) == (
        "BadCertificateUriInvalid",
        f"the server's ApplicationUri urn:someone:else is not the certificate's URI ({URI})",
    )
    assert rejected(chain, trust, uri=None).code == "BadCertificateUriInvalid"
    assert rejected(chain, trust, now=later(timedelta(days=400))).code == "BadCertificateTimeInvalid"
    ec = chain_of(pki.root, "mqtt-plc")  # an EC key cannot do Basic256Sha256
    assert rejected(ec, trust).code == "BadCertificatePolicyCheckFailed"


def test_a_chain_in_der_as_opc_ua_sends_it(pki: LinePki) -> None:
    chain = chain_of(pki.opcua, "plc")
    blob = b"".join(c.public_bytes(Encoding.DER) for c in chain)
    assert load_der_chain(blob) == chain
    with pytest.raises(ValueError, match="not a DER certificate chain"):
        load_der_chain(b"\x04\x00")
