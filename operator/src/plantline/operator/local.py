"""The local applier behind `plantline up`: one PlantLine run on this machine as supervised processes.

The state directory (default `.plantline/<site>-<line>`, mode 0700) keeps everything a second `up`
reuses: the CA (`ca/`, its key encrypted with a passphrase from $PLANTLINE_PKI_PASSPHRASE or from
`pki-passphrase`, 0600, generated on first use) and, for a line with secured OPC UA machines, an
RSA issuing CA under it for their application certificates (`ca-opcua/`: Basic256Sha256 needs
RSA signatures, so one root still governs MQTT and OPC UA), the TLS files (`tls/`, keys 0600,
with the OPC UA CAs and CRLs the connectors check servers against), the rendered
files (`broker/mosquitto.conf`, `broker/acl`, `connectors/<group>.yaml`), the connectors' outboxes
and bdSeq (`data/<group>/`), logs (`logs/`) and the running children (`pids.json`).

Every child runs in its own process group and gets SIGTERM should `up` itself die (Linux
PR_SET_PDEATHSIG). SIGINT/SIGTERM stop the connectors first (so they publish NDEATH), then the
simulators, then the broker; each group is SIGKILLed if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import importlib.util
import ipaddress
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from rich.console import Console
from rich.live import Live
from rich.table import Table

from plantline.connectors import metric_names
from plantline.connectors.addressing.endpoints import parse_endpoint
from plantline.connectors.addressing.mqtt import SPARKPLUG_NAMESPACE, broker_url
from plantline.connectors.config import DEFAULT_METRICS_PORT
from plantline.connectors.metric_names import MetricDefinition
from plantline.operator.api import MachineSpec, PlantLine
from plantline.operator.cloud import HEALTH_PORT as BRIDGE_HEALTH_PORT
from plantline.operator.cloud import CloudTarget, render_bridge_config
from plantline.operator.historian import API_PORT
from plantline.operator.local_historian import HistorianPlan, plan_historian, postgres_bin
from plantline.operator.model import CertificateFact
from plantline.operator.monitoring import (
    Monitoring,
    MonitoringUnavailable,
    exporter_environment,
    find_prometheus,
    installed,
    prometheus_argv,
    write_configuration,
)
from plantline.operator.render import (
    CRL,
    OPCUA_CRL,
    OPCUA_TRUST_BUNDLE,
    TRUST_BUNDLE,
    BrokerFiles,
    CertificateRequest,
    certificate_dependants,
    connector_config_data,
    host_identity,
    line_key,
    reader_identity,
    render_acl,
    render_certificate_requests,
    render_connector_configs,
    render_mosquitto_conf,
    render_opcua_server_certificates,
    topology,
)
from plantline.operator.telemetry import PkiMetrics, serve
from plantline.pki.authority import Authority
from plantline.pki.errors import PassphraseError
from plantline.pki.exports import CertFormat
from plantline.pki.keys import KeySpec

PASSPHRASE_ENV = "PLANTLINE_PKI_PASSPHRASE"
PASSPHRASE_FILE = "pki-passphrase"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
BACKOFF_MIN = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long restarts with the shortest delay again
STATUS_INTERVAL_TTY = 2.0
STATUS_INTERVAL_PLAIN = 10.0
SNAPSHOT_INTERVAL = 1.0  # status.json, read by `plantline status`


class UpError(Exception):
    """`plantline up` cannot go on; the message says why and what to do."""


def say(message: str) -> None:
    print(f"plantline up: {message}", file=sys.stderr, flush=True)


# -- the state directory ----------------------------------------------------------------------------


def default_state_dir(line: PlantLine) -> Path:
    return Path(".plantline") / f"{line.spec.site}-{line.spec.line}"


def _write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write a file atomically with `mode` from its first byte (keys are never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca"

    @property
    def ca_opcua(self) -> Path:
        return self.root / "ca-opcua"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def connectors(self) -> Path:
        return self.root / "connectors"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids.json"

    @property
    def passphrase(self) -> Path:
        return self.root / PASSPHRASE_FILE

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def lock(self) -> Path:
        return self.root / "up.lock"

    @property
    def up_log(self) -> Path:
        return self.logs / "up.log"

    @property
    def monitoring(self) -> Path:
        return self.root / "monitoring"


def _passphrase(layout: Layout) -> bytes:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env.encode()
    if layout.passphrase.exists():
        return layout.passphrase.read_bytes().strip()
    if (layout.ca / "pki.db").exists():
        raise UpError(f"{layout.ca}: the CA key is encrypted; set ${PASSPHRASE_ENV} or restore {layout.passphrase}")
    _write(layout.passphrase, secrets.token_urlsafe(32).encode() + b"\n", mode=0o600)
    say(f"generated the CA passphrase into {layout.passphrase} (0600); set ${PASSPHRASE_ENV} to choose your own")
    return layout.passphrase.read_bytes().strip()


def open_authority(line: PlantLine, layout: Layout) -> Authority:
    """Return the state directory's CA, creating it (key encrypted) on first use."""
    return _open_ca(layout, layout.ca, f"PlantLine {line.spec.site}-{line.spec.line} local CA")


def open_opcua_authority(line: PlantLine, layout: Layout, root: Authority) -> Authority:
    """Return the RSA CA under `root` that issues OPC UA application certificates, creating it on first use."""
    name = f"PlantLine {line.spec.site}-{line.spec.line} OPC UA CA"
    return _open_ca(layout, layout.ca_opcua, name, key_type=KeySpec.RSA_2048, parent=root)


def _open_ca(
    layout: Layout, directory: Path, name: str, *, key_type: KeySpec = KeySpec.EC_P256, parent: Authority | None = None
) -> Authority:
    passphrase = _passphrase(layout)
    if (directory / "pki.db").exists():
        return Authority(directory, passphrase=lambda: passphrase, actor="plantline up")
    say(f"creating {name} in {directory}")
    return Authority.init(
        directory,
        name=name,
        key_type=key_type,
        parent=parent,
        passphrase=passphrase,
        encrypt=True,
        actor="plantline up",
    )


