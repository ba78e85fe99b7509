"""Bad input gets a clear error with a stable code and leaves the CA directory byte-for-byte unchanged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PASSPHRASE, run_cli
from plantline.pki.authority import Authority
from plantline.pki.errors import Conflict, CorruptState, InvalidInput, NotFound, PassphraseError, PkiError
from plantline.pki.exports import CertFormat
from plantline.pki.names import parse_san

Snapshot = dict[str, bytes]
# A plaintext Kubernetes Secret export of the broker, short of the option under test.
K8S_EXPORT = ["cert", "export", "broker", "--format", "k8s-secret", "--out", "/tmp/never.yaml",
              "--unsafe-plaintext-key"]  # fmt: skip


def snapshot(directory: Path) -> Snapshot:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with an active, a renewed and a revoked identity, copied fresh for every example."""
    directory = tmp_path_factory.mktemp("template") / "ca"
    authority = Authority.init(directory, name="Bad Input CA", passphrase=PASSPHRASE.encode())
    authority = Authority(directory, passphrase=lambda: PASSPHRASE.encode())
    authority.issue("broker", profile="mqtt-server", sans=["localhost"])
    authority.issue("filler", profile="mqtt-client")
    authority.renew("filler")
    authority.issue("capper", profile="mqtt-client")
    authority.revoke("capper", reason="key-compromise")
    return directory


def _fresh(template: Path, tmp: Path) -> Path:
    target = tmp / "ca"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target)
    return target


def _bad_san(text: str) -> bool:
    try:
        parse_san(text)
    except InvalidInput:
        return True
    return False


Op = Callable[[Authority], object]

bad_sans = st.text(min_size=1, max_size=30).filter(_bad_san)
unknown_profiles = st.text(min_size=1, max_size=20).filter(
    lambda t: t not in {"mqtt-server", "mqtt-client", "opcua-application", "operator"}
)
unknown_serials = st.integers(min_value=1, max_value=2**64).map(lambda n: format(n, "x"))
wrong_passphrases = st.binary(min_size=1, max_size=40).filter(lambda b: b != PASSPHRASE.encode())

cases: st.SearchStrategy[tuple[str, type[PkiError], Op]] = st.one_of(
    bad_sans.map(
        lambda s: (
            "malformed SAN",
            InvalidInput,
            lambda a: a.issue("new", profile="mqtt-server", sans=["ok.example", s]),
        )
    ),
    unknown_profiles.map(lambda p: ("unknown profile", InvalidInput, lambda a: a.issue("new", profile=p))),
    st.sampled_from(["broker", "filler"]).map(
        lambda i: ("duplicate identity", Conflict, lambda a: a.issue(i, profile="mqtt-client"))
    ),
    unknown_serials.flatmap(
        lambda s: st.sampled_from(
            [
                ("unknown serial", NotFound, lambda a: a.revoke(s)),
                ("unknown serial", NotFound, lambda a: a.export(s, CertFormat.PEM)),
                ("unknown serial", NotFound, lambda a: a.find(s)),
            ]
        )
    ),
    st.sampled_from(["nobody", "capper"]).map(
        lambda i: ("renew without an active certificate", NotFound, lambda a: a.renew(i))
    ),
    st.just(("already revoked", Conflict, lambda a: a.revoke("capper"))),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases)
def test_bad_requests_change_nothing(template: Path, tmp_path: Path, case: tuple[str, type[PkiError], Op]) -> None:
    _, error, op = case
    directory = _fresh(template, tmp_path)
    before = snapshot(directory)
    with pytest.raises(error) as err:
        op(Authority(directory, passphrase=lambda: PASSPHRASE.encode()))
    assert err.value.code.startswith("PKI_")
    assert err.value.message
    assert snapshot(directory) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passphrase=wrong_passphrases, action=st.sampled_from(["issue", "revoke", "renew", "crl", "rotate", "key"]))
