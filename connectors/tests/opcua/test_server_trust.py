"""check_server_certificate: OPC UA Part 4's checks of a server certificate, each with its status code.

The certificates come from plantline-pki, as a line's do: an EC root, an RSA OPC UA issuing CA
under it (what `plantline up` makes), a foreign RSA CA, and leaves of the opcua-application
profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
from plantline.pki.keys import KeySpec

URI = "urn:plantline:test:plc"
SANS = [f"uri:{URI}", "dns:plc.example", "ip:127.0.0.1"]


@dataclass(frozen=True)
class Pki:
    root: Authority
    ua: Authority
    foreign: Authority

    def chain(self, authority: Authority, identity: str) -> list[x509.Certificate]:
        return load_certificates(authority.export(identity, CertFormat.CHAIN))

    def trust(self, *, crls: bool = True) -> TrustList:
        return TrustList(
            authorities=tuple(load_certificates(self.root.trust_bundle())),
            crls=tuple([*load_crls(self.root.crl_pem()), *load_crls(self.ua.crl_pem())]) if crls else (),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("trust")
    root = Authority.init(base / "root", name="Line root", passphrase=None, encrypt=False)
    ua = Authority.init(
        base / "ua", name="Line OPC UA CA", key_type=KeySpec.RSA_2048, parent=root, passphrase=None, encrypt=False
    )
    foreign = Authority.init(
        base / "foreign", name="Foreign CA", key_type=KeySpec.RSA_2048, passphrase=None, encrypt=False
    )
    for authority, identity in ((ua, "plc"), (ua, "revoked-plc"), (foreign, "foreign-plc")):
        authority.issue(identity, profile="opcua-application", sans=SANS)
    root.issue("mqtt-plc", profile="mqtt-server", sans=["dns:plc.example", "ip:127.0.0.1"])
    ua.revoke("revoked-plc", reason="key-compromise")
    return Pki(root, ua, foreign)


NOW = datetime.now(UTC)


def check(
    chain: list[x509.Certificate],
    trust: TrustList,
    *,
    host: str = "127.0.0.1",
    uri: str | None = URI,
    now: datetime = NOW,
) -> None:
    check_server_certificate(chain, trust=trust, host=host, application_uri=uri, now=now)


def rejected(
    chain: list[x509.Certificate],
    trust: TrustList,
    *,
    host: str = "127.0.0.1",
    uri: str | None = URI,
    now: datetime = NOW,
) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as caught:
        check(chain, trust, host=host, uri=uri, now=now)
    return caught.value


def test_a_chain_to_the_trusted_root_with_current_crls_is_trusted(pki: Pki) -> None:
    check(pki.chain(pki.ua, "plc"), pki.trust())
    check(pki.chain(pki.ua, "plc"), pki.trust(), host="PLC.example")  # host names ignore case


def test_the_chain_may_come_from_the_trust_list_instead_of_the_server(pki: Pki) -> None:
    leaf_only = pki.chain(pki.ua, "plc")[:1]
    trust = pki.trust()
    with_issuer = TrustList((*trust.authorities, *load_certificates(pki.ua.trust_bundle())), trust.crls)
    check(leaf_only, with_issuer)
    assert rejected(leaf_only, trust).code == "BadCertificateUntrusted"


def test_a_certificate_of_a_foreign_ca_is_untrusted(pki: Pki) -> None:
    problem = rejected(pki.chain(pki.foreign, "foreign-plc"), pki.trust())
    assert (problem.code, problem.reason) == (
        "BadCertificateUntrusted",
        "it is issued by 'Foreign CA', which is not in the trust list",
    )
    full = load_certificates(pki.foreign.export("foreign-plc", CertFormat.FULLCHAIN))
    problem = rejected(full, pki.trust())  # the server sends its root along: still not ours
    assert problem.reason == "its chain ends at 'Foreign CA', which is not in the trust list"


def test_a_revoked_certificate_and_a_missing_or_stale_crl_are_refused(pki: Pki) -> None:
    problem = rejected(pki.chain(pki.ua, "revoked-plc"), pki.trust())
    assert (problem.code, problem.reason) == ("BadCertificateRevoked", "it is revoked by the CRL of 'Line OPC UA CA'")
    assert rejected(pki.chain(pki.ua, "plc"), pki.trust(crls=False)).code == "BadCertificateRevocationUnknown"
    only_leaf_crl = TrustList(pki.trust().authorities, tuple(load_crls(pki.ua.crl_pem())))
    problem = rejected(pki.chain(pki.ua, "plc"), only_leaf_crl)
    assert (problem.code, problem.reason) == (
        "BadCertificateIssuerRevocationUnknown",
        "the trust list holds no CRL of 'Line root'",
    )
    stale = rejected(pki.chain(pki.ua, "plc"), pki.trust(), now=NOW + timedelta(days=30))
    assert stale.code == "BadCertificateRevocationUnknown"
    assert "expired on" in stale.reason


def test_a_certificate_trusted_as_it_is_needs_no_chain_nor_crl(pki: Pki) -> None:
    chain = pki.chain(pki.foreign, "foreign-plc")
    check(chain[:1], TrustList(servers=(chain[0],)))


def test_host_uri_time_policy_and_usage_are_checked(pki: Pki) -> None:
    chain, trust = pki.chain(pki.ua, "plc"), pki.trust()
    assert rejected(chain, trust, host="10.0.0.9").code == "BadCertificateHostNameInvalid"
    assert rejected(chain, trust, host="other.example").code == "BadCertificateHostNameInvalid"
    problem = rejected(chain, trust, uri="urn:someone:else")
    assert (problem.code, problem.reason) == (
        "BadCertificateUriInvalid",
        f"the server's ApplicationUri urn:someone:else is not the certificate's URI ({URI})",
    )
    assert rejected(chain, trust, uri=None).code == "BadCertificateUriInvalid"
    assert rejected(chain, trust, now=NOW + timedelta(days=400)).code == "BadCertificateTimeInvalid"
    ec = pki.chain(pki.root, "mqtt-plc")  # an EC key cannot do Basic256Sha256
    assert rejected(ec, trust).code == "BadCertificatePolicyCheckFailed"


def test_a_chain_in_der_as_opc_ua_sends_it(pki: Pki) -> None:
    chain = pki.chain(pki.ua, "plc")
    blob = b"".join(c.public_bytes(Encoding.DER) for c in chain)
    assert load_der_chain(blob) == chain
    with pytest.raises(ValueError, match="not a DER certificate chain"):
        load_der_chain(b"\x04\x00")
