"""`plantline-pki`: the security team's CLI over plantline.pki (noun verb, data to stdout).

Exit statuses: 0 success; for `cert needs-renewal` 0 renew, 1 fine, 2 missing; errors 3 and up
(3 invalid input, 4 not found, 5 conflict, 6 passphrase, 7 corrupt state, 8 busy, 9 policy).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plantline.pki.authority import Authority, IssuedCertificate, utcnow
from plantline.pki.errors import Conflict, InvalidInput, PassphraseError, PkiError
from plantline.pki.exports import CertFormat, check_k8s_names
from plantline.pki.inspect import describe
from plantline.pki.keys import KeySpec, spec_of
from plantline.pki.renewal import Action, CertFacts, Decision, RenewalPolicy, decide
from plantline.pki.store import PUBLIC_MODE, SECRET_MODE, atomic_write, write_new_file
from plantline.pki.window import parse_window
from plantline.pki.x509build import check_crl_url

PASSPHRASE_ENV = "PLANTLINE_PKI_PASSPHRASE"
PARENT_PASSPHRASE_ENV = "PLANTLINE_PKI_PARENT_PASSPHRASE"
EXPORT_PASSPHRASE_ENV = "PLANTLINE_PKI_EXPORT_PASSPHRASE"
CA_DIR_ENV = "PLANTLINE_PKI_DIR"
EXIT_USAGE = 3
RENEW, FINE, MISSING = 0, 1, 2

EXIT_CODES = """
\b
Exit status: 0 success; 3 invalid input or usage, 4 not found, 5 conflict
(exists; see --force), 6 passphrase missing or wrong, 7 corrupt CA state,
8 CA directory busy, 9 refused by policy.
"""


def _help(text: str) -> str:
    return text.rstrip() + "\n" + EXIT_CODES


def _say(message: str) -> None:
    click.echo(message, err=True)


def _emit(data: Any, fmt: str, human: Callable[[], object]) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human()


def _lines(lines: Iterable[str]) -> Callable[[], None]:
    def show() -> None:
        for line in lines:
            click.echo(line)

    return show


def _actor() -> str:
    explicit = os.environ.get("PLANTLINE_PKI_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _read_secret_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{what}: cannot read {path}: {exc.strerror}") from None
    secret = data.rstrip(b"\r\n")
    if not secret:
        raise PassphraseError(f"{what}: {path} is empty")
    return secret


def passphrase_source(file: Path | None, env: str, what: str, *, confirm: bool = False) -> Callable[[], bytes]:
    """Return a function giving the passphrase from a file, an environment variable, or a prompt.

    It is only called when a key is actually needed, after every input was validated.
    """

    def get() -> bytes:
        if file is not None:
            return _read_secret_file(file, what)
        if os.environ.get(env):
            return os.environ[env].encode()
        if sys.stdin.isatty():
            return str(click.prompt(what, hide_input=True, confirmation_prompt=confirm, err=True)).encode()
        raise PassphraseError(f"{what}: needed; give --passphrase-file, set {env}, or run in a terminal")

    return get


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format of the data written to stdout.",
)
PASSPHRASE_OPTION = click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"File holding the CA key passphrase (else ${PASSPHRASE_ENV}, else a prompt).",
)


def ca_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--ca",
        "ca_dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar=CA_DIR_ENV,
        required=True,
        help=f"The CA directory (or ${CA_DIR_ENV}).",
    )(func)


def _authority(ca_dir: Path, passphrase_file: Path | None = None) -> Authority:
    return Authority(
        ca_dir, passphrase=passphrase_source(passphrase_file, PASSPHRASE_ENV, "CA key passphrase"), actor=_actor()
    )


def _parent_authority(parent: Path | None, passphrase_file: Path | None) -> Authority | None:
    """Return the parent CA that --parent names (None without it), unlocked as --parent-passphrase-file says."""
    if parent is None:
        return None
    return Authority(
        parent,
        passphrase=passphrase_source(passphrase_file, PARENT_PASSPHRASE_ENV, "parent CA passphrase"),
        actor=_actor(),
    )


def _cert_line(cert: IssuedCertificate) -> str:
    return (
        f"{cert.serial:<42} {cert.identity:<24} {cert.profile:<18} {cert.status_at(utcnow()):<10} "
        f"{cert.not_after.date().isoformat()}"
    )


def _print_cert(cert: IssuedCertificate, fmt: str) -> None:
    _emit(cert.to_json(utcnow()), fmt, lambda: click.echo(_cert_line(cert)))


# -- the command tree ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="plantline-pki")
def cli() -> None:
    """PlantLine's certificate authority: CA, certificates, revocation, CRL, rotation.

    \b
    Start with:
      plantline-pki ca init ./pki/site1 --name "Site 1 CA"
      export PLANTLINE_PKI_DIR=./pki/site1
      plantline-pki cert issue broker --profile mqtt-server --san localhost --san 127.0.0.1
      plantline-pki cert export broker --format bundle --out ./broker --unsafe-plaintext-key
    """


@cli.group()
def ca() -> None:
    """Create, inspect, check and rotate a certificate authority."""


@cli.group()
def cert() -> None:
    """Issue, list, inspect, renew, revoke and export certificates."""


@cli.group()
def crl() -> None:
    """Certificate revocation lists."""


@cli.group()
def audit() -> None:
    """The audit log of every change made to a CA."""


@ca.command(
    "init",
    help=_help("""Create a root CA in DIR, or an intermediate signed by --parent.

