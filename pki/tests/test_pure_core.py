"""The pure core: names, maintenance windows, the renewal decision, profiles, X.509 building."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from plantline.pki.errors import InvalidInput, PolicyViolation
from plantline.pki.keys import KeySpec, generate_key
from plantline.pki.names import San, parse_san, parse_sans, validate_identity
from plantline.pki.profiles import builtin_profiles, parse_profiles, select
from plantline.pki.renewal import Action, CertFacts, RenewalPolicy, decide
from plantline.pki.window import parse_window
from plantline.pki.x509build import (
    RevokedEntry,
    Signer,
    build_ca_certificate,
    build_crl,
    build_leaf_certificate,
    parse_reason,
)

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", San("dns", "localhost")),
        ("dns:Broker.Site1.Example", San("dns", "broker.site1.example")),
        ("*.plant.example", San("dns", "*.plant.example")),
        ("127.0.0.1", San("ip", "127.0.0.1")),
        ("ip:::1", San("ip", "::1")),
        ("uri:urn:plantline:site1:filler", San("uri", "urn:plantline:site1:filler")),
    ],
)
def test_san_forms(text: str, expected: San) -> None:
    assert parse_san(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bad name", "not a valid DNS name"),
        ("-lead.example", "not a valid DNS name"),
        ("ip:300.1.1.1", "not a valid IPv4 or IPv6"),
        ("uri:no spaces allowed", "not a valid URI"),
        ("email:a@b.c", "unknown prefix"),
        ("*", "bare wildcard"),
        ("a" * 64 + ".example", "not a valid DNS name"),
    ],
)
def test_bad_san_names_its_index(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_sans(["localhost", text])
    assert err.value.message.startswith("san[1]: ")
    assert fragment in err.value.message


def test_sans_keep_order_and_drop_repeats() -> None:
    assert parse_sans(["b.example", "a.example", "B.example"]) == (San("dns", "b.example"), San("dns", "a.example"))


@pytest.mark.parametrize("identity", ["line1-filler", "a", "broker.site1", "X_9"])
def test_valid_identities(identity: str) -> None:
    assert validate_identity(identity) == identity


@pytest.mark.parametrize("identity", ["", "a/b", "a+b", "a#", "-x", "x-", "a b", "x" * 65])
def test_identities_that_could_break_mqtt_acls_are_refused(identity: str) -> None:
    with pytest.raises(InvalidInput, match="identity: "):
        validate_identity(identity)


@given(st.text(max_size=80))
def test_identity_never_contains_mqtt_wildcards(text: str) -> None:
    try:
        validate_identity(text)
    except InvalidInput:
        return
    assert not set(text) & set("+#/ \x00")


# -- maintenance windows --------------------------------------------------------------------------


def test_window_contains_and_next_opening() -> None:
    window = parse_window("sat 02:00-06:00")
    saturday = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    assert window.contains(saturday)
    assert not window.contains(saturday.replace(hour=6))
    assert not window.contains(NOW)
    assert window.next_opening(NOW) == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_window_across_midnight_and_day_ranges() -> None:
    window = parse_window("mon-fri 22:00-02:00")
    assert window.contains(datetime(2026, 11, 19, 1, 30, tzinfo=UTC))  # Thu 01:30, opened Wed 22:00
    assert not window.contains(datetime(2026, 11, 22, 1, 0, tzinfo=UTC))  # Sun 01:00, Sat has no opening
    assert window.contains(datetime(2026, 11, 21, 1, 0, tzinfo=UTC))  # Sat 01:00, opened Fri 22:00


def test_window_in_a_time_zone() -> None:
    window = parse_window("wed 13:00-14:00", timezone="Europe/Berlin")
    assert window.contains(NOW)  # 12:00 UTC is 13:00 in Berlin in November


@pytest.mark.parametrize("text", ["saturday 02:00-03:00", "sat 25:00-26:00", "sat 2-3", "sat"])
def test_bad_windows_name_the_field(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^maintenance_window: "):
        parse_window(text)


# -- the renewal decision -------------------------------------------------------------------------

POLICY = RenewalPolicy(renew_before=timedelta(days=30))


def facts(days_left: float, **kw: object) -> CertFacts:
    return CertFacts(not_after=NOW + timedelta(days=days_left), key=KeySpec.EC_P256, **kw)  # type: ignore[arg-type]


def test_decide_create_when_missing() -> None:
    assert decide(NOW, None, POLICY).action is Action.CREATE


def test_decide_noop_outside_the_window_says_when_it_opens() -> None:
    decision = decide(NOW, facts(31), POLICY)
    assert decision.action is Action.NOOP
    assert "2026-11-19T12:00:00+00:00" in decision.reason


def test_decide_renew_inside_the_window() -> None:
    assert decide(NOW, facts(29), POLICY).action is Action.RENEW


def test_decide_expired_and_revoked() -> None:
    assert decide(NOW, facts(-1), POLICY).action is Action.RENEW
    assert decide(NOW, facts(200, revoked=True), POLICY).action is Action.REPLACE_KEY


def test_decide_replace_key_when_the_policy_wants_another_key() -> None:
    policy = RenewalPolicy(renew_before=timedelta(days=30), key=KeySpec.EC_P384)
    assert decide(NOW, facts(200), policy).action is Action.REPLACE_KEY
    assert decide(NOW, facts(-1), policy).action is Action.REPLACE_KEY


def test_decide_renew_after_ca_rotation() -> None:
    assert decide(NOW, facts(200, issued_by_current_ca=False), POLICY).action is Action.RENEW


def test_decide_postpones_to_the_maintenance_window() -> None:
    policy = RenewalPolicy(renew_before=timedelta(days=30), windows=(parse_window("sat 02:00-06:00"),))
    decision = decide(NOW, facts(20), policy)
    assert decision.action is Action.POSTPONED
    assert decision.retry_at == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    inside = decide(datetime(2026, 11, 21, 3, 0, tzinfo=UTC), facts(17), policy)
    assert inside.action is Action.RENEW


def test_decide_does_not_postpone_past_expiry() -> None:
    policy = RenewalPolicy(renew_before=timedelta(days=30), windows=(parse_window("sat 02:00-06:00"),))
    decision = decide(NOW, facts(1), policy)  # expires Thursday, the window opens Saturday
    assert decision.action is Action.RENEW
    assert "before the next maintenance window" in decision.reason


@given(
    days_left=st.floats(min_value=-400, max_value=400, allow_nan=False),
    revoked=st.booleans(),
    hour=st.integers(0, 23),
)
def test_decide_never_lets_a_certificate_lapse(days_left: float, revoked: bool, hour: int) -> None:
    now = NOW.replace(hour=hour)
    policy = RenewalPolicy(renew_before=timedelta(days=30), windows=(parse_window("sun 01:00-02:00"),))
    cert = CertFacts(not_after=now + timedelta(days=days_left), key=KeySpec.EC_P256, revoked=revoked)
    decision = decide(now, cert, policy)
    if decision.action is Action.POSTPONED:
        assert decision.retry_at is not None
        assert decision.retry_at + policy.minimum_remaining <= cert.not_after
    if revoked or days_left <= 0:
        assert decision.action.needs_work


# -- profiles -------------------------------------------------------------------------------------


def test_builtin_profiles() -> None:
    profiles = builtin_profiles()
    assert set(profiles) == {"mqtt-server", "mqtt-client", "opcua-application", "operator"}
    assert profiles["opcua-application"].default_key is KeySpec.RSA_2048
    with pytest.raises(InvalidInput, match="unknown profile 'nope'; known: mqtt-client"):
        select(profiles, "nope")


def test_opcua_profile_needs_an_rsa_issuer_and_one_uri() -> None:
    profile = builtin_profiles()["opcua-application"]
    with pytest.raises(PolicyViolation, match=r"rsa-2048"):
        profile.check_request(key=KeySpec.RSA_2048, issuer_key=KeySpec.EC_P256, sans=[San("uri", "urn:x")])
    with pytest.raises(InvalidInput, match="exactly one URI SAN"):
        profile.check_request(key=KeySpec.RSA_2048, issuer_key=KeySpec.RSA_2048, sans=[])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("[profiles.x]\nkey_usage = []\n", "profiles.x.extended_key_usage: missing"),
        (
            '[profiles.x]\nkey_usage = ["signing"]\nextended_key_usage = []\ndefault_key = "ec-p256"\n'
            "validity_days = 10\nrenew_before_days = 5\n",
            "profiles.x.key_usage: unknown value(s) ['signing']",
        ),
        (
            '[profiles.x]\nkey_usage = []\nextended_key_usage = []\ndefault_key = "ec-p256"\n'
            "validity_days = 10\nrenew_before_days = 10\n",
            "renew_before_days: must be less than validity_days",
        ),
        ("[profiles.x\n", "not valid TOML"),
    ],
)
def test_bad_profiles_file_names_file_and_field(body: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_profiles(body, source="ca/profiles.toml")
    assert err.value.message.startswith("ca/profiles.toml")
    assert fragment in err.value.message


# -- X.509 ----------------------------------------------------------------------------------------


def _root(spec: KeySpec = KeySpec.EC_P256, path_length: int | None = 1) -> Signer:
    key = generate_key(spec)
    cert = build_ca_certificate(
        common_name="Root",
        organization="Org",
        key=key,
        parent=None,
        path_length=path_length,
        serial=1,
        now=NOW,
        validity=timedelta(days=365),
    )
    return Signer(cert, key)


def test_leaf_follows_its_profile() -> None:
    root = _root()
    key = generate_key(KeySpec.EC_P256)
    leaf = build_leaf_certificate(
        identity="broker",
        profile=builtin_profiles()["mqtt-server"],
        public_key=key.public_key(),
        sans=parse_sans(["localhost", "127.0.0.1"]),
        issuer=root,
        serial=42,
        now=NOW,
    )
    leaf.verify_directly_issued_by(root.certificate)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_encipherment  # meaningless for EC keys, so left out
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=365)
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert not basic.value.ca


def test_leaf_never_outlives_its_issuer() -> None:
    root = _root()
    profile = builtin_profiles()["mqtt-client"]
    leaf = build_leaf_certificate(
        identity="c",
        profile=profile,
        public_key=generate_key(KeySpec.EC_P256).public_key(),
        sans=(),
        issuer=root,
        serial=7,
        now=NOW + timedelta(days=360),
    )
    assert leaf.not_valid_after_utc == root.certificate.not_valid_after_utc


def test_path_length_zero_cannot_sign_a_ca() -> None:
    root = _root(path_length=0)
    with pytest.raises(InvalidInput, match="path length 0"):
        build_ca_certificate(
            common_name="Sub",
            organization=None,
            key=generate_key(KeySpec.EC_P256),
            parent=root,
            path_length=None,
            serial=2,
            now=NOW,
            validity=timedelta(days=10),
        )


def test_crl_lists_revocations_with_reasons() -> None:
    root = _root()
    crl = build_crl(
        issuer=root,
        revoked=[RevokedEntry(5, NOW, "key-compromise"), RevokedEntry(6, NOW, "unspecified")],
        number=3,
        now=NOW,
        next_update=timedelta(days=7),
    )
    assert crl.is_signature_valid(root.certificate.public_key())  # type: ignore[arg-type]
    five = crl.get_revoked_certificate_by_serial_number(5)
    assert five is not None
    assert five.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    six = crl.get_revoked_certificate_by_serial_number(6)
    assert six is not None
    assert len(six.extensions) == 0  # RFC 5280: no reason code for unspecified
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert crl.next_update_utc == NOW + timedelta(days=7)


def test_revocation_reasons() -> None:
    assert parse_reason("keyCompromise".replace("C", "-c")) == "key-compromise"
    assert parse_reason("KEY_COMPROMISE") == "key-compromise"
    with pytest.raises(InvalidInput, match="reason: unknown revocation reason"):
        parse_reason("lost-it")