def ca_fingerprint(authority: Authority) -> str:
    generations = authority.info()["generations"]
    return str(next(g for g in generations if g["state"] == "active")["sha256_fingerprint"])


def ensure_certificates(
    authority: Authority,
    requests: list[CertificateRequest],
    tls_dir: Path,
    opcua_authority: Authority | None = None,
) -> list[str]:
    """Issue (or renew when due) each requested certificate and write its TLS files; return the problems.

    OPC UA application certificates come from `opcua_authority`. An identity whose latest
    certificate is revoked keeps its old files (its peers refuse it), and that is a problem.
    """
    problems: list[str] = []
    for request in requests:
        issuer = opcua_authority if request.profile == "opcua-application" else authority
        if issuer is None:
            problems.append(f"{request.identity}: no OPC UA CA to issue its certificate")
            continue
        problem = _ensure_certificate(issuer, request, tls_dir)
        if problem is not None:
            problems.append(problem)
    for each in (authority, opcua_authority):
        if each is not None:
            each.generate_crl()  # a fresh CRL: mosquitto refuses every client once the CRL has expired
    _write(tls_dir / TRUST_BUNDLE, authority.trust_bundle())
    _write(tls_dir / CRL, authority.crl_pem())
    if opcua_authority is not None:
        write_opcua_trust(authority, opcua_authority, tls_dir)
    return problems


def _ensure_certificate(authority: Authority, request: CertificateRequest, tls_dir: Path) -> str | None:
    history = authority.certificates(identity=request.identity)
    if history and history[-1].status == "revoked":
        # A revoked identity stays revoked: enrolling it again is the security team's decision.
        return f"{request.identity}: certificate revoked; not issuing a new one (plantline-pki cert issue can)"
    if not authority.certificates(identity=request.identity, status="active"):
        authority.issue(
            request.identity, profile=request.profile, sans=request.sans, validity_days=request.validity_days
        )
    elif authority.needs_renewal(request.identity).action.needs_work:
        authority.renew(request.identity, validity_days=request.validity_days)
    _write(tls_dir / f"{request.identity}.crt", authority.export(request.identity, CertFormat.CHAIN))
    _write(tls_dir / f"{request.identity}.key", authority.export(request.identity, CertFormat.KEY), mode=0o600)
    return None


def write_opcua_trust(root: Authority, opcua_authority: Authority, tls_dir: Path) -> None:
    """Write what the connectors check OPC UA servers against: the OPC UA CA with its root, and both CRLs."""
    _write(tls_dir / OPCUA_TRUST_BUNDLE, opcua_authority.trust_bundle())
    _write(tls_dir / OPCUA_CRL, opcua_authority.crl_pem() + root.crl_pem())


# -- ports and programs -----------------------------------------------------------------------------


