"""A real Kubernetes control plane for tests: `ControlPlane`, and `ensure_binaries()` to build it.

The programs (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok) are
built from source once by tests/harness/controlplane/build.sh into `$PLANTLINE_CACHE/controlplane/`
(or taken from `$KUBEBUILDER_ASSETS`, the envtest convention). `ControlPlane` generates a PKI
for them, starts them on free 127.0.0.1 ports with their data and logs in a work directory, and
registers one fake Node that kwok keeps Ready and whose pods kwok runs, so Deployments become
Available without a container runtime. Its default StorageClass, `standard`, is served by the
controller-manager's hostPath provisioner, so claims bind (plantline_testing.node adds a real
node, with local volumes). Everything is stopped by PID, last started first.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import plantline_testing
from plantline_testing import Started, free_port, run_build

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "controlplane" / "build.sh"
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
NODE_PROGRAMS = ("kubelet",)  # built by build.sh --node, for a real node (plantline_testing.node)
KWOK_STAGES = "kwok-stages.yaml"  # kwok's default Stages, which build.sh puts next to the programs
BUILD_TIMEOUT_S = 3600.0
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
SERVICE_CIDR = "10.0.0.0/24"
FAKE_NODE = "kwok-node-0"
# The annotation kwok is told to manage nodes by (--manage-nodes-with-annotation-selector).
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "PodSecurity",
    "Priority",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)
_PR_SET_PDEATHSIG = 1
HOSTPATH_PROVISIONER_DIR = Path("/tmp/hostpath_pv")
# The cluster's default StorageClass: the controller-manager's hostPath provisioner (for tests only).
DEFAULT_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or asked; the message holds the log's tail."""


class ApiError(ControlPlaneError):
    """The apiserver answered with an error status; `status` and the decoded `body` say which."""

    def __init__(self, status: int, body: dict[str, Any], method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status} {body.get('message', body)}")
        self.status = status
        self.body = body


def cache_dir() -> Path:
    """Return `$PLANTLINE_CACHE/controlplane` (or ~/.cache/plantline/controlplane)."""
    return plantline_testing.cache_dir("controlplane")


def ensure_binaries(*, node: bool = False) -> Path:
    """Return the directory holding all the control plane's programs, building the missing ones.

    Runs tests/harness/controlplane/build.sh, which returns at once when the binaries for its pinned
    versions are cached and otherwise builds them from the Go module proxy (tens of minutes
    the first time on two cores). `$KUBEBUILDER_ASSETS` binaries are used where present. With
    `node`, the kubelet of the same release too (build.sh --node).
    """
    if not BUILD_SCRIPT.is_file():
        raise ControlPlaneError(f"{BUILD_SCRIPT} is missing; plantline_testing must run from a PlantLine checkout")
    argv = ["bash", str(BUILD_SCRIPT), *(["--node"] if node else [])]
    try:
        build = run_build(argv, BUILD_TIMEOUT_S)  # progress, one line per step, live on our stderr
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(f"{BUILD_SCRIPT} took more than {BUILD_TIMEOUT_S:.0f} s") from exc
    if build.returncode != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} failed ({build.returncode}); its messages are on stderr above, "
            f"the go commands' output in {cache_dir() / 'build.log'}"
        )
    bin_dir = Path(build.stdout.strip().splitlines()[-1])
    missing = [name for name in (*PROGRAMS, *(NODE_PROGRAMS if node else ())) if not os.access(bin_dir / name, os.X_OK)]
    missing += [] if (bin_dir / KWOK_STAGES).is_file() else [KWOK_STAGES]
    if missing:
        raise ControlPlaneError(f"{BUILD_SCRIPT} returned {bin_dir}, which lacks {', '.join(missing)}")
    return bin_dir


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --- PKI ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


class _TestCA:
    """A throwaway CA, valid for a day, that signs the control plane's certificates."""

    def __init__(self) -> None:
        self.key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        self.name = _name("plantline-test-kubernetes-ca")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pair(self) -> _KeyPair:
        return _KeyPair(self.cert.public_bytes(serialization.Encoding.PEM), _key_pem(self.key))

    def issue(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        server: bool = False,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> _KeyPair:
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if dns or ips:
            names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write_private(path: Path, data: bytes) -> Path:
    """Write `data` to a new file only its owner can read (keys, tokens, kubeconfigs)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig_text(server: str, ca_pem: bytes, user: str, credentials: dict[str, str]) -> str:
    """Return a kubeconfig (JSON, which kubeconfig readers accept) for one user of one server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "plantline-test", "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "plantline-test", "user": user}}],
        "current-context": user,
    }
    return json.dumps(config, indent=2) + "\n"


