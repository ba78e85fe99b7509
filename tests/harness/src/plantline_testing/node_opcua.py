"""node-opcua as a strict OPC UA server that PlantLine did not write: `NodeOpcUaServer`.

The pinned node-opcua (tests/harness/opcua/package.json and its package-lock.json) is installed
by `npm ci` once into `$PLANTLINE_CACHE/node-opcua/<hash of the lock>/` (`plantline_testing.npm`);
tests/harness/opcua/server.js serves a few variables on 127.0.0.1 with Basic256Sha256 and
SignAndEncrypt only, and accepts a client certificate only when the trust list in its PKI folder
vouches for it (node-opcua wants the issuing CA in `trusted`, the CAs above it in `issuers`,
each with its CRL). Trust material goes in under a name made from its content: node-opcua picks
up a new file while it runs, but not a file replaced in place. Stopped by its PID.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from plantline.connectors.sim.hosting import end_process
from plantline_testing import find_program
from plantline_testing.npm import NpmPackage

OPCUA_DIR = Path(__file__).resolve().parents[2] / "opcua"
SERVER_SCRIPT = OPCUA_DIR / "server.js"
NODE_OPCUA = NpmPackage("node-opcua", OPCUA_DIR, probe="node-opcua")
START_TIMEOUT_S = 90.0  # node-opcua loads its standard address space first
PKI_FOLDERS = ("trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl", "rejected")


@dataclass(frozen=True)
class Variable:
    """One variable the server serves as `ns=1;s=<name>`; with a `step`, it grows by it every 100 ms."""

    name: str
    data_type: str  # node-opcua's DataType name: Boolean, Int16, UInt32, Double, String, ...
    value: bool | int | float | str
    step: int | float | None = None


class NodeOpcUaServer:
    """node-opcua serving `variables` on 127.0.0.1:`port`, its files and PKI folder under `directory`."""

    def __init__(
        self,
        directory: Path,
        port: int,
        *,
        certificate: bytes,
        private_key: bytes,
        application_uri: str,
        variables: list[Variable],
    ) -> None:
        """`certificate`: the server's PEM certificate followed by its CA chain (node-opcua warns without it)."""
        self.directory = directory
        self.port = port
        self.application_uri = application_uri
        self.variables = variables
        for folder in PKI_FOLDERS:
            (self.pki / folder).mkdir(parents=True, exist_ok=True)
        (directory / "server.pem").write_bytes(certificate)
        key = directory / "server.key"
        key.touch(mode=0o600)
        key.write_bytes(private_key)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/plantline"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def trust(self, certificates: bytes, crls: bytes, *, issuers: bool = False) -> None:
        """Add CA certificates and their CRLs to `trusted` (the issuing CA) or `issuers` (the CAs above it)."""
        where = self.pki / ("issuers" if issuers else "trusted")
        for folder, content, suffix in (("certs", certificates, ".pem"), ("crl", crls, ".crl.pem")):
            name = hashlib.sha256(content).hexdigest()[:16] + suffix
            (where / folder / name).write_bytes(content)

    def rejected(self) -> list[Path]:
        """Return the client certificates the server refused (node-opcua copies each into `rejected`)."""
        return sorted((self.pki / "rejected").iterdir())

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start the server and return once it listens (RuntimeError with its log if it does not)."""
        config = {
            "modules": str(NODE_OPCUA.ensure()),
            "pki": str(self.pki),
            "port": self.port,
            "certificate": str(self.directory / "server.pem"),
            "privateKey": str(self.directory / "server.key"),
            "applicationUri": self.application_uri,
            "variables": [
                {"name": v.name, "dataType": v.data_type, "value": v.value, "step": v.step} for v in self.variables
            ],
        }
        self._log = (self.directory / "server.log").open("a")
        # node-opcua writes its warnings to stdout too: both go to the log, which nobody has to drain.
        self._process = subprocess.Popen(
            [find_program("node"), str(SERVER_SCRIPT), json.dumps(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if not self._listening(self._process):
            self.stop()
            raise RuntimeError(f"node-opcua did not start on port {self.port}:\n{self.log()}")

    def _listening(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait for the log line saying it listens."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if any(line.startswith("listening ") for line in self.log().splitlines()):
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """End the server with SIGTERM (SIGKILL if it does not end in 10 s)."""
        process, self._process = self._process, None
        if process is not None:
            end_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
