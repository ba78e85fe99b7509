"""The operator's CA in a Secret, as pure functions: load, issue, inspect, revoke, renewal policy."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plantline.operator.api import PlantLineSpec, parse_plantline
from plantline.operator.issuer import (
    CA_COMMON_NAME,
    CaInvalid,
    CaState,
    Issued,
    ca_data,
    crl_is_fresh,
    issue,
    load_ca,
    new_ca,
    policy,
    stored_facts,
    with_revoked,
)
from plantline.operator.render import CertificateRequest, render_certificate_requests
from plantline.pki.errors import PkiError
from plantline.pki.keys import KeySpec, generate_key, load_private_key, private_key_pem, spec_of
from plantline.pki.profiles import builtin_profiles

from .recording import demo_body

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday
WHERE = "Secret plantline-system/plantline-ca"

CLIENT = CertificateRequest("site1-line1-line1", "mqtt-client", (), 90, 30)
BROKER = CertificateRequest("site1-line1-broker", "mqtt-server", ("ip:127.0.0.1", "dns:broker.site1.local"))
UA_APP = CertificateRequest(
    "site1-line1-filler-ua", "opcua-application", ("uri:urn:plantline:site1:line1:filler",), None, 60
)

Pems = tuple[bytes, bytes]
# A hand-edited revoked.json: a reason RFC 5280 does not know, which no CRL can carry.
UNKNOWN_REASON = b'[{"serial": "1f", "revokedAt": "2026-11-01T00:00:00+00:00", "reason": "lost-in-the-mail"}]'


@pytest.fixture(scope="module")
def ca_pems() -> Pems:
    """Return (certificate, key) PEMs of one operator CA, made once: RSA-3072 keys take a while."""
    return new_ca(NOW)


@pytest.fixture
def ca(ca_pems: Pems) -> CaState:
    return load_ca({"ca.crt": ca_pems[0], "ca.key": ca_pems[1]}, where=WHERE)


def _certificate(issued: Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.certificate_pem)


def _spki(public: Any) -> bytes:
    data: bytes = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return data


def _other_ca(*, same_name: bool) -> CaState:
    """Return another CA (an EC one: quick to make), named like the operator's when `same_name`."""
    name = CA_COMMON_NAME if same_name else "Someone else's CA"
    certificate, key = new_ca(NOW, key_spec=KeySpec.EC_P256, common_name=name)
    return load_ca({"ca.crt": certificate, "ca.key": key}, where="the other CA")


def _spec(**pki: Any) -> PlantLineSpec:
    body = demo_body()
    body["spec"]["pki"] = pki
    return parse_plantline(body).spec


# -- the CA -----------------------------------------------------------------------------------------


def test_new_ca_loads_back_from_its_secret_data(ca_pems: Pems, ca: CaState) -> None:
    certificate = ca.signer.certificate
    assert ca.certificate_pem == ca_pems[0]
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    certificate.verify_directly_issued_by(certificate)  # self-signed
    assert spec_of(ca.signer.key) is KeySpec.RSA_3072  # the OPC UA profile needs an RSA issuer
    assert certificate.not_valid_after_utc == NOW + timedelta(days=3650)
    assert (ca.revoked, ca.crl_pem, ca.crl_number) == ((), b"", 0)


def test_ca_data_round_trips_revocations_crl_and_key(ca_pems: Pems, ca: CaState) -> None:
    changed, _added = with_revoked(ca, [(0x1234, "superseded"), (0xABCD, "cessation-of-operation")], NOW)
    data = ca_data(changed, ca_pems[1])
    assert data["ca.key"] == ca_pems[1]  # as read, never re-encoded
    again = load_ca(data, where=WHERE)
    assert again.revoked == changed.revoked
    assert again.crl_pem == changed.crl_pem
    assert again.crl_number == 1
    assert again.certificate_pem == ca_pems[0]


def _encrypted(key_pem: bytes) -> bytes:
    return private_key_pem(load_private_key(key_pem, None, what="test"), b"a passphrase")


def _leaf(ca: CaState) -> Issued:
    return issue(ca, CLIENT, NOW)


