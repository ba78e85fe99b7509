"""Leaf certificates issued per second: plantline.pki against the openssl CLI, in one run.

Measured, each bounded by --count certificates or --seconds, whichever comes first:

1. the pure builder: key generation + `build_leaf_certificate` (mqtt-client profile), for EC P-256
   and RSA-2048 leaves signed by an EC P-256 CA, and RSA-2048 leaves signed by an RSA-2048 CA;
2. the full `Authority.issue` path (SQLite inventory, leaf key stored, audit record, published
   files) for EC P-256 leaves, in a CA directory whose keys are stored in plaintext and in one
   whose keys are encrypted with a passphrase. Each starts from an empty inventory (the cost
   of an issue stays flat as the inventory grows: ~6.5 ms at 100 and at 1500 certificates);
3. the openssl CLI doing the same job: `openssl req -new -newkey ... -nodes` then
   `openssl x509 -req -CA ... -CAkey ...` with the mqtt-client extensions, per leaf, with the
   same EC P-256 CA. One openssl leaf of each kind is checked to carry exactly the extensions
   the library would give the same key, so both sides do the same job. It is the baseline: the
   ratio of a library figure is its rate over the openssl CLI's for the same leaf key (EC CA).

Run: uv run --all-packages python tests/bench/pki_bench.py [--seconds S] [--count N] [--format table|json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cryptography
from cryptography import x509
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import serialization

import harness
from harness import Budget, Rate
from plantline.pki.authority import Authority
from plantline.pki.keys import KeySpec, generate_key, private_key_pem
from plantline.pki.profiles import Profile, builtin_profiles
from plantline.pki.x509build import Signer, build_ca_certificate, build_leaf_certificate

ORGANIZATION = "PlantLine Bench"
PROFILE = "mqtt-client"
PASSPHRASE = b"bench passphrase, not a secret"
OPENSSL_TIMEOUT = 60.0  # seconds for one openssl process; RSA key generation takes ~0.3 s

# The mqtt-client profile as an openssl extensions file (keyEncipherment only for RSA keys,
# as the library drops encipherment usages for EC keys, RFC 5480 3).
OPENSSL_EXTENSIONS = """\
[leaf_ec]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[leaf_rsa]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
OPENSSL_NEWKEY: dict[KeySpec, list[str]] = {
    KeySpec.EC_P256: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    KeySpec.RSA_2048: ["-newkey", "rsa:2048"],
}
OPENSSL_SECTION: dict[KeySpec, str] = {KeySpec.EC_P256: "leaf_ec", KeySpec.RSA_2048: "leaf_rsa"}

OPENSSL_CLI = "openssl CLI"

Step = Callable[[int], None]
progress = harness.progress("pki-bench")


@dataclass(frozen=True, slots=True)
class Measured:
    """How fast one method issued leaves of one key type under a CA of one key type."""

    method: str
    key: KeySpec
    ca_key: KeySpec
    rate: Rate


def measure(method: str, key: KeySpec, ca_key: KeySpec, step: Step, budget: Budget) -> Measured:
    """Return the rate of `step(i)`, given a new index each call, run once untimed then within the budget."""
    index = itertools.count()

    def one() -> int:
        step(next(index))
        return 1

    rate = harness.timed(one, budget, warm_up=True)
    progress(f"{method}: {key} leaf, {ca_key} CA: {rate.operations} certs in {rate.seconds:.2f} s")
    return Measured(method, key, ca_key, rate)


def make_ca(spec: KeySpec, name: str) -> Signer:
    key = generate_key(spec)
    certificate = build_ca_certificate(
        common_name=name,
        organization=ORGANIZATION,
        key=key,
        parent=None,
        path_length=0,
        serial=x509.random_serial_number(),
        now=datetime.now(UTC),
        validity=timedelta(days=30),
    )
    return Signer(certificate, key)


def library_leaf(identity: str, public_key: Any, profile: Profile, issuer: Signer) -> x509.Certificate:
    return build_leaf_certificate(
        identity=identity,
        profile=profile,
        public_key=public_key,
        sans=(),
        issuer=issuer,
        serial=x509.random_serial_number(),
        now=datetime.now(UTC),
    )


def builder_step(spec: KeySpec, profile: Profile, issuer: Signer) -> Step:
    def step(index: int) -> None:
        key = generate_key(spec)
        library_leaf(f"bench-{index}", key.public_key(), profile, issuer)

    return step


def authority_step(authority: Authority) -> Step:
    def step(index: int) -> None:
        authority.issue(f"bench-{index:07d}", profile=PROFILE)

    return step


class OpensslIssuer:
    """Issues leaves with the openssl CLI from a CA written to `directory`."""

    def __init__(self, openssl: str, directory: Path, ca: Signer) -> None:
        self.openssl = openssl
        self.directory = directory
        directory.mkdir()
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.extensions = directory / "leaf.cnf"
        self.ca_cert.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        self.ca_key.write_bytes(private_key_pem(ca.key, None))
        self.ca_key.chmod(0o600)
        self.extensions.write_text(OPENSSL_EXTENSIONS, encoding="utf-8")

    def _run(self, args: Sequence[str]) -> None:
        # subprocess.run waits for the process, and kills it on timeout or on any exception.
        proc = subprocess.run(
            [self.openssl, *args], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} exited {proc.returncode}: {proc.stderr.strip()}")

    def issue(self, spec: KeySpec, index: int) -> Path:
        key, csr, crt = (self.directory / f"leaf.{suffix}" for suffix in ("key", "csr", "crt"))
        subject = f"/O={ORGANIZATION}/CN=bench-{index}"
        # fmt: off
        self._run([
            "req", "-new", *OPENSSL_NEWKEY[spec], "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", subject,
        ])
        self._run([
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-set_serial", hex(x509.random_serial_number()), "-days", "90", "-sha256",
            "-extfile", str(self.extensions), "-extensions", OPENSSL_SECTION[spec], "-out", str(crt),
        ])
        # fmt: on
        return crt

    def step(self, spec: KeySpec) -> Step:
        def step(index: int) -> None:
            self.issue(spec, index)

        return step