def test_wrong_passphrase_changes_nothing(template: Path, tmp_path: Path, passphrase: bytes, action: str) -> None:
    directory = _fresh(template, tmp_path)
    before = snapshot(directory)
    authority = Authority(directory, passphrase=lambda: passphrase)
    ops: dict[str, Op] = {
        "issue": lambda a: a.issue("new", profile="mqtt-client"),
        "revoke": lambda a: a.revoke("broker"),
        "renew": lambda a: a.renew("filler", new_key=True),
        "crl": lambda a: a.generate_crl(),
        "rotate": lambda a: a.rotate_start(),
        "key": lambda a: a.export("broker", CertFormat.KEY, key_passphrase=b"x"),
    }
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        ops[action](authority)
    assert snapshot(directory) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    garbage=st.binary(min_size=1, max_size=64),
    offset=st.integers(min_value=0, max_value=15),
    action=st.sampled_from(["issue", "list", "revoke", "info", "check"]),
)
def test_corrupted_inventory_is_reported_and_left_alone(
    template: Path, tmp_path: Path, garbage: bytes, offset: int, action: str
) -> None:
    directory = _fresh(template, tmp_path)
    db = directory / "pki.db"
    data = bytearray(db.read_bytes())
    data[offset : offset + len(garbage)] = garbage  # the header: SQLite's magic string is here
    if bytes(data[:16]) == b"SQLite format 3\x00":
        data[0] ^= 0xFF
    db.write_bytes(bytes(data))
    before = snapshot(directory)
    authority = Authority(directory, passphrase=lambda: PASSPHRASE.encode())
    ops: dict[str, Op] = {
        "issue": lambda a: a.issue("new", profile="mqtt-client"),
        "list": lambda a: a.certificates(),
        "revoke": lambda a: a.revoke("broker"),
        "info": lambda a: a.info(),
        "check": lambda a: a.check(),
    }
    with pytest.raises(CorruptState, match=r"pki\.db"):
        ops[action](authority)
    assert snapshot(directory) == before


@pytest.mark.parametrize(
    ("args", "status", "code", "fragment"),
    [
        (["cert", "issue", "x", "--profile", "mqtt-server", "--san", "bad name"], 3, "PKI_INVALID_INPUT", "san[0]"),
        (["cert", "issue", "x", "--profile", "nope"], 3, "PKI_INVALID_INPUT", "unknown profile 'nope'"),
        (["cert", "issue", "broker", "--profile", "mqtt-client"], 5, "PKI_CONFLICT", "already has an active"),
        (["cert", "revoke", "abcdef0123"], 4, "PKI_NOT_FOUND", "'abcdef0123'"),
        (["cert", "issue", "x/y", "--profile", "mqtt-client"], 3, "PKI_INVALID_INPUT", "identity: 'x/y'"),
        (["cert", "issue", "x", "--profile", "mqtt-client", "--key-type", "dsa"], 3, "PKI_INVALID_INPUT", "key_type"),
        (["cert", "revoke", "broker", "--reason", "oops"], 3, "PKI_INVALID_INPUT", "reason: unknown"),
        (["cert", "export", "broker", "--format", "key"], 3, "PKI_INVALID_INPUT", "--out"),
        (["ca", "rotate", "--finalize"], 9, "PKI_POLICY", "no rotation in progress"),
        (["cert", "list", "--bogus"], 3, "PKI_USAGE", "--bogus"),
        ([*K8S_EXPORT, "--namespace", "line1\n  labels:\n    x: y"], 3, "PKI_INVALID_INPUT", "namespace: "),
        ([*K8S_EXPORT, "--secret-name", "Bad Name: x"], 3, "PKI_INVALID_INPUT", "secret name: "),
    ],
)
def test_cli_errors_have_stable_codes(
    template: Path, tmp_path: Path, args: list[str], status: int, code: str, fragment: str
) -> None:
    directory = _fresh(template, tmp_path)
    before = snapshot(directory)
    result = run_cli(*args, env={"PLANTLINE_PKI_DIR": str(directory)}, check=False)
    assert result.returncode == status, result.stderr
    assert f"error[{code}]" in result.stderr
    assert fragment in result.stderr
    assert result.stdout == ""
    assert snapshot(directory) == before


def test_cli_wrong_passphrase(template: Path, tmp_path: Path) -> None:
    directory = _fresh(template, tmp_path)
    before = snapshot(directory)
    result = run_cli(
        "cert", "issue", "x", "--profile", "mqtt-client", "--ca", str(directory),
        env={"PLANTLINE_PKI_PASSPHRASE": "not it"}, check=False,
    )  # fmt: skip
    assert result.returncode == 6
    assert "error[PKI_PASSPHRASE]" in result.stderr
    assert snapshot(directory) == before


def test_cli_missing_ca_directory(tmp_path: Path) -> None:
    result = run_cli("cert", "list", "--ca", str(tmp_path / "nowhere"), check=False)
    assert result.returncode == 4
    assert "no CA here" in result.stderr
    assert not (tmp_path / "nowhere").exists()