\b
Examples:
  plantline-pki ca init ./pki/root --name "ACME Root CA" --organization ACME
  plantline-pki ca init ./pki/site1 --name "Site 1 CA" --parent ./pki/root
  plantline-pki ca init ./pki/opcua --name "OPC UA CA" --key-type rsa-2048
  plantline-pki ca init ./pki/site1 --name "Site 1 CA" --crl-url http://pki.site1.example/site1/crl.der
"""),
)
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", required=True, help="Common name of the CA certificate.")
@click.option("--organization", help="Organization (O) of the CA and the certificates it issues.")
@click.option(
    "--key-type", default="ec-p256", show_default=True, help="ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096."
)
@click.option(
    "--parent", type=click.Path(path_type=Path, file_okay=False), help="Parent CA directory: make an intermediate."
)
@click.option(
    "--path-length", type=int, help="Max CAs below this one (root default 1; intermediate default parent's - 1)."
)
@click.option("--validity-days", type=int, help="CA lifetime (root default 3650, intermediate 1825).")
@click.option("--crl-days", type=int, default=7, show_default=True, help="Days until a CRL's nextUpdate.")
@click.option(
    "--maintenance-window",
    "windows",
    multiple=True,
    help="Renewals happen only here, e.g. 'sat 02:00-06:00'. Repeatable.",
)
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of the maintenance windows.")
@click.option(
    "--crl-url",
    help="Put this CRL Distribution Point (http://...) in every certificate issued; serve the CA's crl.der there.",
)
@PASSPHRASE_OPTION
@click.option(
    "--parent-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Parent CA passphrase file (else ${PARENT_PASSPHRASE_ENV}).",
)
@click.option(
    "--unsafe-no-encryption", is_flag=True, help="Store the CA key in plaintext (tests and throwaway CAs only)."
)
@click.option("--force", is_flag=True, help="Replace a CA already in DIR.")
@FORMAT_OPTION
def ca_init(
    directory: Path,
    name: str,
    organization: str | None,
    key_type: str,
    parent: Path | None,
    path_length: int | None,
    validity_days: int | None,
    crl_days: int,
    windows: tuple[str, ...],
    timezone: str,
    crl_url: str | None,
    passphrase_file: Path | None,
    parent_passphrase_file: Path | None,
    unsafe_no_encryption: bool,
    force: bool,
    fmt: str,
) -> None:
    spec = KeySpec.parse(key_type, field="--key-type")
    if crl_url is not None:
        check_crl_url(crl_url, field="--crl-url")
    parent_authority = _parent_authority(parent, parent_passphrase_file)
    if parent_authority is not None:
        parent_authority.info()  # fails early with NotFound/CorruptState, before any key is made
    passphrase = None
    if not unsafe_no_encryption:
        if (directory / "pki.db").exists() and not force:
            raise Conflict(f"{directory}: already holds a CA; pass --force to replace it")
        passphrase = passphrase_source(passphrase_file, PASSPHRASE_ENV, "new CA key passphrase", confirm=True)()
    authority = Authority.init(
        directory,
        name=name,
        organization=organization,
        key_type=spec,
        parent=parent_authority,
        path_length=path_length,
        validity_days=validity_days,
        passphrase=passphrase,
        encrypt=not unsafe_no_encryption,
        crl_days=crl_days,
        maintenance_windows=windows,
        timezone=timezone,
        crl_url=crl_url,
        actor=_actor(),
        force=force,
    )
    info = authority.info()
    _say(f"created CA {name!r} in {directory}")
    _emit(info, fmt, lambda: click.echo(info["generations"][0]["sha256_fingerprint"]))


@ca.command(
    "info",
    help=_help("""Show the CA: generations, rotation phase, inventory counts.

