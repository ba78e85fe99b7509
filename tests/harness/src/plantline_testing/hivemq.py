"""HiveMQ Community Edition (embedded, Apache-2.0) as a second real broker: `HiveMQ`, like `Broker`.

tests/harness/hivemq/pom.xml pins `com.hivemq:hivemq-community-edition-embedded`; Maven copies it
and its dependencies once into `$PLANTLINE_CACHE/hivemq/<hash of pom.xml and Launcher.java>/lib`
and javac compiles the tiny launcher there. `HiveMQ` takes the same directory of TLS files as
`plantline_testing.mosquitto.Broker` (trust-bundle.pem, broker.crt, broker.key), makes the
PKCS#12 key store and trust store HiveMQ reads (keytool for the trust store, as Java wants its
trusted entries marked), and runs one mutual-TLS listener on loopback. HiveMQ CE checks no CRL.
The process is stopped by its PID.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    load_pem_private_key,
    pkcs12,
)

from plantline_testing import cache_dir, find_program

HIVEMQ_DIR = Path(__file__).resolve().parents[2] / "hivemq"
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 120.0  # it starts in ~5 s alone, in ~25 s on a busy 2-core machine
STORE_PASSWORD = "plantline-test"  # guards throwaway test key stores only


class HiveMQError(RuntimeError):
    """HiveMQ could not be installed, started or stopped; the message holds its log."""


def ensure_hivemq() -> Path:
    """Return the directory holding `lib/` (HiveMQ's jars) and `classes/` (the launcher), making it once."""
    sources = [HIVEMQ_DIR / "pom.xml", HIVEMQ_DIR / "src" / "Launcher.java"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    target = cache_dir("hivemq") / digest
    if (target / "classes" / "Launcher.class").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=target.parent))
    try:
        maven = [find_program("mvn"), "-q", "-B", "-f", str(sources[0]), "dependency:copy-dependencies"]
        _run([*maven, f"-DoutputDirectory={work / 'lib'}"], "mvn")
        _run([find_program("javac"), "-cp", f"{work / 'lib'}/*", "-d", str(work / "classes"), str(sources[1])], "javac")
        try:
            work.rename(target)
        except OSError:
            if not (target / "classes" / "Launcher.class").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise HiveMQError(f"{what} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


class HiveMQ:
    """One HiveMQ CE process with a mutual-TLS listener on 127.0.0.1:`port`, from the files in `directory`."""

    def __init__(self, directory: Path, port: int, *, persistence: bool = True) -> None:
        self.directory = directory
        self.port = port
        self.persistence = persistence  # HiveMQ always persists its sessions in its data folder
        self.log = directory / "hivemq.log"
        self.proc: subprocess.Popen[str] | None = None

    def _stores(self) -> tuple[Path, Path]:
        key = load_pem_private_key((self.directory / "broker.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise HiveMQError(f"{self.directory / 'broker.key'}: expected an EC or RSA key")
        chain = x509.load_pem_x509_certificates((self.directory / "broker.crt").read_bytes())
        keystore = self.directory / "broker.p12"
        encryption = BestAvailableEncryption(STORE_PASSWORD.encode())
        keystore.write_bytes(pkcs12.serialize_key_and_certificates(b"broker", key, chain[0], chain[1:], encryption))
        truststore = self.directory / "trust.p12"
        truststore.unlink(missing_ok=True)
        bundle = x509.load_pem_x509_certificates((self.directory / "trust-bundle.pem").read_bytes())
        for index, ca in enumerate(bundle):
            pem = self.directory / f"trust-{index}.pem"
            pem.write_bytes(ca.public_bytes(Encoding.PEM))
            keytool = [find_program("keytool"), "-importcert", "-noprompt", "-storetype", "PKCS12"]
            store = ["-keystore", str(truststore), "-storepass", STORE_PASSWORD]
            _run([*keytool, "-alias", f"ca{index}", "-file", str(pem), *store], "keytool")
        return keystore, truststore

    def _config(self, keystore: Path, truststore: Path) -> Path:
        conf = self.directory / "hivemq-conf"
        conf.mkdir(exist_ok=True)
        (conf / "config.xml").write_text(f"""<?xml version="1.0"?>
<hivemq>
  <listeners>
    <tls-tcp-listener>
      <port>{self.port}</port>
      <bind-address>127.0.0.1</bind-address>
      <tls>
        <keystore>
          <path>{keystore}</path>
          <password>{STORE_PASSWORD}</password>
          <private-key-password>{STORE_PASSWORD}</private-key-password>
        </keystore>
        <truststore>
          <path>{truststore}</path>
          <password>{STORE_PASSWORD}</password>
        </truststore>
        <client-authentication-mode>REQUIRED</client-authentication-mode>
      </tls>
    </tls-tcp-listener>
  </listeners>
  <anonymous-usage-statistics><enabled>false</enabled></anonymous-usage-statistics>
</hivemq>
""")
        return conf

    def start(self) -> None:
        home = ensure_hivemq()
        conf = self._config(*self._stores())
        for folder in ("hivemq-data", "hivemq-extensions"):
            (self.directory / folder).mkdir(exist_ok=True)
        argv = [find_program("java"), "-cp", f"{home / 'lib'}/*:{home / 'classes'}", "Launcher", str(conf),
                str(self.directory / "hivemq-data"), str(self.directory / "hivemq-extensions")]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)  # fmt: skip
        started = threading.Event()
        assert self.proc.stdout is not None
        threading.Thread(target=self._copy_log, args=(self.proc.stdout, started), daemon=True).start()
        if not started.wait(START_TIMEOUT_S) or self.proc.poll() is not None:
            self.stop()
            raise HiveMQError(f"HiveMQ did not start:\n{self.log_text()}")
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()

    def _copy_log(self, stream: IO[str], started: threading.Event) -> None:
        with self.log.open("a") as log:
            for line in stream:
                log.write(line)
                log.flush()
                if line.strip() == "started":
                    started.set()

    def kill(self) -> None:
        """SIGKILL: the broker dies without a goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