def port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_listening(host: str, port: int, alive: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def find_mosquitto() -> str:
    path = installed("mosquitto")
    if path is None:
        raise UpError("mosquitto is not installed (looked in PATH and /usr/sbin); run: sudo apt-get install mosquitto")
    return path


def endpoint_host_port(machine: MachineSpec) -> tuple[str, int]:
    parts = parse_endpoint(machine.protocol, machine.endpoint)
    return parts.host, parts.port


def _sim_machine_name(machine: MachineSpec) -> str:
    """The simulator's machine name, as the tag addresses use it (`ns=2;s=Filler.x`, `Labeler_x`)."""
    first = machine.tags[0].address
    if machine.protocol == "opcua" and ";s=" in first and "." in first:
        return first.split(";s=", 1)[1].split(".", 1)[0]
    if machine.protocol == "cip" and "_" in first:
        return first.split("_", 1)[0]
    return machine.id.capitalize()


def simulator_argv(machine: MachineSpec, seed: int, *, tls_dir: Path | None = None) -> list[str]:
    """Return the command line of a machine's simulator; a secured OPC UA one uses its files in `tls_dir`."""
    host, port = endpoint_host_port(machine)
    argv = [sys.executable, "-m", f"plantline.connectors.sim.{machine.protocol}_server"]
    argv += ["--host", host, "--port", str(port), "--seed", str(seed), "--machine", _sim_machine_name(machine)]
    if tls_dir is not None and machine.opcua is not None and machine.opcua.secured:
        identity = simulator_identity(machine)
        argv += ["--security", "--certificate", str(tls_dir / f"{identity}.crt")]
        argv += ["--private-key", str(tls_dir / f"{identity}.key"), "--trust-dir", str(tls_dir / SIM_TRUST_DIR)]
    if machine.ideal_cycle_time is not None:
        argv += ["--ideal-cycle", str(machine.ideal_cycle_time)]
    if machine.protocol == "s7":
        db = machine.tags[0].address.upper().removeprefix("DB").split(".", 1)[0]
        if db.isdigit():
            argv += ["--db", db]
    return argv


SIM_TRUST_DIR = "simulator-trust"  # in the TLS directory: the CAs a secured simulator trusts clients by


def simulator_identity(machine: MachineSpec) -> str:
    return f"{machine.id}-simulator"


def ensure_simulator_certificates(opcua_authority: Authority, machines: list[MachineSpec], tls_dir: Path) -> None:
    """Issue each secured OPC UA simulator a server certificate from the line's OPC UA CA, and its trust list.

    The simulator then is what a PLC of the line would be: its certificate from the line's OPC UA
    CA for the endpoint's host, and the line's OPC UA CA (and the root above it) as its trust list.
    """
    for machine in machines:
        host, _ = endpoint_host_port(machine)
        uri = f"uri:urn:plantline:sim:{_sim_machine_name(machine)}"
        request = CertificateRequest(simulator_identity(machine), "opcua-application", (uri, _host_san(host)))
        problem = _ensure_certificate(opcua_authority, request, tls_dir)
        if problem is not None:
            raise UpError(problem)
    _write(tls_dir / SIM_TRUST_DIR / "line-opcua-ca.pem", opcua_authority.trust_bundle())


def _host_san(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"dns:{host}"
    return f"ip:{host}"


# -- supervision ------------------------------------------------------------------------------------


def _deathsig() -> Callable[[], None] | None:
    """Return a preexec_fn asking Linux to SIGTERM the child when `up` dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


@dataclass
class Child:
    """One supervised program in its own process group."""

    name: str
    kind: str  # connector | simulator | broker | monitoring
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None  # added to this process's environment
    listen: tuple[str, int] | None = None
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float | None = None
    last_exit: int | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if self.env is None else {**os.environ, **self.env},
            preexec_fn=_deathsig(),  # noqa: PLW1509 - prctl only; `up` starts children from one thread
        )
        self.started_at = time.monotonic()
        self.next_start = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> str:
        if self.alive():
            return "running"
        if self.next_start is not None:
            return f"exited {self.last_exit}, restart in {max(0.0, self.next_start - time.monotonic()):.0f}s"
        return "stopped" if self.proc is not None else "not started"

    def supervise(self, now: float) -> None:
        """Restart a dead child with capped exponential backoff."""
        if self.proc is None or self.alive():
            return
        if self.next_start is None:
            self.last_exit = self.proc.returncode
            _kill_group(self.proc.pid, signal.SIGKILL)  # whatever it left in its group
            if now - self.started_at >= STABLE_AFTER:
                self.restarts = 0
            delay = min(BACKOFF_MAX, BACKOFF_MIN * 2**self.restarts)
            self.restarts += 1
            self.next_start = now + delay
            say(f"{self.name} exited with {self.last_exit}; restarting in {delay:.0f}s (log: {self.log_path})")
        elif now >= self.next_start:
            self.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of it."""
        self.next_start = None
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop in {timeout:.0f}s; killing it")
        _kill_group(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- metrics ----------------------------------------------------------------------------------------


Scrape = dict[str, list[Sample]]  # a connector's /metrics: the samples of each metric family


def scrape(port: int) -> Scrape:
    """Return the samples of a connector's /metrics by family, empty when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=0.5) as response:
            text = response.read().decode()
        return {family.name: family.samples for family in text_string_to_metric_families(text)}
    except (OSError, ValueError):
        return {}


def _values(scraped: Scrape, metric: MetricDefinition, **labels: str) -> list[float]:
    """Return the values of `metric`'s samples carrying `labels`."""
    return [
        s.value
        for s in scraped.get(metric.family, ())
        if s.name == metric.name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def _value(scraped: Scrape, metric: MetricDefinition, **labels: str) -> float | None:
    found = _values(scraped, metric, **labels)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class MachineMetrics:
    """What a connector's /metrics says about one of its machines; None where it says nothing."""

    plc_connected: bool | None
    plc_refused: tuple[str, str] | None  # (who refused: device | connector, the protocol's code)
    mqtt: str | None  # the connector's MQTT session: connected, refused or down
    last_sample_at: float | None  # Unix time
    samples_total: float | None
    outbox_samples: int | None  # the connector's, shared by its machines
    oee: float | None  # over the rolling window
    # Samples the connector's outbox set aside unpublished (damaged, or no longer fitting the
    # configuration), since the connector started; the connector's, shared by its machines.
    outbox_set_aside: int | None = None

    @classmethod
    def of(cls, scraped: Scrape, machine_id: str) -> MachineMetrics:
        connected = _value(scraped, metric_names.SOURCE_CONNECTED, device=machine_id)
        outbox = _values(scraped, metric_names.OUTBOX_SAMPLES)
        set_aside = _values(scraped, metric_names.OUTBOX_QUARANTINED)
        return cls(
            plc_connected=None if connected is None else connected >= 1,
            plc_refused=_refusal(scraped, machine_id),
            mqtt=_mqtt_state(scraped) if scraped else None,
            last_sample_at=_value(scraped, metric_names.SOURCE_LAST_SAMPLE, device=machine_id),
            samples_total=_value(scraped, metric_names.SAMPLES, device=machine_id),
            outbox_samples=int(sum(outbox)) if outbox else None,
            oee=_value(scraped, metric_names.KPI_OEE, device=machine_id, scope="window"),
            outbox_set_aside=int(sum(set_aside)) if outbox else None,
        )


def _refusal(scraped: Scrape, machine_id: str) -> tuple[str, str] | None:
    metric = metric_names.SOURCE_REFUSED
    for sample in scraped.get(metric.family, ()):
        if sample.labels.get("device") == machine_id and sample.value >= 1:
            return sample.labels.get("by", ""), sample.labels.get("code", "")
    return None


def refusal_problem(machine_id: str, refused: tuple[str, str], log: Path) -> str:
    """Return what a machine's refusal means for the OT engineer, and where its details are."""
    by, code = refused
    if by == "device":
        what = (
            "the PLC refused the connector's certificate; put the line's OPC UA CA and its CRL in the PLC's trust list"
        )
    else:
        what = "the connector refuses the PLC (its certificate, the trust files or the security settings)"
    return f"{machine_id}: {what} ({code}); the connector's log says why: {log}"


def _plc(metrics: MachineMetrics) -> str | None:
    if metrics.plc_refused is not None:
        return "refused"
    if metrics.plc_connected is None:
        return None
    return "yes" if metrics.plc_connected else "no"


def _mqtt_state(scraped: Scrape) -> str:
    if any(v >= 1 for v in _values(scraped, metric_names.MQTT_CONNECTED)):
        return "connected"
    if any(v >= 1 for v in _values(scraped, metric_names.MQTT_REFUSED)):
        return "refused"
    return "down"


# -- the applier ------------------------------------------------------------------------------------


@dataclass
class LocalLine:
    line: PlantLine
    layout: Layout
    simulate: bool
    metrics_base_port: int
    api_port: int = API_PORT
    broker: Child | None = None
    database: Child | None = None  # PostgreSQL, for the historian
    hosts: list[Child] = field(default_factory=list)  # the historian and its KPI API
    historian: HistorianPlan | None = None
    simulators: list[Child] = field(default_factory=list)
    connectors: list[Child] = field(default_factory=list)
    machine_group: dict[str, str] = field(default_factory=dict)
    sample_totals: dict[str, tuple[float, float]] = field(default_factory=dict)
    revoked_at_broker_start: set[str] = field(default_factory=set)
    reload: dict[str, Any] = field(default_factory=lambda: {"count": 0})  # the last reload's outcome
    monitoring: Monitoring | None = None
    monitors: list[Child] = field(default_factory=list)  # Prometheus and the broker exporter
    certificate_facts: PkiMetrics | None = None
    cloud: CloudTarget | None = None  # `--cloud`: the bridge to Kafka runs among the hosts
    bridge_port: int = BRIDGE_HEALTH_PORT
    problems: list[str] = field(default_factory=list)  # found while preparing: they stop a machine for good
    told: set[str] = field(default_factory=set)  # the machines' problems already said on the terminal

    def children(self) -> list[Child]:
        database = [self.database] if self.database else []
        broker = [self.broker] if self.broker else []
        return [*broker, *database, *self.hosts, *self.simulators, *self.connectors, *self.monitors]

    def prepare(self) -> None:
        """Create the state directory, the CA and TLS files, and render every file."""
        spec = self.line.spec
        self.layout.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.layout.root, 0o700)
        authority = open_authority(self.line, self.layout)
        secured = any(m.opcua is not None and m.opcua.secured for m in spec.machines)
        opcua = open_opcua_authority(self.line, self.layout, authority) if secured else None
        with_historian = postgres_bin() is not None
        # the historian and the cloud bridge are Sparkplug hosts: both use the host identity
        with_host = with_historian or self.cloud is not None
        requests = render_certificate_requests(self.line, historian=with_host)
        self.problems = ensure_certificates(authority, requests, self.layout.tls, opcua)
        for name, pem in render_opcua_server_certificates(self.line).items():
            _write(self.layout.tls / name, pem.encode())
        if self.simulate and opcua is not None:
            secured_machines = [m for m in spec.machines if m.opcua is not None and m.opcua.secured]
            ensure_simulator_certificates(opcua, secured_machines, self.layout.tls)
        self.revoked_at_broker_start = {c.serial for c in authority.certificates(status="revoked")}
        for problem in self.problems:
            say(f"problem: {problem}")
        say(f"CA {ca_fingerprint(authority)} in {self.layout.ca}")
        files = BrokerFiles.under(spec, tls_dir=self.layout.tls.resolve(), broker_dir=self.layout.broker.resolve())
        files.persistence_dir.mkdir(parents=True, exist_ok=True)
        run_as = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
        conf = render_mosquitto_conf(self.line, files=files, run_as=run_as)
        _write(self.layout.broker / "mosquitto.conf", conf.encode())
        _write(files.acl_file, render_acl(self.line, historian=with_host).encode())
        self._prepare_historian()
        self._prepare_bridge()
        configs = render_connector_configs(
            self.line,
            tls_dir=self.layout.tls.resolve(),
            data_dir=self.layout.data.resolve(),
            metrics_base_port=self.metrics_base_port,
        )
        logs = self.layout.logs
        self.broker = Child(
            "broker",
            "broker",
            [find_mosquitto(), "-c", str((self.layout.broker / "mosquitto.conf").resolve())],
            logs / "mosquitto.log",
            listen=(spec.broker.host, spec.broker.port),
        )
        if self.simulate:
            for index, machine in enumerate(spec.machines):
                self.simulators.append(
                    Child(
                        f"sim/{machine.id}",
                        "simulator",
                        simulator_argv(machine, seed=index + 1, tls_dir=self.layout.tls.resolve()),
                        logs / f"sim-{machine.id}.log",
                        listen=endpoint_host_port(machine),
                    )
                )
        for connector in topology(spec):
            config = configs[connector.group]
            path = self.layout.connectors / f"{connector.group}.yaml"
            _write(path, yaml.safe_dump(connector_config_data(config), sort_keys=False).encode())
            argv = [sys.executable, "-m", "plantline.connectors.cli", "run", "--config", str(path.resolve())]
            self.connectors.append(
                Child(
                    f"connector/{connector.group}",
                    "connector",
                    argv,
                    logs / f"connector-{connector.group}.log",
                    metrics_port=config.metrics_port,
                )
            )
            for machine in connector.machines:
                self.machine_group[machine.id] = connector.group
        if self.monitoring is not None:
            self._prepare_monitoring(self.monitoring, authority)

    def _prepare_monitoring(self, monitoring: Monitoring, authority: Authority) -> None:
        """Write Prometheus's configuration and the line's rules; make Prometheus and the exporter children."""
        try:
            prometheus = find_prometheus()
        except MonitoringUnavailable as exc:
            raise UpError(str(exc)) from None
        ports = {c.name.split("/", 1)[1]: c.metrics_port for c in self.connectors if c.metrics_port}
        historian = self.historian
        api = None if historian is None else (historian.api_port, historian.files.token)
        bridge = None if self.cloud is None else self.bridge_port
        config = write_configuration(self.line, self.layout.monitoring, monitoring, ports, api=api, cloud_bridge=bridge)
        argv = prometheus_argv(prometheus, config, self.layout.monitoring / "data", monitoring)
        self.monitors.append(
            Child("prometheus", "monitoring", argv, self.layout.logs / "prometheus.log",
                  listen=("127.0.0.1", monitoring.prometheus_port))
        )  # fmt: skip
        if monitoring.exporter is None:
            say("no broker exporter (pipx install 'mqtt-exporter==1.12.1'): the broker's metrics stay empty")
        else:
            env = exporter_environment(self.line, self.layout.tls.resolve(), monitoring)
            self.monitors.append(
                Child("broker-exporter", "monitoring", [monitoring.exporter], self.layout.logs / "broker-exporter.log",
                      listen=("127.0.0.1", monitoring.exporter_port), env=env)
            )  # fmt: skip
        self.certificate_facts = PkiMetrics.create()
        self._refresh_certificate_facts(authority)

    def _refresh_certificate_facts(self, authority: Authority) -> None:
        if self.certificate_facts is None:
            return
        dependants = certificate_dependants(self.line)
        facts = {
            c.identity: CertificateFact(c.not_after, *dependants.get(c.identity, ("other", ())))
            for c in authority.certificates(status="active")
        }
        key = line_key(self.line)
        self.certificate_facts.set_certificates(key, facts)
        self.certificate_facts.set_crl(key, authority.crl_pem())

    def _prepare_historian(self) -> None:
        try:
            plan = plan_historian(
                self.line, self.layout.root, tls_dir=self.layout.tls.resolve(), api_port=self.api_port
            )
        except (subprocess.CalledProcessError, OSError) as exc:
            # e.g. no user namespaces for a root `up`: the line itself does not need the historian
            stderr = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else None
            detail = stderr.decode(errors="replace").strip() if stderr else str(exc)
            say(f"PostgreSQL could not be initialised ({detail}): running without the historian")
            return
        if plan is None:
            say("PostgreSQL is not installed: running without the historian (apt-get install postgresql)")
            return
        self.historian, logs = plan, self.layout.logs
        self.database = Child("postgres", "database", plan.database_argv, logs / "postgres.log")
        self.hosts = [
            Child("historian", "historian", plan.historian_argv, logs / "historian.log"),
            Child("api", "api", plan.api_argv, logs / "api.log", listen=("127.0.0.1", plan.api_port)),
        ]

    def _prepare_bridge(self) -> None:
        """Write the cloud bridge's configuration and make it a host child (with `--cloud`)."""
        if self.cloud is None:
            return
        if importlib.util.find_spec("plantline.bridge") is None:
            raise UpError("--cloud needs the cloud bridge: pip install 'plantline-operator[cloud]'")
        directory = self.layout.root / "bridge"
        status = (directory / "status.json").resolve()
        config = render_bridge_config(
            self.line, self.cloud, tls_dir=self.layout.tls.resolve(), status_file=status, health_port=self.bridge_port
        )
        path = directory / "bridge.yaml"
        _write(path, yaml.safe_dump(config, sort_keys=False).encode())
        argv = [sys.executable, "-m", "plantline.bridge", "run", "--config", str(path.resolve())]
        self.hosts.append(Child("bridge", "bridge", argv, self.layout.logs / "bridge.log",
                                listen=("127.0.0.1", self.bridge_port)))  # fmt: skip

    def bridge_status(self) -> dict[str, Any] | None:
        """Return the cloud bridge's own status (records, dead letters, lag), None without one."""
        if self.cloud is None:
            return None
        try:
            data: dict[str, Any] = json.loads((self.layout.root / "bridge" / "status.json").read_text())
        except (OSError, ValueError):
            return {"kafka": self.cloud.endpoint, "mqtt": "starting"}
        return {**data, "age_s": round(time.time() - float(data.get("updated", 0)), 1)}

    def check_ports(self) -> None:
        taken = [
            f"{c.name} port {c.listen[0]}:{c.listen[1]}"
            for c in [*([self.broker] if self.broker else []), *self.hosts, *self.simulators]
            if c.listen and port_taken(*c.listen)
        ]
        taken += [
            f"{c.name} metrics port 127.0.0.1:{c.metrics_port}"
            for c in self.connectors
            if c.metrics_port and port_taken("127.0.0.1", c.metrics_port)
        ]
        if self.monitoring is not None:
            taken += [
                f"{name} port 127.0.0.1:{port}"
                for name, port in self.monitoring.ports().items()
                if port_taken("127.0.0.1", port)
            ]
        if taken:
            raise UpError(
                "ports already in use: "
                + "; ".join(taken)
                + " (stop what holds them, change spec.broker.port / the endpoints, or pass --metrics-base-port)"
            )

    def start(self) -> None:
        """Start the broker, then the simulators and connectors; raise UpError if one fails to start."""
        self.start_broker()
        self._start_database()
        # Simulators and connectors start together: each takes seconds to import, and a connector
        # retries a PLC that does not answer yet with its short backoff.
        for child in [*self.hosts, *self.simulators, *self.connectors]:
            child.start()
        for child in self.simulators:
            self._wait_listening(child)
        if self.monitoring is not None and self.certificate_facts is not None:
            serve(self.certificate_facts.registry, "127.0.0.1", self.monitoring.pki_port)
            for child in self.monitors:
                self._start_listening(child)
        self.write_pids()

    def _start_database(self) -> None:
        if self.database is None or self.historian is None:
            return
        self.database.start()
        if not self.historian.wait_ready(self.database.alive):
            raise UpError(f"PostgreSQL did not start:\n{self.database.log_tail()}")
        try:
            self.historian.create_database()
        except RuntimeError as exc:
            raise UpError(str(exc)) from None
        self.write_pids()

    def start_broker(self) -> None:
        assert self.broker is not None  # noqa: S101 - prepare() ran
        self._start_listening(self.broker)

    def _start_listening(self, child: Child) -> None:
        child.start()
        self._wait_listening(child)

    def _wait_listening(self, child: Child) -> None:
        assert child.listen is not None  # noqa: S101 - brokers and simulators listen
        if not wait_listening(*child.listen, alive=child.alive, timeout=START_TIMEOUT):
            raise UpError(f"{child.name} did not listen on {child.listen[0]}:{child.listen[1]}:\n{child.log_tail()}")
        self.write_pids()

    def write_pids(self) -> None:
        data = {c.name: c.proc.pid for c in self.children() if c.proc is not None and c.alive()}
        _write(self.layout.pids, (json.dumps({"up": os.getpid(), "children": data}, indent=2) + "\n").encode())

    def stop(self) -> None:
        """Stop monitoring, connectors (SIGTERM: NDEATH), historian and API, simulators, broker, database."""
        database = [self.database] if self.database else []
        broker = [self.broker] if self.broker else []
        for group in (self.monitors, self.connectors, self.hosts, self.simulators, broker, database):
            threads = [threading.Thread(target=c.stop) for c in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.layout.pids.unlink()

    def snapshot(self) -> dict[str, Any]:
        """Return the line's state as `plantline status --format json` prints it (also status.json)."""
        now = time.time()
        scraped = {c.name: scrape(c.metrics_port) for c in self.connectors if c.metrics_port and c.alive()}
        machines = [self._machine_row(machine, scraped, now) for machine in self.line.spec.machines]
        problems = [*self.problems, *self._refusals(machines)]
        spec = self.line.spec
        return {
            "line": f"{spec.site}/{spec.area}/{spec.line}",
            "state_dir": str(self.layout.root.resolve()),
            "updated": now,
            "up_pid": os.getpid(),
            "broker": {
                "url": broker_url(spec.broker.host, spec.broker.port),
                "state": self.broker.state() if self.broker else "not started",
                "restarts": self.broker.restarts if self.broker else 0,
            },
            "machines": machines,
            "historian": self.historian.status() if self.historian else None,
            "bridge": self.bridge_status(),
            "problems": problems,
            "reload": self.reload,
            "children": [
                {"name": c.name, "kind": c.kind, "pid": c.proc.pid if c.proc else None, "state": c.state()}
                for c in self.children()
            ],
        }

    def _machine_row(self, machine: MachineSpec, scraped: dict[str, Scrape], now: float) -> dict[str, Any]:
        group = self.machine_group[machine.id]
        child = next(c for c in self.connectors if c.name == f"connector/{group}")
        metrics = MachineMetrics.of(scraped.get(child.name, {}), machine.id)
        last = metrics.last_sample_at
        refused = metrics.plc_refused
        return {
            "machine": machine.id,
            "protocol": machine.protocol,
            "connector": group,
            "connector_state": child.state(),
            "plc": _plc(metrics),
            "plc_connected": metrics.plc_connected,
            "plc_refused": None if refused is None else {"by": refused[0], "code": refused[1]},
            "mqtt": metrics.mqtt,
            "last_value_age_s": None if not last else round(max(0.0, now - last), 1),
            "samples_per_s": self._rate(machine.id, metrics.samples_total, now),
            "outbox_samples": metrics.outbox_samples,
            "outbox_set_aside": metrics.outbox_set_aside,
            "oee": metrics.oee,
        }

    def _refusals(self, machines: list[dict[str, Any]]) -> list[str]:
        """Return the machines' refusals as problems; say each on the terminal when it first appears."""
        found = []
        for row in machines:
            refused = row["plc_refused"]
            if refused is not None:
                log = next(c.log_path for c in self.connectors if c.name == f"connector/{row['connector']}")
                found.append(refusal_problem(row["machine"], (refused["by"], refused["code"]), log))
        for problem in found:
            if problem not in self.told:
                say(f"problem: {problem}")
        self.told = set(found)
        return found

    def _rate(self, machine_id: str, total: float | None, now: float) -> float | None:
        if total is None:
            return None
        before = self.sample_totals.get(machine_id)
        self.sample_totals[machine_id] = (now, total)
        if before is None or now <= before[0] or total < before[1]:
            return None
        return round((total - before[1]) / (now - before[0]), 1)

    def reload_trust(self) -> str:
        """Publish the CA's current CRL and trust bundle to the broker, and make it enforce them.

        Mosquitto re-reads `cafile` and `crlfile` on SIGHUP (proven in the pki tests), but checks the
        CRL only during a TLS handshake: a session opened before the revocation would live on. So
        when the CRL names a certificate the broker has not seen revoked, the broker is restarted and
        every client must handshake again (the connectors' outboxes keep their samples meanwhile);
        otherwise a SIGHUP is enough. The OPC UA CAs and CRLs the connectors check servers against
        are rewritten too; a connector reads them at its next connection attempt.
        """
        authority = open_authority(self.line, self.layout)
        _write(self.layout.tls / TRUST_BUNDLE, authority.trust_bundle())
        _write(self.layout.tls / CRL, authority.crl_pem())
        if (self.layout.ca_opcua / "pki.db").exists():  # the connectors read it at their next attempt
            write_opcua_trust(authority, open_opcua_authority(self.line, self.layout, authority), self.layout.tls)
        revoked = {c.serial for c in authority.certificates(status="revoked")}
        self._refresh_certificate_facts(authority)
        newly = revoked - self.revoked_at_broker_start
        broker = self.broker
        if broker is None or broker.proc is None or not broker.alive():
            message = "reloaded the CRL and trust bundle; the broker reads them when it starts"
        elif newly:
            say(f"{len(newly)} newly revoked certificate(s): restarting the broker so no open session outlives them")
            broker.stop()
            self.start_broker()
            message = f"reloaded the CRL and trust bundle; the broker restarted for {len(newly)} newly revoked"
        else:
            os.kill(broker.proc.pid, signal.SIGHUP)
            message = "reloaded the CRL and trust bundle (broker SIGHUP)"
        self.revoked_at_broker_start = revoked
        say(message)
        return message


def _cell(value: Any, fmt: str = "{}") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def status_rows(snapshot: dict[str, Any]) -> list[list[str]]:
    """Return the status table's rows (without the header) from a snapshot."""
    return [
        [
            m["machine"],
            m["protocol"],
            m["connector_state"],
            _cell(m.get("plc", m["plc_connected"])),
            _cell(m["mqtt"]),
            _cell(m["last_value_age_s"], "{:.1f}s"),
            _cell(m["samples_per_s"], "{:.1f}"),
            _outbox_cell(m),
            _cell(m["oee"], "{:.3f}"),
        ]
        for m in snapshot["machines"]
    ]


def _outbox_cell(machine: dict[str, Any]) -> str:
    """Return the outbox depth, and what it set aside when it set anything aside."""
    depth = _cell(machine["outbox_samples"])
    set_aside = machine.get("outbox_set_aside")  # absent from a status.json of an older up
    return f"{depth} ({set_aside} set aside)" if set_aside else depth


def status_title(snapshot: dict[str, Any]) -> str:
    broker = snapshot["broker"]
    return f"{snapshot['line']}  broker {broker['url']}: {broker['state']}"


def format_status(snapshot: dict[str, Any]) -> str:
    """Return the status table as plain text, then the problems that stop a machine for good."""
    rows = status_rows(snapshot)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = [status_title(snapshot)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [HEADERS, *rows]]
    historian = snapshot.get("historian")
    if historian:
        lines.append(historian_line(historian))
    bridge = snapshot.get("bridge")
    if bridge:
        lines.append(bridge_line(bridge))
    lines += [f"problem: {problem}" for problem in snapshot.get("problems", ())]
    return "\n".join(lines) + "\n"


def historian_line(status: dict[str, Any]) -> str:
    """Return the status line of the historian: MQTT, lag, samples stored, its KPI API."""
    return (
        f"historian: mqtt {status.get('mqtt', '-')}, lag {_cell(status.get('lag_s'), '{:.1f}s')},"
        f" {status.get('samples_inserted', 0)} samples stored, rollups {status.get('refresh_lag_batches', 0)}"
        f" batches behind; KPI API {status.get('api', '-')}"
    )


def bridge_line(status: dict[str, Any]) -> str:
    """Return the status line of the cloud bridge: MQTT, Kafka, records produced, dead letters, lag."""
    kafka = "up" if status.get("kafka_up") else "down"
    line = (
        f"bridge: mqtt {status.get('mqtt', '-')}, kafka {status.get('kafka', '-')} {kafka},"
        f" {status.get('records', 0)} records, {status.get('dead_letters', 0)} dead letters,"
        f" lag {_cell(status.get('lag_s'), '{:.1f}s')}"
    )
    return line if not status.get("fatal") else f"{line}; stopped: {status['fatal']}"


HEADERS = ["machine", "protocol", "connector", "plc", "mqtt", "last value", "samples/s", "outbox", "oee"]


class StatusView:
    """The status table on stderr: a live rich table on a terminal, plain text every 10 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.interval = STATUS_INTERVAL_TTY if self.tty else STATUS_INTERVAL_PLAIN
        self.next_at = time.monotonic()
        self._live: Live | None = None
        if self.tty:
            self._live = Live(console=Console(stderr=True), auto_refresh=False, transient=True)

    def __enter__(self) -> StatusView:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live is not None:
            self._live.stop()

    def show(self, snapshot: dict[str, Any]) -> None:
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.interval
        if self._live is None:
            print(format_status(snapshot), file=sys.stderr, flush=True)
            return
        table = Table(title=status_title(snapshot))
        for header in HEADERS:
            table.add_column(header)
        for row in status_rows(snapshot):
            table.add_row(*row)
        self._live.update(table, refresh=True)


@contextlib.contextmanager
def _state_lock(layout: Layout) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    with layout.lock.open("a") as lock:
        # `plantline status` probes this lock for an instant (running_pid): retry briefly so a
        # probe never makes a starting `up` fail.
        deadline = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UpError(f"{layout.root}: another `plantline up` is running on this state directory") from None
                time.sleep(0.05)
        yield


def run_up(
    line: PlantLine,
    *,
    state_dir: Path | None,
    simulate: bool,
    metrics_base_port: int = DEFAULT_METRICS_PORT,
    api_port: int = API_PORT,
    monitoring: Monitoring | None = None,
    cloud: CloudTarget | None = None,
    bridge_port: int = BRIDGE_HEALTH_PORT,
) -> int:
    """Prepare, start and supervise the line until SIGINT/SIGTERM; return the exit status.

    SIGHUP (`plantline reload`) republishes the CA's CRL and trust bundle and reloads the broker.
    """
    if line.spec.broker.kind != "mosquitto":
        say(f"error: spec.broker.kind is {line.spec.broker.kind!r}; `plantline up` runs a mosquitto broker only")
        return 1
    layout = Layout(state_dir if state_dir is not None else default_state_dir(line))
    stop = threading.Event()
    reload = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        (reload if signum == signal.SIGHUP else stop).set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    app = LocalLine(line, layout, simulate, metrics_base_port, api_port, monitoring=monitoring, cloud=cloud,
                    bridge_port=bridge_port)  # fmt: skip
    try:
        with _state_lock(layout):
            app.prepare()
            app.check_ports()
            try:
                if stop.is_set():
                    return 0
                app.start()
                announce(line, layout, monitoring, api_port=api_port)
                say(
                    f"running {len(app.connectors)} connector(s), {len(app.simulators)} simulator(s); "
                    "Ctrl-C stops everything"
                )
                _supervise(app, stop, reload)
            finally:
                say("stopping: connectors, then simulators, then the broker")
                app.stop()
                with contextlib.suppress(FileNotFoundError):
                    layout.status.unlink()
                say("stopped")
    except (UpError, PassphraseError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _supervise(app: LocalLine, stop: threading.Event, reload: threading.Event) -> None:
    snapshot_at = 0.0
    with StatusView() as view:
        while not stop.is_set():
            now = time.monotonic()
            for child in app.children():
                child.supervise(now)
            app.write_pids()
            if reload.is_set():
                reload.clear()
                try:
                    outcome = {"ok": True, "message": app.reload_trust()}
                except (PassphraseError, UpError, OSError) as exc:
                    say(f"reload failed: {exc}")
                    outcome = {"ok": False, "message": f"reload failed: {exc}"}
                app.reload = {"count": app.reload["count"] + 1, "at": time.time(), **outcome}
                snapshot_at = 0.0  # `plantline reload` waits for this outcome in status.json
            if now >= snapshot_at:
                snapshot_at = now + SNAPSHOT_INTERVAL
                snapshot = app.snapshot()
                _write(app.layout.status, (json.dumps(snapshot, indent=2) + "\n").encode())
                view.show(snapshot)
            stop.wait(0.25)


def announce(
    line: PlantLine, layout: Layout, monitoring: Monitoring | None = None, *, api_port: int = API_PORT
) -> None:
    """Print (stdout) where the broker is, the reader and host identities, the historian's KPI API, and Prometheus."""
    spec = line.spec
    tls = layout.tls.resolve()
    reader = reader_identity(spec)
    topics = f"{SPARKPLUG_NAMESPACE}/{spec.sparkplug_group}/#"
    print(f"broker: {broker_url(spec.broker.host, spec.broker.port)}", flush=True)
    print(f"reader certificate: {tls / f'{reader}.crt'}", flush=True)
    print(f"reader key: {tls / f'{reader}.key'}", flush=True)
    print(f"ca: {tls / TRUST_BUNDLE}", flush=True)
    print(
        f"subscribe: mosquitto_sub {_client_args(line, tls, reader)} -t '{topics}' -v",
        flush=True,
    )
    if spec.primary_host_id is not None:
        _announce_host(line, tls, spec.primary_host_id)
    if postgres_bin() is not None:
        print(f"api: http://127.0.0.1:{api_port}", flush=True)
        print(f"api token: {(layout.root / 'historian' / 'api-token').resolve()}", flush=True)
    if monitoring is not None:
        print(f"prometheus: {monitoring.url}", flush=True)
        print(f"rules: {(layout.monitoring / 'rules.yml').resolve()}", flush=True)


def _client_args(line: PlantLine, tls: Path, identity: str) -> str:
    broker = line.spec.broker
    key = tls / f"{identity}.key"
    return (
        f"-h {broker.host} -p {broker.port} --cafile {tls / TRUST_BUNDLE} --cert {tls / f'{identity}.crt'} --key {key}"
    )


def _announce_host(line: PlantLine, tls: Path, host_id: str) -> None:
    """Print how to be the line's primary host: its identity, the STATE payload, a ready command."""
    host = host_identity(line.spec)
    topic = f"spBv1.0/STATE/{host_id}"
    print(f"primary host {host_id}: the edge nodes publish births once {topic} says online", flush=True)
    print(f"host certificate: {tls / f'{host}.crt'}", flush=True)
    print(f"host key: {tls / f'{host}.key'}", flush=True)
    print(
        f'STATE payload (Sparkplug 3.0): JSON {{"online": true|false, "timestamp": <ms since the epoch>}}, '
        f"QoS 1, retained, on {topic}; set the offline one as the host's MQTT Will",
        flush=True,
    )
    for state in ("online", "offline"):
        payload = f'"{{\\"online\\":{str(state == "online").lower()},\\"timestamp\\":$(date +%s%3N)}}"'
        print(
            f"host {state}: mosquitto_pub {_client_args(line, tls, host)} -q 1 -r -t {topic} -m {payload}",
            flush=True,
        )


# -- a line in the background: --detach, status, reload, down ---------------------------------------


def running_pid(layout: Layout) -> int | None:
    """Return the pid of the `up` holding this state directory, None when none runs."""
    if not layout.lock.exists():
        return None
    with layout.lock.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return None  # nobody holds it: no `up` runs here
    for _ in range(50):  # the lock is taken before pids.json is first written
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            return int(json.loads(layout.pids.read_text())["up"])
        time.sleep(0.1)
    return None


def read_status(layout: Layout) -> dict[str, Any] | None:
    """Return the running line's latest snapshot, None when no `up` runs on this state directory."""
    if running_pid(layout) is None:
        return None
    with contextlib.suppress(FileNotFoundError, ValueError):
        data: dict[str, Any] = json.loads(layout.status.read_text())
        data["age_s"] = round(time.time() - float(data["updated"]), 1)
        return data
    return None


def detach(argv: list[str], layout: Layout, *, timeout: float = 120.0) -> int:
    """Start `up` (argv) in its own session with its output in logs/up.log; return once it runs.

    The problems it found while preparing are said here too: they would otherwise be in the log only.
    """
    layout.logs.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.root, 0o700)
    with layout.up_log.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    say(f"started in the background (pid {proc.pid}); log: {layout.up_log}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(layout.up_log.read_text(errors="replace").splitlines()[-20:])
            raise UpError(f"the background `plantline up` exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            snapshot = json.loads(layout.status.read_text())
            if snapshot.get("up_pid") == proc.pid:
                for problem in snapshot.get("problems", ()):
                    say(f"problem: {problem}")
                return proc.pid
        time.sleep(0.2)
    raise UpError(f"the background `plantline up` did not come up in {timeout:.0f}s; see {layout.up_log}")


def reload(layout: Layout, *, timeout: float = 60.0) -> dict[str, Any] | None:
    """Make the running `up` reload its trust files; return the outcome, None when none runs.

    Returns once `up` has finished (the broker listens again if it was restarted), so a client may
    connect at once. Raises UpError when no outcome arrives within `timeout`.
    """
    before = read_status(layout)
    count = int((before or {}).get("reload", {}).get("count", 0))
    pid = signal_up(layout, signal.SIGHUP)
    if pid is None:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            snapshot = json.loads(layout.status.read_text())
            outcome: dict[str, Any] = snapshot.get("reload") or {}
            if snapshot.get("up_pid") == pid and int(outcome.get("count", 0)) > count:
                return outcome
        if running_pid(layout) is None:
            raise UpError(f"plantline up (pid {pid}) stopped before it reloaded; see {layout.up_log}")
        time.sleep(0.1)
    raise UpError(f"plantline up (pid {pid}) did not report the reload within {timeout:.0f}s; see {layout.up_log}")


def signal_up(layout: Layout, signum: int) -> int | None:
    """Send `signum` to the running `up`; return its pid, None when none runs."""
    pid = running_pid(layout)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    return pid


def exited(pid: int) -> bool:
    """Return whether process `pid` has ended (a zombie its parent has not reaped yet has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone; or no /proc, where the state lock alone tells
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def down(layout: Layout, *, timeout: float = 60.0) -> bool:
    """Stop the line's background `up` and everything it started; return False when none ran.

    Returns once the `up` process has ended, not only released the state lock: the interpreter
    still winds down for a moment after that.
    """
    pid = signal_up(layout, signal.SIGTERM)
    if pid is None:
        return False
    say(f"stopping plantline up (pid {pid}): connectors, then simulators, then the broker")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (running_pid(layout) is None and exited(pid)):
        time.sleep(0.1)
    if running_pid(layout) is not None or not exited(pid):
        say(f"plantline up did not stop in {timeout:.0f}s; killing it and its children")
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            for child in json.loads(layout.pids.read_text())["children"].values():
                _kill_group(int(child), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
