"""A real Apache Kafka for tests: one KRaft node (broker and controller) with a SASL_SSL listener on loopback.

tests/harness/kafka/pom.xml pins `org.apache.kafka:kafka_2.13`; Maven copies the server and its
dependencies once into `$PLANTLINE_CACHE/kafka/<hash of pom.xml>/lib`. `KafkaServer` formats a
log directory (a fresh cluster id), writes `server.properties` and runs `kafka.Kafka` with Java:

- `SASL_SSL://127.0.0.1:<port>`: TLS with the certificate in `directory` (broker.crt, broker.key,
  from the toolkit's CA), SASL PLAIN with the users given, as clients (and Event Hubs) use it;
- `INTERNAL://127.0.0.1:<port+1>` (plaintext, loopback) between the broker and itself, and
  `CONTROLLER://127.0.0.1:<port+2>` for the KRaft quorum of one.

`stop` and `start` again keep the data (an outage); `kill` is SIGKILL. The process is stopped by
its PID.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, load_pem_private_key, pkcs12

from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import Started, cache_dir, find_program

KAFKA_DIR = Path(__file__).resolve().parents[2] / "kafka"
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 120.0  # ~10 s alone, much longer beside a busy line on 2 cores
STORE_PASSWORD = "plantline-test"  # guards a throwaway test key store only
ADMIN = ("admin", "admin-secret")  # the test's own user (topics, consumers)


@dataclass(frozen=True)
class Consumed:
    """One record read back: where it is, its key, value, headers and Kafka's timestamp (ms)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: dict[str, Any]
    timestamp_ms: int


class KafkaError(RuntimeError):
    """Kafka could not be installed, started or stopped; the message holds its log."""


def ensure_kafka() -> Path:
    """Return the directory of Kafka's jars (`lib/`), fetching them with Maven once."""
    pom = KAFKA_DIR / "pom.xml"
    target = cache_dir("kafka") / hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    if (target / "lib").is_dir() and any((target / "lib").glob("kafka_2.13-*.jar")):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch.", dir=target.parent))
    try:
        argv = [find_program("mvn"), "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"]
        done = subprocess.run([*argv, f"-DoutputDirectory={work / 'lib'}"], capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S, check=False)  # fmt: skip
        if done.returncode != 0:
            raise KafkaError(f"mvn exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        try:
            work.rename(target)
        except OSError:
            if not (target / "lib").is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


class KafkaServer(Started):
    """One Kafka node from the TLS files in `directory`; `users` maps SASL PLAIN users to passwords."""

    def __init__(self, directory: Path, port: int, *, users: Mapping[str, str], partitions: int = 3) -> None:
        self.directory = directory
        self.port = port
        self.users = {ADMIN[0]: ADMIN[1], **users}
        self.partitions = partitions
        self.data = directory / "kafka-data"
        self.log = directory / "kafka.log"
        self.properties = directory / "server.properties"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def with_own_ca(cls, directory: Path, port: int, *, users: Mapping[str, str]) -> KafkaServer:
        """Return a (not yet started) node whose certificate a CA of its own under `directory` issued.

        Each user's password is in `directory/<user>-password`, as a client's `password_file`.
        """
        directory.mkdir(parents=True, exist_ok=True)
        ca = Authority.init(directory / "ca", name="Kafka test CA", passphrase=None, encrypt=False)
        ca.issue("kafka-broker", profile="mqtt-server", sans=["ip:127.0.0.1"])
        (directory / "broker.crt").write_bytes(ca.export("kafka-broker", CertFormat.CHAIN))
        (directory / "broker.key").write_bytes(ca.export("kafka-broker", CertFormat.KEY))
        (directory / "trust-bundle.pem").write_bytes(ca.trust_bundle())
        for user, password in users.items():
            (directory / f"{user}-password").write_text(password + "\n")
        return cls(directory, port, users=users)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "trust-bundle.pem"

    def _keystore(self) -> Path:
        key = load_pem_private_key((self.directory / "broker.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KafkaError(f"{self.directory / 'broker.key'}: expected an EC or RSA key")
        chain = x509.load_pem_x509_certificates((self.directory / "broker.crt").read_bytes())
        store = self.directory / "broker.p12"
        encryption = BestAvailableEncryption(STORE_PASSWORD.encode())
        store.write_bytes(pkcs12.serialize_key_and_certificates(b"broker", key, chain[0], chain[1:], encryption))
        return store

    def render_properties(self, keystore: Path) -> str:
        internal, controller = self.port + 1, self.port + 2
        users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        jaas = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{ADMIN[0]}"'
        jaas += f' password="{ADMIN[1]}" {users};'
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"SASL_SSL://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{internal},"
            f"CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{internal}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "CONTROLLER",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.password": STORE_PASSWORD,
            "ssl.key.password": STORE_PASSWORD,
            "log.dirs": str(self.data),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def _java(self, main: str, *args: str) -> list[str]:
        lib = ensure_kafka() / "lib"
        # slf4j-simple, whichever other SLF4J provider Kafka's dependencies bring: its INFO lines
        # (e.g. failed authentications) go to the log the tests read
        provider = "-Dslf4j.provider=org.slf4j.simple.SimpleServiceProvider"
        return [find_program("java"), "-Xms256m", "-Xmx1g", provider, "-cp", f"{lib}/*", main, *args]

    def format(self) -> None:
        """Write the configuration and format the log directory (once: a restart keeps the data)."""
        self.properties.write_text(self.render_properties(self._keystore()))
        if (self.data / "meta.properties").exists():
            return
        argv = self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(self.properties))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise KafkaError(f"formatting Kafka's storage failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self.format()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", str(self.properties)), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise KafkaError(f"Kafka exited {self.proc.returncode} at start:\n{self.log_text()[-5000:]}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise KafkaError(f"Kafka did not answer on {self.bootstrap}:\n{self.log_text()[-5000:]}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient(self.client_settings()).list_topics(timeout=3)
        except KafkaException:
            return False
        return True

    def client_settings(self, user: str = ADMIN[0], password: str | None = None) -> dict[str, Any]:
        """Return librdkafka settings for a client of the SASL_SSL listener (the admin by default)."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.ca_file),
            "sasl.mechanism": "PLAIN",
            "sasl.username": user,
            "sasl.password": self.users[user] if password is None else password,
        }

    def create_topics(self, names: list[str], partitions: int | None = None) -> None:
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        admin = AdminClient(self.client_settings())
        count = self.partitions if partitions is None else partitions
        for future in admin.create_topics([NewTopic(n, count, 1) for n in names]).values():
            future.result(60)

    def read(self, topics: list[str], *, until: Any, timeout: float = 120.0) -> list[Consumed]:
        """Return every record of `topics` from the start, reading until `until(records)` or `timeout`."""
        from confluent_kafka import Consumer

        settings = {**self.client_settings(), "group.id": f"test-{os.urandom(4).hex()}",
                    "auto.offset.reset": "earliest", "enable.auto.commit": False}  # fmt: skip
        consumer = Consumer(settings)
        consumer.subscribe(topics)
        records: list[Consumed] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not until(records):
                for message in consumer.consume(num_messages=10_000, timeout=0.5):
                    if message.error() is not None:
                        raise KafkaError(f"consuming {topics}: {message.error()}")
                    records.append(Consumed(message.topic() or "", message.partition() or 0, message.offset() or 0,
                                            message.key() or b"", message.value() or b"",
                                            dict(message.headers() or []), message.timestamp()[1]))  # fmt: skip
        finally:
            consumer.close()
        return records

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
