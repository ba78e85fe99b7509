"""The same connector on two independent brokers: mosquitto and HiveMQ Community Edition.

Births, data, a rebirth on command, the NDEATH Will when the connector dies without a goodbye and
the next session's births must come out the same on both; each broker runs with mutual TLS from
the test CA and refuses a client of another CA or with no certificate (HiveMQ CE embedded, started
by a tiny Java launcher, `plantline_testing.hivemq`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from plantline.connectors.sparkplug import DataType, MessageType, Metric, Payload, encode
from plantline.pki.authority import Authority
from plantline.pki.exports import CertFormat
from plantline_testing import find_program
from plantline_testing.hivemq import HiveMQ
from plantline_testing.sparkplug_reader import SparkplugReader

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture(params=["mosquitto", "hivemq"])
def broker_program(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _bdseq(reader: SparkplugReader, kind: MessageType, index: int = -1) -> object:
    return next(m.value for m in reader.of(kind)[index].payload.metrics if m.name == "bdSeq")


def test_births_data_rebirth_will_and_the_next_session(line: Any, broker_program: str) -> None:
    if broker_program == "hivemq":
        assert isinstance(line.broker, HiveMQ)
        assert "Started TCP Listener with TLS" in line.broker.log_text()
    with line.reader() as reader:
        line.start_sim()
        line.start_connector()
        reader.wait_for(lambda: len(reader.of(MessageType.DDATA)) >= 5, 90, "DDATA from the filler")
        assert reader.of(MessageType.NBIRTH)[0].payload.seq == 0
        names = {m.name for m in reader.of(MessageType.DBIRTH, "filler")[0].payload.metrics}
        assert names == {"process.temperature", "process.pressure", "process.fill_level", "counter.total"}
        assert reader.values_of("filler", "process.temperature")

        rebirth = Payload(
            timestamp=int(time.time() * 1000),
            seq=None,
            metrics=(Metric("Node Control/Rebirth", None, int(time.time() * 1000), DataType.Boolean, True),),
        )
        reader.publish("spBv1.0/site1/NCMD/line1", encode(rebirth))
        reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 2, 15, "a second NBIRTH")
        assert _bdseq(reader, MessageType.NBIRTH, 0) == _bdseq(reader, MessageType.NBIRTH, 1)
        reader.wait_for(lambda: len(reader.of(MessageType.DBIRTH, "filler")) >= 2, 15, "a second DBIRTH")

        # Killed without a goodbye: the broker publishes the session's Will, the NDEATH of its bdSeq.
        line.kill_connector()
        reader.wait_for(lambda: len(reader.of(MessageType.NDEATH)) >= 1, 30, "the NDEATH Will")
        assert _bdseq(reader, MessageType.NDEATH) == _bdseq(reader, MessageType.NBIRTH)

        line.start_connector()
        reader.wait_for(lambda: len(reader.of(MessageType.NBIRTH)) >= 3, 60, "the next session's NBIRTH")
        assert _bdseq(reader, MessageType.NBIRTH) == (int(str(_bdseq(reader, MessageType.NDEATH))) + 1) % 256
        reader.wait_for(lambda: len(reader.of(MessageType.DBIRTH, "filler")) >= 3, 30, "the next session's DBIRTH")
        assert not reader.errors


def test_a_client_of_another_ca_is_refused(line: Any, tmp_path: Path) -> None:
    stranger = Authority.init(tmp_path / "stranger-ca", name="Stranger CA", passphrase=None, encrypt=False)
    stranger.issue("site1-line1", profile="mqtt-client")
    (tmp_path / "stranger.crt").write_bytes(stranger.export("site1-line1", CertFormat.CHAIN))
    (tmp_path / "stranger.key").write_bytes(stranger.export("site1-line1", CertFormat.KEY))
    base = [find_program("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(line.broker.port), "-t", "spBv1.0/x", "-m", "x"]
    base += ["--cafile", str(line.root / "connector" / "ca.crt"), "-q", "1"]
    own = ["--cert", str(line.root / "connector" / "client.crt"), "--key", str(line.root / "connector" / "client.key")]
    foreign = ["--cert", str(tmp_path / "stranger.crt"), "--key", str(tmp_path / "stranger.key")]
    assert subprocess.run([*base, *own], capture_output=True, timeout=30, check=False).returncode == 0
    assert subprocess.run([*base, *foreign], capture_output=True, timeout=30, check=False).returncode != 0
    assert subprocess.run(base, capture_output=True, timeout=30, check=False).returncode != 0
