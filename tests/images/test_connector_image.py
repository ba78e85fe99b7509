"""The PlantLine images under podman: what they hold, and the connector image running a line.

The images are built from this checkout on the tests' Debian 12 base (plantline_testing.images;
a warm run reuses them). The demo line's broker (mosquitto, mutual TLS) and its three PLC
simulators run on the host's loopback, prepared by `plantline up`'s own LocalLine; the connector
runs in a container on the host's network, read-only, with every capability dropped, as the
image's non-root user, its certificate and key mounted read-only and its outbox on a volume.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors.sparkplug import MessageType
from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.local import Layout, LocalLine, wait_listening
from plantline.operator.render import TRUST_BUNDLE, connector_config_data, render_connector_configs, topology
from plantline_testing import free_port
from plantline_testing.counting import (
    assert_none_lost,
    frozen,
    rereads,
    settled_samples_total,
    unique_samples,
    wait_caught_up,
)
from plantline_testing.images import RUN_AS, Container, Images, ensure_images, run_argv
from plantline_testing.lines import line_copy
from plantline_testing.sparkplug_reader import SparkplugReader

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(2400)]

MACHINES = ("filler", "capper", "labeler")
IN_POD_TLS = Path("/etc/plantline/tls")
IN_POD_DATA = Path("/var/lib/plantline")
CONFIG = Path("/etc/plantline/connector.yaml")
WHO_AM_I = "import getpass; print(getpass.getuser())"
LOCKED_DOWN = ("--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges")


@pytest.fixture(scope="module")
def images() -> Images:
    return ensure_images()


def _podman_json(*args: str) -> Any:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(done.stdout)


@pytest.mark.parametrize("target", ["connectors", "operator"])
def test_an_image_runs_as_its_fixed_user_and_holds_no_build_tools(images: Images, target: str) -> None:
    image = getattr(images, target)
    (inspected,) = _podman_json("image", "inspect", image)
    config = inspected["Config"]
    assert config["User"] == f"{RUN_AS}:{RUN_AS}"
    assert not config.get("Healthcheck")  # Kubernetes probes do that
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.title"] == f"plantline-{target}"
    probe = "id -u; id -g; for p in gcc cc c++ make pip pip3 uv; do command -v $p; done; ls /opt/plantline/bin"
    # Any uid a cluster assigns (none has a passwd entry) still has a user name: Kopf asks for one.
    named = subprocess.run(
        run_argv("--rm", *LOCKED_DOWN, "--user", "123456:0", "--entrypoint", "python3", image, "-c", WHO_AM_I),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert named.stdout.strip() == "plantline", named.stderr
    done = subprocess.run(
        run_argv("--rm", *LOCKED_DOWN, "--entrypoint", "sh", image, "-c", probe),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    uid, gid, *rest = done.stdout.split()
    assert (uid, gid) == (str(RUN_AS), str(RUN_AS))
    assert not [p for p in rest if p.endswith(("gcc", "cc", "c++", "make", "pip", "pip3", "uv"))], rest
    assert not [p for p in rest if p.startswith("pip")], rest  # the virtualenv holds no pip
    # The programs start on a read-only root file system without a capability.
    command = ["--help"] if target == "connectors" else ["operator", "run", "--help"]
    started = subprocess.run(
        run_argv("--rm", *LOCKED_DOWN, image, *command), capture_output=True, text=True, timeout=120, check=False
    )
    assert started.returncode == 0, started.stderr
    assert "usage:" in started.stdout


def test_the_connector_image_runs_the_cloud_bridge_with_librdkafka(images: Images) -> None:
    # The operator runs spec.cloud's bridge from the connector image (no third image to build).
    started = subprocess.run(
        run_argv("--rm", *LOCKED_DOWN, "--entrypoint", "plantline-bridge", images.connectors, "--help"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "usage: plantline-bridge" in started.stdout
    probe = "import confluent_kafka; print(confluent_kafka.libversion()[0])"
    loaded = subprocess.run(
        run_argv("--rm", *LOCKED_DOWN, "--entrypoint", "python3", images.connectors, "-c", probe),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().split(".")[0].isdigit(), loaded.stdout  # librdkafka's version, e.g. 2.12.1


# -- the connector image runs the demo line ------------------------------------------------------


class HostedLine:
    """The demo line's broker and simulators on loopback; the connector's files for a container."""

    def __init__(self, root: Path) -> None:
        line_file = root / "line.yaml"
        data = line_copy(line_file)
        self.line: PlantLine = parse_plantline(data)
        self.local = LocalLine(self.line, Layout(root / "state"), simulate=True, metrics_base_port=free_port())
        self.local.prepare()
        (self.group,) = (c.group for c in topology(self.line.spec))
        self.metrics_port = free_port()
        self.mounts = root / "mounts"

    def start(self) -> None:
        self.local.start_broker()
        for simulator in self.local.simulators:
            simulator.start()
        for simulator in self.local.simulators:
            assert simulator.listen is not None
            assert wait_listening(*simulator.listen, alive=simulator.alive, timeout=60), simulator.log_tail()

    def stop(self) -> None:
        self.local.stop()

    @property
    def simulator_groups(self) -> list[int]:
        return [s.proc.pid for s in self.local.simulators if s.proc is not None]

    @property
    def broker_group(self) -> int:
        broker = self.local.broker
        assert broker is not None
        assert broker.proc is not None
        return broker.proc.pid

    def identity(self, role: str) -> str:
        return f"{self.line.spec.site}-{self.line.spec.line}-{role}"

    def container_files(self) -> tuple[Path, Path, Path]:
        """Write the connector's config, TLS files (read-only, the image's user's) and data directory."""
        (config,) = render_connector_configs(
            self.line,
            tls_dir=IN_POD_TLS,
            data_dir=IN_POD_DATA,
            metrics_base_port=self.metrics_port,
            metrics_address="127.0.0.1",
        ).values()
        config_file, tls, data = self.mounts / "connector.yaml", self.mounts / "tls", self.mounts / "data"
        tls.mkdir(parents=True)
        data.mkdir()
        config_file.write_text(yaml.safe_dump(connector_config_data(config)))
        identity = self.identity(self.group)
        for name in (f"{identity}.crt", f"{identity}.key", TRUST_BUNDLE):
            shutil.copy(self.local.layout.tls / name, tls / name)
            (tls / name).chmod(0o400)
        for path in (tls, *tls.iterdir(), data, config_file):
            shutil.chown(path, RUN_AS, RUN_AS)
        return config_file, tls, data

    def reader(self, client_id: str) -> SparkplugReader:
        tls, reader = self.local.layout.tls, self.identity("reader")
        return SparkplugReader(
            port=self.line.spec.broker.port,
            group_id=self.line.spec.sparkplug_group,
            ca=tls / TRUST_BUNDLE,
            cert=tls / f"{reader}.crt",
            key=tls / f"{reader}.key",
            client_id=client_id,
            persistent=True,
        )


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[HostedLine]:
    line = HostedLine(tmp_path)
    try:
        line.start()
        yield line
    finally:
        line.stop()