\b
Example:
  plantline-pki ca info --ca ./pki/site1 --format json
"""),
)
@ca_dir_option
@FORMAT_OPTION
def ca_info(ca_dir: Path, fmt: str) -> None:
    info = _authority(ca_dir).info()

    def human() -> None:
        click.echo(f"name:      {info['name']}")
        click.echo(f"rotation:  {info['rotation']}")
        for gen in info["generations"]:
            click.echo(f"gen {gen['generation']}:     {gen['state']:<9} {gen['subject']}  until {gen['not_after']}")
        click.echo("certs:     " + ", ".join(f"{k} {v}" for k, v in info["certificates"].items()))

    _emit(info, fmt, human)


@ca.command(
    "check",
    help=_help("""Check the CA directory for inconsistencies (exit 7 when any).

\b
Example:
  plantline-pki ca check --ca ./pki/site1
"""),
)
@ca_dir_option
@FORMAT_OPTION
def ca_check(ca_dir: Path, fmt: str) -> None:
    problems = _authority(ca_dir).check()
    _emit({"consistent": not problems, "problems": problems}, fmt, _lines(p for p in problems))
    if problems:
        _say(f"{len(problems)} problem(s) found")
        sys.exit(7)
    _say("consistent")


@ca.command(
    "export",
    help=_help("""Write the CA certificate, trust bundle or CRL to stdout or --out.