LOAD_CA_CASES: list[tuple[str, Callable[[Pems, CaState], dict[str, bytes]], str]] = [
    ("missing-certificate", lambda p, _c: {"ca.key": p[1]}, "ca.crt"),
    ("garbage-certificate", lambda p, _c: {"ca.crt": b"not a certificate", "ca.key": p[1]}, "ca.crt"),
    ("missing-key", lambda p, _c: {"ca.crt": p[0]}, "ca.key: missing"),
    ("garbage-key", lambda p, _c: {"ca.crt": p[0], "ca.key": b"-----BEGIN PRIVATE KEY-----\nxx\n"}, "ca.key"),
    ("encrypted-key", lambda p, _c: {"ca.crt": p[0], "ca.key": _encrypted(p[1])}, "ca.key"),
    (
        "mismatched-key",
        lambda p, _c: {"ca.crt": p[0], "ca.key": private_key_pem(generate_key(KeySpec.EC_P256), None)},
        "ca.key does not belong to ca.crt",
    ),
    ("bad-revoked-json", lambda p, _c: {"ca.crt": p[0], "ca.key": p[1], "revoked.json": b"{not json"}, "revoked.json"),
    (
        "revoked-json-of-the-wrong-shape",
        lambda p, _c: {"ca.crt": p[0], "ca.key": p[1], "revoked.json": b'[{"serial": "zz"}]'},
        "revoked.json",
    ),
    (
        "revoked-json-with-an-unknown-reason",
        lambda p, _c: {"ca.crt": p[0], "ca.key": p[1], "revoked.json": UNKNOWN_REASON},
        "revoked.json",
    ),
]


@pytest.mark.parametrize(("make", "fragment"), [c[1:] for c in LOAD_CA_CASES], ids=[c[0] for c in LOAD_CA_CASES])
def test_load_ca_errors_name_the_secret_and_its_key(
    ca_pems: Pems, ca: CaState, make: Callable[[Pems, CaState], dict[str, bytes]], fragment: str
) -> None:
    with pytest.raises(CaInvalid) as caught:
        load_ca(make(ca_pems, ca), where=WHERE)
    message = str(caught.value)
    assert fragment in message
    assert message.startswith(f"{WHERE}: "), f"the error does not say which Secret: {message}"
    assert b"PRIVATE KEY" not in message.encode()


def test_load_ca_refuses_a_certificate_that_is_not_a_ca(ca: CaState) -> None:
    leaf = _leaf(ca)
    with pytest.raises(CaInvalid, match=r"ca\.crt is not a CA certificate") as caught:
        load_ca({"ca.crt": leaf.certificate_pem, "ca.key": leaf.key_pem}, where=WHERE)
    assert str(caught.value).startswith(WHERE)