# --- processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the test process dies uncleanly: no orphans.

    SIGKILL, not SIGTERM: with the parent gone nobody stops them in order, and a kube-apiserver
    whose etcd is gone waits a long time in its graceful shutdown. (Orderly stops use SIGTERM.)
    Linux sends it when the *thread* that started the child ends: start a ControlPlane from a
    thread that outlives it (pytest fixtures run in the main thread).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Program:
    """One program a harness started, in the foreground of its own log; stopped by its PID."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log.read_text(errors="replace"), lines) if self.log.exists() else "(no log)"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)


def spawn(name: str, argv: Sequence[str], work_dir: Path) -> Program:
    """Start `argv` in `work_dir`, its output in `<work_dir>/<name>.log`; it dies with this process."""
    log = work_dir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl, no locks taken
        )
    return Program(name, popen, log)


class ControlPlane(Started):
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1.

    Use it as a context manager; `kubeconfig` is an admin (system:masters) kubeconfig. With no
    `work_dir`, a temporary directory is made and removed on exit; a given one is kept, with
    the PKI, etcd's data and each program's log (`<program>.log`).
    """

    def __init__(self, work_dir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir if work_dir is not None else Path(tempfile.mkdtemp(prefix="plantline-controlplane-"))
        self._bin_dir = bin_dir
        self.kubeconfig = self.work_dir / "admin.kubeconfig"
        self.apiserver_port = 0
        self.etcd_port = 0
        self._processes: list[Program] = []
        self._ssl: ssl.SSLContext | None = None
        self._ca_pem = b""
        self._ca: _TestCA | None = None
        self._clients: dict[str, _KeyPair] = {}

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_binaries()
        return self._bin_dir

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_pem(self) -> bytes:
        return self._ca_pem

    @property
    def pki_dir(self) -> Path:
        return self.work_dir / "pki"

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every program and return once the API is ready, with a Ready fake node."""
        try:
            bin_dir = self.bin_dir
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.work_dir.chmod(0o700)
            self._write_pki()
            self._start_etcd(bin_dir)
            self._start_apiserver(bin_dir)
            self._start_controller_manager(bin_dir)
            self._start_scheduler(bin_dir)
            self._wait_for("the default ServiceAccount", self._has_default_service_account)
            self.request("POST", "/apis/storage.k8s.io/v1/storageclasses", DEFAULT_STORAGE_CLASS)
            self._start_kwok(bin_dir)
            self._register_fake_node()
            self._wait_for(f"node {FAKE_NODE} Ready (kwok)", self._fake_node_ready, self._processes[-1])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every program by its PID, last started first: SIGTERM, then SIGKILL."""
        self._remove_provisioned_directories()
        while self._processes:
            self._processes.pop().stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _remove_provisioned_directories(self) -> None:
        """Remove the directories the hostPath provisioner made for volumes still bound (empty on kwok)."""
        if self._ssl is None or not self._processes:
            return
        with contextlib.suppress(OSError, ControlPlaneError, http.client.HTTPException):
            for volume in self.request("GET", "/api/v1/persistentvolumes").get("items", []):
                path = Path((volume["spec"].get("hostPath") or {}).get("path", "/"))
                if path.parent == HOSTPATH_PROVISIONER_DIR:
                    shutil.rmtree(path, ignore_errors=True)

    def _spawn(self, name: str, argv: Sequence[str]) -> Program:
        process = spawn(name, argv, self.work_dir)
        self._processes.append(process)
        return process

    def _wait_for(self, what: str, ready: Callable[[], bool], process: Program | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for running in self._processes:
                if running.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{running.name} exited with {running.popen.returncode} while waiting for {what}; "
                        f"last lines of {running.log}:\n{running.log_tail()}"
                    )
            with contextlib.suppress(OSError, ControlPlaneError, http.client.HTTPException):
                if ready():
                    return
            if time.monotonic() > deadline:
                blame = process or self._processes[-1]
                raise ControlPlaneError(
                    f"{what}: not ready after {START_TIMEOUT_S:.0f} s; last lines of {blame.log}:\n{blame.log_tail()}"
                )
            time.sleep(0.1)

    # --- the programs --------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.pki_dir
        pki.mkdir(mode=0o700, exist_ok=True)
        ca = _TestCA()
        self._ca = ca
        self._ca_pem = ca.pair.cert_pem
        (pki / "ca.crt").write_bytes(ca.pair.cert_pem)
        _write_private(pki / "ca.key", ca.pair.key_pem)
        first_service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        serving = ca.issue(
            "kube-apiserver",
            server=True,
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", first_service_ip),
        )
        (pki / "apiserver.crt").write_bytes(serving.cert_pem)
        _write_private(pki / "apiserver.key", serving.key_pem)
        service_accounts = _new_key()
        _write_private(pki / "sa.key", _key_pem(service_accounts))
        (pki / "sa.pub").write_bytes(
            service_accounts.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self._clients = {
            "admin": ca.issue("plantline-test-admin", organization="system:masters"),
            "kube-controller-manager": ca.issue("system:kube-controller-manager"),
            "kube-scheduler": ca.issue("system:kube-scheduler"),
            # kwok edits node and pod status the way kubelets do, for every fake node: cluster admin.
            "kwok": ca.issue("kwok-controller", organization="system:masters"),
        }
        admin = self._clients["admin"]
        _write_private(pki / "admin.crt", admin.cert_pem)  # for curl; kubeconfigs embed them
        _write_private(pki / "admin.key", admin.key_pem)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        self._ssl = context

    def _client_kubeconfig(self, user: str) -> Path:
        pair = self._clients[user]
        credentials = {"client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)}
        path = self.kubeconfig if user == "admin" else self.work_dir / f"{user}.kubeconfig"
        _write_private(path, kubeconfig_text(self.server, self._ca_pem, user, credentials).encode())
        return path

    def _start_etcd(self, bin_dir: Path) -> None:
        self.etcd_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer_port}"
        data_dir = self.work_dir / "etcd"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=plantline-test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=plantline-test={peer_url}",
                "--unsafe-no-fsync=true",  # test data: durability buys nothing, fsyncs cost seconds
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:  # noqa: S310 - loopback http
                return bool(json.loads(response.read()).get("health") == "true")

        self._wait_for("etcd /health", healthy)

    def _start_apiserver(self, bin_dir: Path) -> None:
        pki = self.pki_dir
        self.apiserver_port = free_port()
        cert_dir = self.work_dir / "apiserver"
        cert_dir.mkdir(mode=0o700, exist_ok=True)
        process = self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={cert_dir}",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
                "--allow-privileged=true",
                # The Endpoints API refuses loopback addresses, so the reconciler of the `kubernetes`
                # Service would fail every 10 s; no pod here dials the apiserver through it.
                "--endpoint-reconciler-type=none",
                "--anonymous-auth=false",
                # The apiserver cannot dial a fake node's kubelet; it never needs to in these tests.
                "--kubelet-preferred-address-types=InternalIP",
            ],
        )
        self._client_kubeconfig("admin")
        self._wait_for("kube-apiserver /readyz", lambda: self._get_text("/readyz") == "ok", process)

    def _component_args(self, user: str, port: int) -> list[str]:
        kubeconfig = self._client_kubeconfig(user)
        cert_dir = self.work_dir / user
        cert_dir.mkdir(mode=0o700, exist_ok=True)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={cert_dir}",
            # Client certificates are checked against our CA; without this they would look up a
            # front-proxy CA in the cluster, which this control plane has no use for.
            f"--client-ca-file={self.pki_dir / 'ca.crt'}",
            "--authentication-skip-lookup=true",
            "--leader-elect=false",
        ]

    def _healthz(self, port: int) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a self-signed serving cert made at start, on loopback
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            return response.status == 200 and response.read() == b"ok"
        finally:
            connection.close()

    def _start_controller_manager(self, bin_dir: Path) -> None:
        pki, port = self.pki_dir, free_port()
        process = self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *self._component_args("kube-controller-manager", port),
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Dynamic volumes for the default StorageClass (`standard`): directories under
                # /tmp/hostpath_pv, made and removed by the controller-manager itself. Pods on
                # the fake node never mount them; a real node's tests bring local volumes.
                "--enable-hostpath-provisioner=true",
            ],
        )
        self._wait_for("kube-controller-manager /healthz", lambda: self._healthz(port), process)

    def _start_scheduler(self, bin_dir: Path) -> None:
        port = free_port()
        process = self._spawn(
            "kube-scheduler",
            [str(bin_dir / "kube-scheduler"), *self._component_args("kube-scheduler", port)],
        )
        self._wait_for("kube-scheduler /healthz", lambda: self._healthz(port), process)

    def _start_kwok(self, bin_dir: Path) -> None:
        key, value = FAKE_NODE_ANNOTATION
        kubeconfig = self._client_kubeconfig("kwok")
        self._spawn(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={bin_dir / KWOK_STAGES}",  # also keeps ~/.kwok/kwok.yaml out
                "--node-lease-duration-seconds=40",  # the heartbeat stage renews Leases, as kubelets do
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                f"--server-address=127.0.0.1:{free_port()}",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
            ],
        )

    def _register_fake_node(self) -> None:
        key, value = FAKE_NODE_ANNOTATION
        resources = {"cpu": "256", "memory": "1Ti", "pods": "1000"}  # room for the benchmark's 200+ pods
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": FAKE_NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {},
            "status": {"allocatable": resources, "capacity": resources, "phase": "Running"},
        }
        self.request("POST", "/api/v1/nodes", node)

    def _has_default_service_account(self) -> bool:
        self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return True

    def _fake_node_ready(self) -> bool:
        conditions = self.request("GET", f"/api/v1/nodes/{FAKE_NODE}").get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    # --- talking to the API --------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPSConnection:
        if self._ssl is None:
            raise ControlPlaneError("the control plane is not started")
        return http.client.HTTPSConnection("127.0.0.1", self.apiserver_port, timeout=30, context=self._ssl)

    def _get_text(self, path: str) -> str:
        connection = self._connection()
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode(errors="replace")
        finally:
            connection.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the decoded JSON answer of the apiserver, as the admin; raise ApiError on >= 400."""
        connection = self._connection()
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw.decode(errors="replace")}
        if not isinstance(decoded, dict):
            decoded = {"items": decoded}
        if response.status >= 400:
            raise ApiError(response.status, decoded, method, path)
        return decoded

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as the admin and return its result (raise on failure if `check`)."""
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def node_kubeconfig(self, node: str) -> Path:
        """Return a kubeconfig (mode 0600) for the kubelet of `node`: `system:node:<node>` in `system:nodes`."""
        if self._ca is None:
            raise ControlPlaneError("the control plane is not started")
        pair = self._ca.issue(f"system:node:{node}", organization="system:nodes")
        credentials = {"client-certificate-data": _b64(pair.cert_pem), "client-key-data": _b64(pair.key_pem)}
        path = self.work_dir / f"node-{node}.kubeconfig"
        _write_private(path, kubeconfig_text(self.server, self._ca_pem, f"system:node:{node}", credentials).encode())
        return path

    def service_account_kubeconfig(self, namespace: str, name: str, *, expiration_s: int = 3600) -> Path:
        """Return a kubeconfig (mode 0600) that authenticates as a ServiceAccount with a fresh token.

        The token comes from the TokenRequest API; the ServiceAccount must exist.
        """
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_s},
        }
        answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", request)
        token = str(answer["status"]["token"])
        user = f"system:serviceaccount:{namespace}:{name}"
        path = self.work_dir / f"sa-{namespace}-{name}.kubeconfig"
        _write_private(path, kubeconfig_text(self.server, self._ca_pem, user, {"token": token}).encode())
        return path


__all__ = [
    "KWOK_STAGES",
    "NODE_PROGRAMS",
    "PROGRAMS",
    "ApiError",
    "ControlPlane",
    "ControlPlaneError",
    "Program",
    "cache_dir",
    "ensure_binaries",
    "kubeconfig_text",
    "spawn",
]
