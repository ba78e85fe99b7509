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
   the library would give the same key, so both sides do the same job.

Run: uv run --all-packages python tests/bench/pki_bench.py [--seconds S] [--count N] [--format json]
Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
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

Step = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Result:
    """One measurement: how many leaves a method issued in how long."""

    method: str
    variant: str
    key: str
    ca_key: str
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def ms_per_cert(self) -> float:
        return 1000.0 * self.seconds / self.count

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "variant": self.variant,
            "key": self.key,
            "ca_key": self.ca_key,
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "certs_per_second": round(self.rate, 2),
            "ms_per_cert": round(self.ms_per_cert, 3),
        }


@dataclass(frozen=True, slots=True)
class Budget:
    """Each measurement stops after `count` certificates or `seconds`, whichever comes first."""

    count: int
    seconds: float


def progress(message: str) -> None:
    print(f"[pki-bench] {message}", file=sys.stderr, flush=True)


def measure(method: str, variant: str, key: KeySpec, ca_key: KeySpec, step: Step, budget: Budget) -> Result:
    """Run `step(i)` once untimed, then until the budget is spent; return the timed rate."""
    label = f"{method} {variant}".strip() + f": {key} leaf, {ca_key} CA"
    step(0)  # warm-up: first-use costs (imports, SQLite pages, page cache) are not measured
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while done < budget.count and elapsed < budget.seconds:
        done += 1
        step(done)
        elapsed = time.perf_counter() - start
    result = Result(method, variant, str(key), str(ca_key), done, elapsed)
    progress(f"{label}: {done} certs in {elapsed:.2f} s = {result.rate:.1f}/s ({result.ms_per_cert:.2f} ms each)")
    return result


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


def openssl_version(openssl: str) -> str:
    proc = subprocess.run([openssl, "version"], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT, check=True)
    return proc.stdout.strip()


def run(budget: Budget, workdir: Path, openssl: str) -> list[Result]:
    profile = builtin_profiles()[PROFILE]
    ec_ca = make_ca(KeySpec.EC_P256, "Bench EC CA")
    rsa_ca = make_ca(KeySpec.RSA_2048, "Bench RSA CA")
    results: list[Result] = []
    builder = "library builder"
    for spec, ca_spec, ca in (
        (KeySpec.EC_P256, KeySpec.EC_P256, ec_ca),
        (KeySpec.RSA_2048, KeySpec.EC_P256, ec_ca),
        (KeySpec.RSA_2048, KeySpec.RSA_2048, rsa_ca),
    ):
        results.append(measure(builder, "", spec, ca_spec, builder_step(spec, profile, ca), budget))

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
        results.append(measure("Authority.issue", variant, KeySpec.EC_P256, KeySpec.EC_P256, step, budget))

    openssl_issuer = OpensslIssuer(openssl, workdir / "openssl", ec_ca)
    for spec in (KeySpec.EC_P256, KeySpec.RSA_2048):
        check_same_job(openssl_issuer, spec, profile, ec_ca)
        step = openssl_issuer.step(spec)
        results.append(measure("openssl CLI", "req + x509 -req", spec, KeySpec.EC_P256, step, budget))
    return results


def ratios(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Library rate / openssl rate for each key type, same leaf key and same (EC P-256) CA."""
    out = []
    for base in (r for r in results if r.method == "openssl CLI"):
        for other in results:
            if other.method != "openssl CLI" and (other.key, other.ca_key) == (base.key, base.ca_key):
                out.append(
                    {
                        "key": other.key,
                        "library": f"{other.method} {other.variant}".strip(),
                        "ratio": round(other.rate / base.rate, 2),
                    }
                )
    return out


def environment(openssl: str, workdir: Path, budget: Budget) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "cryptography_openssl": openssl_backend.openssl_version_text(),
        "openssl_cli": openssl_version(openssl),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "workdir": str(workdir.parent),
        "budget": {"count": budget.count, "seconds": budget.seconds},
    }


def print_table(env: dict[str, Any], results: Sequence[Result], ratio_rows: Sequence[dict[str, Any]]) -> None:
    budget = env["budget"]
    print(
        f"Leaf certificates per second ({PROFILE} profile); each measurement stops at {budget['count']} "
        f"certs or {budget['seconds']} s"
    )
    print(
        f"python {env['python']}, cryptography {env['cryptography']} ({env['cryptography_openssl']}), "
        f"CLI {env['openssl_cli']}"
    )
    print()
    header = f"{'method':<18} {'variant':<18} {'leaf key':<9} {'CA key':<9} {'certs':>6} {'time s':>7}"
    print(f"{header} {'certs/s':>9} {'ms/cert':>8}")
    for r in results:
        print(
            f"{r.method:<18} {r.variant:<18} {r.key:<9} {r.ca_key:<9} {r.count:>6} {r.seconds:>7.2f} "
            f"{r.rate:>9.1f} {r.ms_per_cert:>8.2f}"
        )
    print()
    print("library / openssl CLI (same leaf key, EC P-256 CA):")
    for row in ratio_rows:
        print(f"  {row['key']:<9} {row['library']:<36} {row['ratio']:>8.2f}x")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement (default 3)")
    parser.add_argument("--count", type=int, default=2000, help="max certificates per measurement (default 2000)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.count < 1:
        parser.error("--seconds must be > 0 and --count at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    budget = Budget(count=args.count, seconds=args.seconds)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("pki-bench: the openssl CLI is not installed")
    with tempfile.TemporaryDirectory(prefix="pki-bench-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        env = environment(openssl, workdir, budget)
        started = time.perf_counter()
        results = run(budget, workdir, openssl)
        progress(f"done in {time.perf_counter() - started:.1f} s")
    ratio_rows = ratios(results)
    if args.format == "json":
        document = {"environment": env, "results": [r.to_json() for r in results], "ratios": ratio_rows}
        print(json.dumps(document, indent=2))
    else:
        print_table(env, results, ratio_rows)


if __name__ == "__main__":
    main()