def _bdseq(message: Any) -> int:
    return int(next(m.value for m in message.payload.metrics if m.name == "bdSeq"))


def _bdseqs(reader: SparkplugReader) -> list[int]:
    return [_bdseq(m) for m in reader.of(MessageType.NBIRTH)]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback http
            return int(response.status)
    except OSError:
        return 0


def test_the_connector_image_runs_the_line_and_a_sigterm_loses_no_sample(
    images: Images, hosted: HostedLine, tmp_path: Path
) -> None:
    config_file, tls, data = hosted.container_files()
    options = [
        "--network=host",  # the broker and simulators listen on the host's loopback only
        *LOCKED_DOWN,
        f"--volume={config_file}:{CONFIG}:ro",
        f"--volume={tls}:{IN_POD_TLS}:ro",
        f"--volume={data}:{IN_POD_DATA}",
    ]
    metrics = f"http://127.0.0.1:{hosted.metrics_port}"
    names = [f"plantline-connector-test-{free_port()}-{n}" for n in ("a", "b")]
    first, second = (Container(name, images.connectors, options) for name in names)
    try:
        with hosted.reader("image-reader") as reader:
            first.start()
            reader.wait_for(lambda: all(reader.of(MessageType.DDATA, m) for m in MACHINES), 120, "DDATA from all three")
            assert _status(f"{metrics}/readyz") == 200
            status = first.exec("cat", "/proc/1/status").stdout
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            assert fields["Uid"].split()[:2] == [str(RUN_AS)] * 2
            assert int(fields["CapEff"], 16) == 0
            assert int(fields["CapBnd"], 16) == 0
            assert first.exec("touch", "/opt/plantline/x").returncode != 0  # the root file system is read-only

            # Samples pile up unacknowledged while the broker stands still; the PLCs then freeze so
            # the count the connector accepted is final, and SIGTERM comes with a full outbox.
            with frozen([hosted.broker_group]), frozen(hosted.simulator_groups):
                accepted_first = settled_samples_total(f"{metrics}/metrics")
                first.kill("TERM")
                assert first.wait(timeout=60) == 0, first.logs()
            reader.wait_for(lambda: bool(reader.of(MessageType.NDEATH)), 30, "the NDEATH SIGTERM sends")
            bdseq = _bdseq(reader.of(MessageType.NBIRTH)[0])
            assert [_bdseq(m) for m in reader.of(MessageType.NDEATH)] == [bdseq]

            # A new container on the same volume resumes the session counter and drains the outbox.
            second.start()
            reader.wait_for(lambda: bdseq + 1 in _bdseqs(reader), 120, "an NBIRTH with the next bdSeq")
            # Frozen before the replay is over, a PLC's device would die and hold its backlog (counting).
            wait_caught_up(f"{metrics}/metrics")
            with frozen(hosted.simulator_groups):
                accepted_second = settled_samples_total(f"{metrics}/metrics")
                produced = {m: accepted_first.get(m, 0) + accepted_second.get(m, 0) for m in MACHINES}
                allowance = rereads(hosted.line)
                reader.wait_for(
                    lambda: all(len(unique_samples(reader.values, m)) >= produced[m] - allowance[m] for m in MACHINES),
                    120,
                    f"every accepted sample at the reader: {produced}",
                )
                time.sleep(2.0)  # what is still on its way
                received = {m: len(unique_samples(reader.values, m)) for m in MACHINES}
            assert_none_lost(produced, received, allowance)
            assert any(v.historical for v in reader.values), "samples replayed from the outbox are historical"
            assert not reader.errors
    finally:
        for container in (first, second):
            container.remove()