# -- leaves -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "eku", "sans", "days"),
    [
        (CLIENT, {ExtendedKeyUsageOID.CLIENT_AUTH}, set(), 90),
        (
            BROKER,
            {ExtendedKeyUsageOID.SERVER_AUTH},
            {x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("broker.site1.local")},
            365,
        ),
        (
            UA_APP,
            {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
            {x509.UniformResourceIdentifier("urn:plantline:site1:line1:filler")},
            365,
        ),
    ],
    ids=["mqtt-client", "mqtt-server", "opcua-application"],
)
def test_issue_gives_a_leaf_of_the_ca_as_the_request_and_profile_say(
    ca: CaState, request_: CertificateRequest, eku: set[x509.ObjectIdentifier], sans: set[x509.GeneralName], days: int
) -> None:
    issued = issue(ca, request_, NOW)
    certificate = _certificate(issued)
    certificate.verify_directly_issued_by(ca.signer.certificate)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == request_.identity
    assert set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == eku
    if sans:
        assert set(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == sans
    else:
        with pytest.raises(x509.ExtensionNotFound):
            certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certificate.serial_number == issued.serial
    assert issued.not_after == certificate.not_valid_after_utc == NOW + timedelta(days=days)
    key = load_private_key(issued.key_pem, None, what="tls.key")
    assert _spki(key.public_key()) == _spki(certificate.public_key())
    assert spec_of(key) is builtin_profiles()[request_.profile].default_key


def test_renewal_with_the_stored_key_keeps_the_public_key(ca: CaState) -> None:
    first = issue(ca, CLIENT, NOW)
    renewed = issue(ca, CLIENT, NOW + timedelta(days=61), key_pem=first.key_pem)
    assert renewed.key_pem == first.key_pem
    assert _spki(_certificate(renewed).public_key()) == _spki(_certificate(first).public_key())
    assert renewed.serial != first.serial
    assert renewed.not_after == NOW + timedelta(days=61 + 90)
    replaced = issue(ca, CLIENT, NOW + timedelta(days=61))
    assert _spki(_certificate(replaced).public_key()) != _spki(_certificate(first).public_key())


def test_issue_refuses_a_request_the_profile_forbids(ca: CaState) -> None:
    with pytest.raises(PkiError, match="needs at least one DNS or IP SAN"):
        issue(ca, CertificateRequest("site1-line1-broker", "mqtt-server"), NOW)


# -- stored certificates ------------------------------------------------------------------------------


def test_stored_facts_of_a_fitting_certificate(ca: CaState) -> None:
    issued = issue(ca, BROKER, NOW)
    found = stored_facts(ca, BROKER, issued.certificate_pem, issued.key_pem)
    assert found is not None
    assert found.fits_request
    assert found.serial == issued.serial
    assert found.facts.not_after == issued.not_after
    assert found.facts.key is KeySpec.EC_P256
    assert not found.facts.revoked
    assert found.facts.issued_by_current_ca


@pytest.mark.parametrize(
    "now_wanted",
    [
        CertificateRequest("site1-line1-broker", "mqtt-server", ("ip:127.0.0.1",)),  # a SAN removed
        CertificateRequest("site1-line1-broker", "mqtt-server", ("ip:10.0.0.1", "dns:broker.site1.local")),
        CertificateRequest("site1-line2-broker", "mqtt-server", ("ip:127.0.0.1", "dns:broker.site1.local")),
    ],
    ids=["san-removed", "san-changed", "identity-changed"],
)
def test_stored_facts_does_not_fit_a_changed_request(ca: CaState, now_wanted: CertificateRequest) -> None:
    issued = issue(ca, BROKER, NOW)
    found = stored_facts(ca, now_wanted, issued.certificate_pem, issued.key_pem)
    assert found is not None
    assert not found.fits_request


def test_stored_facts_fits_sans_written_differently(ca: CaState) -> None:
    issued = issue(ca, BROKER, NOW)
    same = CertificateRequest("site1-line1-broker", "mqtt-server", ("dns:Broker.Site1.Local", "127.0.0.1"))
    found = stored_facts(ca, same, issued.certificate_pem, issued.key_pem)
    assert found is not None
    assert found.fits_request


def test_stored_facts_sees_a_revoked_serial(ca: CaState) -> None:
    issued = issue(ca, CLIENT, NOW)
    revoked, _added = with_revoked(ca, [(issued.serial, "key-compromise")], NOW)
    found = stored_facts(revoked, CLIENT, issued.certificate_pem, issued.key_pem)
    assert found is not None
    assert found.facts.revoked
    other = issue(ca, CLIENT, NOW)
    still = stored_facts(revoked, CLIENT, other.certificate_pem, other.key_pem)
    assert still is not None
    assert not still.facts.revoked


@pytest.mark.parametrize("same_name", [True, False], ids=["rotated-ca-same-name", "foreign-ca"])
def test_stored_facts_sees_a_leaf_of_another_ca(ca: CaState, same_name: bool) -> None:
    issued = issue(_other_ca(same_name=same_name), CLIENT, NOW)
    found = stored_facts(ca, CLIENT, issued.certificate_pem, issued.key_pem)
    assert found is not None
    assert not found.facts.issued_by_current_ca
    assert found.fits_request


def test_stored_facts_is_none_for_unusable_content(ca: CaState) -> None:
    issued = issue(ca, CLIENT, NOW)
    other = issue(ca, CLIENT, NOW)
    assert stored_facts(ca, CLIENT, b"garbage", issued.key_pem) is None
    assert stored_facts(ca, CLIENT, issued.certificate_pem, b"garbage") is None
    assert stored_facts(ca, CLIENT, b"", b"") is None
    assert stored_facts(ca, CLIENT, issued.certificate_pem, other.key_pem) is None  # key of another leaf


# -- revocation ---------------------------------------------------------------------------------------


def _crl(ca: CaState) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(ca.crl_pem)


def _listed(ca: CaState) -> list[tuple[int, x509.ReasonFlags]]:
    return sorted(
        (entry.serial_number, entry.extensions.get_extension_for_class(x509.CRLReason).value.reason)
        for entry in _crl(ca)
    )


def _crl_number(ca: CaState) -> int:
    return _crl(ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_with_revoked_lists_exactly_the_serials_in_a_signed_crl(ca: CaState) -> None:
    changed, added = with_revoked(ca, [(0x1111, "superseded"), (0x2222, "cessation-of-operation")], NOW)
    assert added == [0x1111, 0x2222]
    assert _listed(changed) == [
        (0x1111, x509.ReasonFlags.superseded),
        (0x2222, x509.ReasonFlags.cessation_of_operation),
    ]
    crl = _crl(changed)
    assert crl.is_signature_valid(ca.signer.key.public_key())
    assert crl.issuer == ca.signer.certificate.subject
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + timedelta(days=7)
    assert changed.crl_number == _crl_number(changed) == ca.crl_number + 1
    assert changed.revoked_serials == {0x1111, 0x2222}


def test_revoking_again_adds_nothing_and_keeps_the_first_reason(ca: CaState) -> None:
    once, _added = with_revoked(ca, [(0x1111, "superseded")], NOW)
    later = NOW + timedelta(hours=1)
    twice, added = with_revoked(once, [(0x1111, "key-compromise"), (0x3333, "superseded")], later)
    assert added == [0x3333]
    assert _listed(twice) == [(0x1111, x509.ReasonFlags.superseded), (0x3333, x509.ReasonFlags.superseded)]
    assert twice.crl_number == _crl_number(twice) == 2
    empty, none_added = with_revoked(twice, [], later)
    assert none_added == []
    assert _listed(empty) == _listed(twice)
    assert empty.crl_number == 3  # a republished CRL still gets a new number


def test_one_serial_twice_in_one_call_is_listed_once(ca: CaState) -> None:
    changed, added = with_revoked(ca, [(0x4444, "superseded"), (0x4444, "cessation-of-operation")], NOW)
    assert added == [0x4444]
    assert [serial for serial, _reason in _listed(changed)] == [0x4444]
    assert len(changed.revoked) == 1


def test_crl_is_fresh_for_half_its_life(ca: CaState) -> None:
    assert not crl_is_fresh(ca, NOW)  # no CRL yet
    published, _added = with_revoked(ca, [], NOW)
    assert crl_is_fresh(published, NOW + timedelta(days=3))
    assert not crl_is_fresh(published, NOW + timedelta(days=3, hours=12, minutes=1))


# -- renewal policy -----------------------------------------------------------------------------------


def test_policy_takes_the_line_renewal_margin_for_every_request() -> None:
    line = parse_plantline(demo_body())  # renewBefore: 30
    body = demo_body()
    body["spec"]["pki"]["renewBefore"] = 12
    body["spec"]["machines"][0]["opcua"] = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}
    short = parse_plantline(body)
    assert {policy(line.spec, r).renew_before for r in render_certificate_requests(line)} == {timedelta(days=30)}
    assert {policy(short.spec, r).renew_before for r in render_certificate_requests(short)} == {timedelta(days=12)}


def test_policy_falls_back_to_each_profile_margin() -> None:
    body = demo_body()
    del body["spec"]["pki"]["renewBefore"]
    body["spec"]["machines"][0]["opcua"] = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}
    line = parse_plantline(body)
    margins = {r.profile: policy(line.spec, r).renew_before for r in render_certificate_requests(line)}
    assert margins == {
        "mqtt-client": timedelta(days=30),
        "mqtt-server": timedelta(days=30),
        "opcua-application": timedelta(days=60),
    }