\b
Formats: pem (active CA), chain (active CA up to the root), bundle (every
trusted CA, both during a rotation), der (active CA, for OPC UA trust
lists), crl (PEM CRLs), crl-der (the active generation's CRL in DER).
\b
Example:
  plantline-pki ca export --ca ./pki/site1 --format bundle --out ca.crt
"""),
)
@ca_dir_option
@click.option(
    "--format",
    "what",
    type=click.Choice(["pem", "chain", "bundle", "der", "crl", "crl-der"]),
    default="pem",
    show_default=True,
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write here instead of stdout.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def ca_export(ca_dir: Path, what: str, out: Path | None, force: bool) -> None:
    authority = _authority(ca_dir)
    gens = authority.generations()
    active = next(g for g in gens if g.state == "active")
    if what == "pem":
        data = active.certificate.public_bytes(serialization.Encoding.PEM)
    elif what == "chain":
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (active.certificate, *active.parents))
    elif what == "bundle":
        data = authority.trust_bundle()
    elif what == "der":
        data = active.certificate.public_bytes(serialization.Encoding.DER)
    elif what == "crl":
        data = authority.crl_pem()
    else:
        pem = next(i.pem for i in authority.crls() if i.generation == active.generation)
        data = x509.load_pem_x509_crl(pem).public_bytes(serialization.Encoding.DER)
    _write_out(data, out, mode=PUBLIC_MODE, force=force)


@ca.command(
    "rotate",
    help=_help("""Rotate the CA key in three phases.

\b
Examples, one per phase:
1. plantline-pki ca rotate             new CA generation signs from now on;
                                       the trust bundle holds old and new.
   Distribute trust-bundle.pem to every peer, then
2. plantline-pki ca rotate --reissue   re-issue every leaf of the old CA.
   Deploy the new leaves, then
3. plantline-pki ca rotate --finalize  drop the old CA from the bundle and
                                       CRL file; its leaves are refused.
An intermediate CA needs --parent DIR in phases 1 and 3 (the parent signs
the new generation and revokes the old one).
"""),
)
@ca_dir_option
@click.option("--reissue", "phase", flag_value="reissue", help="Phase 2: re-issue the previous CA's leaves.")
@click.option("--finalize", "phase", flag_value="finalize", help="Phase 3: stop trusting the previous CA.")
@click.option("--key-type", help="Key type of the new generation (default: same as now).")
@click.option("--new-key", is_flag=True, help="With --reissue: give every leaf a new key.")
@click.option("--parent", type=click.Path(path_type=Path, file_okay=False), help="Parent CA directory (intermediates).")
@click.option("--parent-passphrase-file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="With --finalize: proceed although old-CA leaves remain.")
@PASSPHRASE_OPTION
@FORMAT_OPTION
def ca_rotate(
    ca_dir: Path,
    phase: str | None,
    key_type: str | None,
    new_key: bool,
    parent: Path | None,
    parent_passphrase_file: Path | None,
    force: bool,
    passphrase_file: Path | None,
    fmt: str,
) -> None:
    authority = _authority(ca_dir, passphrase_file)
    parent_authority = _parent_authority(parent, parent_passphrase_file)
    if phase == "reissue":
        issued = authority.rotate_reissue(new_key=new_key)
        _say(f"re-issued {len(issued)} certificate(s) under the new CA")
        _emit([c.to_json(utcnow()) for c in issued], fmt, _lines(_cert_line(c) for c in issued))
        return
    if phase == "finalize":
        retired = authority.rotate_finalize(force=force, parent=parent_authority)
        _say(f"CA generation {retired.generation} retired; its certificates are no longer trusted")
        _emit(retired.to_json(), fmt, lambda: click.echo(retired.to_json()["sha256_fingerprint"]))
        return
    created = authority.rotate_start(key_type=key_type, parent=parent_authority)
    _say(f"CA generation {created.generation} active; distribute trust-bundle.pem, then run --reissue")
    _emit(created.to_json(), fmt, lambda: click.echo(created.to_json()["sha256_fingerprint"]))


@cert.command(
    "issue",
    help=_help("""Issue a certificate for IDENTITY (its CN and MQTT username).

The CA makes and keeps the key (encrypted) unless --csr brings one.
Profiles: mqtt-server, mqtt-client, opcua-application, operator (and any in
the CA's profiles.toml).
\b
Examples:
  plantline-pki cert issue broker --profile mqtt-server --san localhost --san ip:10.0.0.5
  plantline-pki cert issue line1-filler --profile mqtt-client
  plantline-pki cert issue filler-opcua --profile opcua-application \\
      --san uri:urn:acme:site1:filler --san filler.local
"""),
)
@click.argument("identity")
@ca_dir_option
@click.option("--profile", required=True, help="Signing profile.")
@click.option(
    "--san", "sans", multiple=True, help="dns:NAME, ip:ADDRESS or uri:URI (or a bare name or address). Repeatable."
)
@click.option("--key-type", help="Key type (default: the profile's).")
@click.option(
    "--csr",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Sign this request's key instead of making one.",
)
@click.option("--validity-days", type=int, help="Lifetime (default: the profile's).")
@PASSPHRASE_OPTION
@FORMAT_OPTION
def cert_issue(
    identity: str,
    ca_dir: Path,
    profile: str,
    sans: tuple[str, ...],
    key_type: str | None,
    csr: Path | None,
    validity_days: int | None,
    passphrase_file: Path | None,
    fmt: str,
) -> None:
    issued = _authority(ca_dir, passphrase_file).issue(
        identity,
        profile=profile,
        sans=sans,
        key_type=key_type,
        csr_pem=csr.read_bytes() if csr else None,
        validity_days=validity_days,
    )
    _say(f"issued {issued.identity} ({issued.profile}), serial {issued.serial}")
    _print_cert(issued, fmt)


@cert.command(
    "renew",
    help=_help("""Issue IDENTITY a new certificate, superseding the current one.

\b
Examples:
  plantline-pki cert renew line1-filler
  plantline-pki cert renew line1-filler --new-key
"""),
)
@click.argument("identity")
@ca_dir_option
@click.option("--new-key", is_flag=True, help="Make a new key instead of keeping the current one.")
@click.option("--csr", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Use this request's key.")
@click.option("--validity-days", type=int)
@PASSPHRASE_OPTION
@FORMAT_OPTION
def cert_renew(
    identity: str,
    ca_dir: Path,
    new_key: bool,
    csr: Path | None,
    validity_days: int | None,
    passphrase_file: Path | None,
    fmt: str,
) -> None:
    issued = _authority(ca_dir, passphrase_file).renew(
        identity, new_key=new_key, csr_pem=csr.read_bytes() if csr else None, validity_days=validity_days
    )
    _say(f"renewed {issued.identity}: serial {issued.serial} replaces {issued.replaces}")
    _print_cert(issued, fmt)


@cert.command(
    "revoke",
    help=_help("""Revoke a certificate by serial, or every unexpired one of an identity.

The CRL is re-signed at once; reload the broker to enforce it.
Reasons: unspecified, key-compromise, ca-compromise, affiliation-changed,
superseded, cessation-of-operation, privilege-withdrawn.
\b
Examples:
  plantline-pki cert revoke line1-capper --reason key-compromise
  plantline-pki cert revoke 4f1a9c...e2 --reason superseded
"""),
)
@click.argument("target")
@ca_dir_option
@click.option("--reason", default="unspecified", show_default=True)
@PASSPHRASE_OPTION
@FORMAT_OPTION
def cert_revoke(target: str, ca_dir: Path, reason: str, passphrase_file: Path | None, fmt: str) -> None:
    revoked = _authority(ca_dir, passphrase_file).revoke(target, reason=reason)
    _say(f"revoked {len(revoked)} certificate(s); crl.pem is updated")
    _emit([c.to_json(utcnow()) for c in revoked], fmt, _lines(_cert_line(c) for c in revoked))


@cert.command(
    "list",
    help=_help("""List the inventory: serial, identity, profile, status, notAfter.

\b
Examples:
  plantline-pki cert list --status active
  plantline-pki cert list --identity line1-filler --format json
"""),
)
@ca_dir_option
@click.option("--status", type=click.Choice(["active", "superseded", "revoked", "expired"]))
@click.option("--identity")
@FORMAT_OPTION
def cert_list(ca_dir: Path, status: str | None, identity: str | None, fmt: str) -> None:
    certs = _authority(ca_dir).certificates(identity=identity, status=status)
    now = utcnow()
    _emit([c.to_json(now) for c in certs], fmt, _lines(_cert_line(c) for c in certs))


@cert.command(
    "inspect",
    help=_help("""Show one certificate of the inventory, or a certificate file.

\b
Examples:
  plantline-pki cert inspect line1-filler --format json
  plantline-pki cert inspect --file broker.crt
"""),
)
@click.argument("target", required=False)
@click.option("--ca", "ca_dir", type=click.Path(path_type=Path, file_okay=False), envvar=CA_DIR_ENV)
@click.option(
    "--file", "file_", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Inspect a PEM file."
)
@FORMAT_OPTION
def cert_inspect(target: str | None, ca_dir: Path | None, file_: Path | None, fmt: str) -> None:
    if file_ is not None:
        data = describe(file_.read_bytes(), source=str(file_))
    elif target is not None and ca_dir is not None:
        authority = _authority(ca_dir)
        data = describe(authority.certificate_pem(target), source=target)
        data["inventory"] = authority.find(target).to_json(utcnow())
    else:
        raise InvalidInput("target: give IDENTITY or SERIAL with --ca, or --file FILE")

    def human() -> None:
        for key, value in data.items():
            click.echo(f"{key + ':':<22}{json.dumps(value) if isinstance(value, dict | list) else value}")

    _emit(data, fmt, human)


@cert.command(
    "needs-renewal",
    help="""Say whether IDENTITY's certificate (or --cert FILE) needs renewing.

\b
Exit status: 0 renew now (CREATE, RENEW or REPLACE_KEY), 1 fine (NOOP or
POSTPONED to a maintenance window), 2 missing, 3 and up an error.
\b
Examples:
  plantline-pki cert needs-renewal line1-filler --ca ./pki/site1
  plantline-pki cert needs-renewal --cert /etc/plantline/tls/client.crt --renew-before-days 30
  plantline-pki cert needs-renewal broker --window 'sat 02:00-06:00' --format json
""",
)
@click.argument("identity", required=False)
@click.option("--ca", "ca_dir", type=click.Path(path_type=Path, file_okay=False), envvar=CA_DIR_ENV)
@click.option(
    "--cert", "cert_file", type=click.Path(path_type=Path, dir_okay=False), help="Decide for this file instead."
)
@click.option("--renew-before-days", type=int, help="Renewal window (default: the profile's, 30 for --cert).")
@click.option("--window", "windows", multiple=True, help="Maintenance window (default: the CA's). Repeatable.")
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--key-type", help="Wanted key type; another one means REPLACE_KEY.")
@FORMAT_OPTION
def cert_needs_renewal(
    identity: str | None,
    ca_dir: Path | None,
    cert_file: Path | None,
    renew_before_days: int | None,
    windows: tuple[str, ...],
    timezone: str,
    key_type: str | None,
    fmt: str,
) -> None:
    parsed_windows = tuple(parse_window(w, timezone=timezone, field=f"--window[{i}]") for i, w in enumerate(windows))
    wanted = KeySpec.parse(key_type, field="--key-type") if key_type else None
    if renew_before_days is not None and renew_before_days < 1:
        raise InvalidInput("--renew-before-days: expected at least 1")
    if cert_file is not None:
        decision = _decide_for_file(cert_file, renew_before_days, parsed_windows, wanted)
    elif identity is not None and ca_dir is not None:
        authority = _authority(ca_dir)
        policy = None
        if renew_before_days is not None or parsed_windows or wanted is not None:
            default = authority.needs_renewal_policy(identity)
            policy = RenewalPolicy(
                renew_before=timedelta(days=renew_before_days) if renew_before_days else default.renew_before,
                windows=parsed_windows or default.windows,
                key=wanted,
            )
        decision = authority.needs_renewal(identity, policy=policy)
    else:
        raise InvalidInput("identity: give IDENTITY with --ca, or --cert FILE")
    status = MISSING if decision.action is Action.CREATE else RENEW if decision.action.needs_work else FINE
    data = {
        "action": str(decision.action),
        "reason": decision.reason,
        "retry_at": decision.retry_at.isoformat() if decision.retry_at else None,
        "exit_status": status,
    }
    _emit(data, fmt, lambda: click.echo(f"{decision.action}: {decision.reason}"))
    sys.exit(status)


def _decide_for_file(
    path: Path, renew_before_days: int | None, windows: Sequence[Any], wanted: KeySpec | None
) -> Decision:

    policy = RenewalPolicy(renew_before=timedelta(days=renew_before_days or 30), windows=windows, key=wanted)
    if not path.exists():
        return decide(utcnow(), None, policy)
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise InvalidInput(f"--cert: {path} is not a PEM certificate") from None
    facts = CertFacts(not_after=certificate.not_valid_after_utc, key=spec_of(certificate.public_key()))  # type: ignore[arg-type]
    return decide(utcnow(), facts, policy)


@cert.command(
    "export",
    help=_help("""Write IDENTITY's certificate (and key) in a chosen format.

\b
Formats: pem (leaf), chain (leaf + intermediates), fullchain (+ root),
der (leaf, for OPC UA), key (PKCS#8), pkcs12, k8s-secret (kubernetes.io/tls
with ca.crt), bundle (a directory: IDENTITY.crt chain, IDENTITY.key,
ca.crt trust bundle, crl.pem).
A key is written encrypted with --key-passphrase-file (or
$PLANTLINE_PKI_EXPORT_PASSPHRASE); plaintext needs --unsafe-plaintext-key
(brokers and Kubernetes Secrets need one). Key formats never go to stdout;
their files are created 0600.
\b
Examples:
  plantline-pki cert export broker --format bundle --out ./tls --unsafe-plaintext-key
  plantline-pki cert export line1-filler --format pkcs12 --out filler.p12 --key-passphrase-file p12.pass
  plantline-pki cert export line1-filler --format k8s-secret --namespace line1 --out secret.yaml --unsafe-plaintext-key
  plantline-pki cert export filler-opcua --format der > filler.der
"""),
)
@click.argument("target")
@ca_dir_option
@click.option(
    "--format",
    "what",
    type=click.Choice([*(f.value for f in CertFormat), "bundle"]),
    default="chain",
    show_default=True,
)
@click.option("--out", type=click.Path(path_type=Path), help="Output file (a directory for bundle).")
@click.option(
    "--key-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Encrypt the exported key with this passphrase.",
)
@click.option("--unsafe-plaintext-key", is_flag=True, help="Write the private key unencrypted.")
@click.option("--namespace", help="k8s-secret: metadata.namespace.")
@click.option("--secret-name", help="k8s-secret: metadata.name (default IDENTITY-tls).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@PASSPHRASE_OPTION
def cert_export(
    target: str,
    ca_dir: Path,
    what: str,
    out: Path | None,
    key_passphrase_file: Path | None,
    unsafe_plaintext_key: bool,
    namespace: str | None,
    secret_name: str | None,
    force: bool,
    passphrase_file: Path | None,
) -> None:
    authority = _authority(ca_dir, passphrase_file)
    if what == "k8s-secret":
        check_k8s_names(name=secret_name or f"{authority.find(target).identity}-tls", namespace=namespace, labels={})
    holds_key = what == "bundle" or CertFormat(what).holds_key
    key_passphrase: bytes | None = None
    if holds_key:
        if out is None:
            raise InvalidInput(f"--out: format {what} holds a private key and is never written to stdout")
        if what == "pkcs12" or not unsafe_plaintext_key:
            if what == "k8s-secret":
                raise InvalidInput(
                    "--unsafe-plaintext-key: a Kubernetes TLS Secret holds the key unencrypted; pass it to confirm"
                )
            key_passphrase = passphrase_source(
                key_passphrase_file, EXPORT_PASSPHRASE_ENV, "export key passphrase", confirm=True
            )()
        authority.find(target)  # NotFound before anything is written
    if what == "bundle" and out is not None:
        _export_bundle(authority, target, out, key_passphrase, force)
        return
    fmt = CertFormat(what)
    data = authority.export(target, fmt, key_passphrase=key_passphrase, namespace=namespace, secret_name=secret_name)
    _write_out(data, out, mode=SECRET_MODE if fmt.holds_key else PUBLIC_MODE, force=force)


def _export_bundle(authority: Authority, target: str, out: Path, key_passphrase: bytes | None, force: bool) -> None:
    identity = authority.find(target).identity
    files = {
        f"{identity}.crt": (authority.export(target, CertFormat.CHAIN), PUBLIC_MODE),
        f"{identity}.key": (authority.export(target, CertFormat.KEY, key_passphrase=key_passphrase), SECRET_MODE),
        "ca.crt": (authority.trust_bundle(), PUBLIC_MODE),
        "crl.pem": (authority.crl_pem(), PUBLIC_MODE),
    }
    if not force:
        for name in files:
            if (out / name).exists():
                raise Conflict(f"{out / name}: exists; pass --force to overwrite it")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, (data, mode) in files.items():
        atomic_write(out / name, data, mode=mode)
    _say(f"wrote {', '.join(files)} to {out}")


def _write_out(data: bytes, out: Path | None, *, mode: int, force: bool) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    write_new_file(out, data, mode=mode, force=force)
    _say(f"wrote {out}")


@crl.command(
    "generate",
    help=_help("""Sign fresh CRLs for every trusted CA generation and publish crl.pem.

Prints the CRL PEM (or, with --format json, its numbers and dates).
\b
Example:
  plantline-pki crl generate --ca ./pki/site1 --next-update-days 3
"""),
)
@ca_dir_option
@click.option("--next-update-days", type=int, help="Days until nextUpdate (stored as the new default).")
@PASSPHRASE_OPTION
@FORMAT_OPTION
def crl_generate(ca_dir: Path, next_update_days: int | None, passphrase_file: Path | None, fmt: str) -> None:
    infos = _authority(ca_dir, passphrase_file).generate_crl(next_update_days=next_update_days)
    _say(f"published {len(infos)} CRL(s) in {ca_dir / 'crl.pem'}")
    _emit([i.to_json() for i in infos], fmt, lambda: click.echo(b"".join(i.pem for i in infos).decode(), nl=False))


@audit.command(
    "list",
    help=_help("""Print the audit log as JSON lines (who, what, when).

\b
Example:
  plantline-pki audit list --ca ./pki/site1
"""),
)
@ca_dir_option
def audit_list(ca_dir: Path) -> None:
    for record in _authority(ca_dir).audit_log():
        click.echo(json.dumps(record, sort_keys=True))


def _fail(code: str, message: str, status: int) -> NoReturn:
    _say(f"error[{code}]: {message}")
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; errors print `error[CODE]: message` on stderr and exit with their status."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="plantline-pki", standalone_mode=False)
    except PkiError as exc:
        _fail(exc.code, exc.message, exc.exit_status)
    except click.exceptions.Abort:
        _fail("PKI_ABORTED", "aborted", EXIT_USAGE)
    except click.ClickException as exc:
        _fail("PKI_USAGE", exc.format_message(), EXIT_USAGE)
    except KeyboardInterrupt:
        _fail("PKI_ABORTED", "interrupted", EXIT_USAGE)