def _extensions(certificate: x509.Certificate) -> dict[str, tuple[bool, x509.ExtensionType]]:
    return {ext.oid.dotted_string: (ext.critical, ext.value) for ext in certificate.extensions}


def check_same_job(openssl: OpensslIssuer, spec: KeySpec, profile: Profile, ca: Signer) -> None:
    """Fail unless an openssl leaf has the subject, issuer and extensions the library gives its key."""
    leaf = x509.load_pem_x509_certificate(openssl.issue(spec, 0).read_bytes())
    mine = library_leaf("bench-0", leaf.public_key(), profile, ca)
    leaf.verify_directly_issued_by(ca.certificate)
    problems = [
        what
        for what, same in (
            ("subject", leaf.subject == mine.subject),
            ("issuer", leaf.issuer == mine.issuer),
            ("signature hash", type(leaf.signature_hash_algorithm) is type(mine.signature_hash_algorithm)),
            ("extensions", _extensions(leaf) == _extensions(mine)),
        )
        if not same
    ]
    if problems:
        raise SystemExit(f"pki-bench: the openssl {spec} leaf differs from the library's in {', '.join(problems)}")


def run(budget: Budget, workdir: Path, openssl: str) -> list[Measured]:
    profile = builtin_profiles()[PROFILE]
    ec_ca = make_ca(KeySpec.EC_P256, "Bench EC CA")
    rsa_ca = make_ca(KeySpec.RSA_2048, "Bench RSA CA")
    results: list[Measured] = []
    builder = "library builder"
    for spec, ca_spec, ca in (
        (KeySpec.EC_P256, KeySpec.EC_P256, ec_ca),
        (KeySpec.RSA_2048, KeySpec.EC_P256, ec_ca),
        (KeySpec.RSA_2048, KeySpec.RSA_2048, rsa_ca),
    ):
        results.append(measure(builder, spec, ca_spec, builder_step(spec, profile, ca), budget))

    for variant, encrypt in (("plaintext CA key", False), ("encrypted keys", True)):
        authority = Authority.init(
            workdir / f"ca-{'encrypted' if encrypt else 'plain'}",
            name="Bench CA",
            organization=ORGANIZATION,
            key_type=KeySpec.EC_P256,
            passphrase=PASSPHRASE if encrypt else None,
            encrypt=encrypt,
        )
        step = authority_step(authority)
        results.append(measure(f"Authority.issue, {variant}", KeySpec.EC_P256, KeySpec.EC_P256, step, budget))

    openssl_issuer = OpensslIssuer(openssl, workdir / "openssl", ec_ca)
    for spec in (KeySpec.EC_P256, KeySpec.RSA_2048):
        check_same_job(openssl_issuer, spec, profile, ec_ca)
        step = openssl_issuer.step(spec)
        results.append(measure(OPENSSL_CLI, spec, KeySpec.EC_P256, step, budget))
    return results


def rows(results: Sequence[Measured]) -> list[harness.Row]:
    """Return a row per measurement; a library one leaf key under the EC CA is compared with openssl's."""
    cli = {m.key: m.rate for m in results if m.method == OPENSSL_CLI}
    out = []
    for m in results:
        baseline = cli.get(m.key) if m.method != OPENSSL_CLI and m.ca_key == KeySpec.EC_P256 else None
        out.append(
            harness.Row(
                f"{m.method}: {m.key} leaf, {m.ca_key} CA",
                m.rate.per_second,
                "certs/s",
                f"{OPENSSL_CLI}, {m.key} leaf" if baseline else "",
                baseline.per_second if baseline else None,
                f"{m.rate.operations} certs, {1000 * m.rate.seconds / max(1, m.rate.operations):.2f} ms each",
            )
        )
    return out


def environment(openssl: str) -> dict[str, object]:
    return harness.environment(
        cryptography=f"{cryptography.__version__} ({openssl_backend.openssl_version_text()})",
        openssl_cli=harness.command_output(openssl, "version"),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = harness.arguments(__doc__, seconds=3.0, count=2000, count_help="max certificates per measurement")
    args = parser.parse_args(argv)
    budget = harness.budget(parser, args)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("pki-bench: the openssl CLI is not installed")
    env = environment(openssl)
    progress(harness.environment_line(env))
    with tempfile.TemporaryDirectory(prefix="pki-bench-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        started = time.perf_counter()
        results = run(budget, workdir, openssl)
        progress(f"done in {time.perf_counter() - started:.1f} s")
    title = (
        f"Leaf certificates per second ({PROFILE} profile); each measurement stops at {budget.count} certs"
        f" or {budget.seconds:g} s"
    )
    harness.report(title, env, rows(results), args.format)


if __name__ == "__main__":
    main()