def test_maintenance_window_is_read_in_the_shift_calendar_time_zone() -> None:
    spec = parse_plantline(demo_body()).spec  # sat 02:00-06:00, Europe/Berlin
    (window,) = policy(spec, CLIENT).windows
    assert window.tz == ZoneInfo("Europe/Berlin")
    saturday = datetime(2026, 11, 21, tzinfo=UTC)  # CET is UTC+1
    assert not window.contains(saturday + timedelta(hours=0, minutes=59))  # 01:59 Berlin
    assert window.contains(saturday + timedelta(hours=1))  # 02:00 Berlin
    assert window.contains(saturday + timedelta(hours=4, minutes=59))  # 05:59 Berlin
    assert not window.contains(saturday + timedelta(hours=5))  # 06:00 Berlin
    summer = datetime(2026, 7, 4, tzinfo=UTC)  # CEST is UTC+2
    assert window.contains(summer + timedelta(hours=0, minutes=30))  # 02:30 Berlin
    assert not window.contains(summer + timedelta(hours=4, minutes=30))  # 06:30 Berlin


def test_maintenance_window_without_a_shift_calendar_is_utc() -> None:
    body = demo_body()
    del body["spec"]["kpi"]
    spec = parse_plantline(body).spec
    (window,) = policy(spec, CLIENT).windows
    saturday = datetime(2026, 11, 21, tzinfo=UTC)
    assert window.contains(saturday + timedelta(hours=2))
    assert not window.contains(saturday + timedelta(hours=1, minutes=30))


def test_no_maintenance_window_means_renewal_any_time() -> None:
    assert policy(_spec(), CLIENT).windows == ()
    assert policy(_spec(), CLIENT).renew_before == timedelta(days=30)  # the request's margin
