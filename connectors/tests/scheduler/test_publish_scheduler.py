"""The publish schedule, sans I/O: birth order, lanes, the window, deferral (tests named after TCK ids).

A small stand-in shell drives the schedule the way the runtime does, over a list standing in
for the outbox (hand-out cursor, claims, requeue), and records every message in publish order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plantline.connectors.config import Tag
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.scheduler import Plan, PublishScheduler, Send
from plantline.connectors.session import BdSeqStore, EdgeNodeSession, Rejected
from plantline.connectors.sparkplug import HostState, MessageType, decode, parse_topic

T0 = 1_763_800_000_000
WAIT = 2000
DEVICES = ("filler", "capper", "labeler")
TAGS = {d: [Tag(signal="counter.good", address="ns=2;s=x", datatype="uint32")] for d in DEVICES}


@dataclass(frozen=True)
class StoredBatch:
    id: int
    samples: tuple[Sample, ...]
    appended_at: float
    recovered: bool


@dataclass
class ListOutbox:
    """The outbox's hand-out rules over a list (a stand-in for plantline.connectors.outbox)."""

    batches: dict[int, StoredBatch] = field(default_factory=dict)
    cursor: int = 0
    next_id: int = 1
    set_aside: list[tuple[int, Rejected, int]] = field(default_factory=list)

    def append(self, samples: list[Sample], at_ms: int, *, recovered: bool = False) -> StoredBatch:
        batch = StoredBatch(self.next_id, tuple(samples), at_ms / 1000, recovered)
        self.batches[batch.id] = batch
        self.next_id += 1
        return batch

    def claim(self, batch_id: int) -> bool:
        if any(self.cursor < i < batch_id for i in self.batches):
            return False
        self.cursor = max(self.cursor, batch_id)
        return True

    def pending(self, max_samples: int) -> list[StoredBatch]:
        out: list[StoredBatch] = []
        for batch_id in sorted(i for i in self.batches if i > self.cursor):
            if out and sum(len(b.samples) for b in out) + len(self.batches[batch_id].samples) > max_samples:
                break
            out.append(self.batches[batch_id])
        if out:
            self.cursor = out[-1].id
        return out


@dataclass
class Shell:
    """Drives a schedule like the runtime: claims, sets aside, publishes, replays, acknowledges."""

    schedule: PublishScheduler
    outbox: ListOutbox = field(default_factory=ListOutbox)
    published: list[Send] = field(default_factory=list)
    in_flight: list[Send] = field(default_factory=list)
    max_metrics: int = 1  # the batches here hold a sample or two

    def run(self, plan: Plan) -> Plan:
        if plan.claim is not None and not self.outbox.claim(plan.claim):
            self.schedule.unclaimed()
        for aside in plan.set_aside:
            for reason, samples in aside.rejected.items():
                self.outbox.set_aside.append((aside.batch_id, reason, len(samples)))
            if aside.whole:
                del self.outbox.batches[aside.batch_id]
        self.published += plan.sends
        self.in_flight += [s for s in plan.sends if s.batch_id is not None]
        return plan

    def store(self, device: str, values: list[int], now_ms: int, **kw: bool) -> StoredBatch:
        batch = self.outbox.append([sample(device, v, now_ms) for v in values], now_ms)
        self.run(self.schedule.stored(batch, now_ms, **kw))
        return batch

    def replay(self, now_ms: int) -> None:
        while (room := self.schedule.replay_room()) > 0:
            batches = self.outbox.pending(room * self.max_metrics)
            self.run(self.schedule.replayed(batches, now_ms))
            if not batches:
                return

    def ack_all(self) -> None:
        while self.in_flight:
            done = self.schedule.acked(self.in_flight.pop(0))
            if done is not None:
                del self.outbox.batches[done.batch_id]

    def lose_session(self) -> None:
        self.schedule.lost()
        self.in_flight.clear()
        self.outbox.cursor = 0

    def kinds(self) -> list[tuple[MessageType, str | None]]:
        return [(s.message.kind, parse_topic(s.message.topic).device_id) for s in self.published]

    def values(self) -> list[int]:
        out: list[int] = []
        for send in self.published:
            if send.message.kind is MessageType.DDATA:
                out += [m.value for m in decode(send.message.payload).metrics if isinstance(m.value, int)]
        return out


def sample(device: str, value: int, ts: int, signal: str = "counter.good") -> Sample:
    return Sample(device, signal, value, Quality.GOOD, ts)


def make(tmp_path: Path, *, window: int = 500, share: float = 0.5, **kw: object) -> Shell:
    session = EdgeNodeSession(
        group_id="site1",
        edge_node_id="line1",
        devices=TAGS,
        bdseq=BdSeqStore(tmp_path / "bdseq"),
        **kw,  # type: ignore[arg-type]
    )
    session.prepare_connect()
    return Shell(PublishScheduler(session, window=window, replay_share=share, birth_wait_ms=WAIT))


def births_block() -> list[tuple[MessageType, str | None]]:
    return [(MessageType.NBIRTH, None)] + [(MessageType.DBIRTH, d) for d in DEVICES]


def assert_birth_order(kinds: list[tuple[MessageType, str | None]]) -> None:
    """Within each session: NBIRTH, a DBIRTH of every device, and only then any data."""
    first_data = next(i for i, (kind, _) in enumerate(kinds) if kind is MessageType.DDATA)
    nbirth = max(i for i, (kind, _) in enumerate(kinds[:first_data]) if kind is MessageType.NBIRTH)
    assert kinds[nbirth : nbirth + 1 + len(DEVICES)] == births_block()
    assert nbirth + len(DEVICES) < first_data


# -- birth order ----------------------------------------------------------------------------------


def test_payloads_dbirth_order_after_a_restart_with_a_backlog_data_waits_for_every_dbirth(tmp_path: Path) -> None:
    shell = make(tmp_path)
    for n, device in enumerate(DEVICES * 3):  # the backlog the previous run left behind
        shell.outbox.append([sample(device, n, T0 - 60_000)], T0 - 60_000, recovered=True)
    shell.run(shell.schedule.connected(T0))
    shell.replay(T0)
    assert shell.published == []  # no births yet: the PLCs are still connecting
    shell.run(shell.schedule.device_up("filler", T0 + 100))
    shell.store("filler", [100], T0 + 120)  # the filler's first values: published? not before every birth
    shell.replay(T0 + 120)
    assert shell.published == []
    shell.run(shell.schedule.device_up("capper", T0 + 150))
    shell.store("capper", [101], T0 + 160)
    shell.run(shell.schedule.device_down("labeler", T0 + 300))  # its PLC is down: nothing to wait for
    shell.replay(T0 + 300)
    assert shell.kinds()[: 1 + len(DEVICES)] == births_block()
    assert_birth_order(shell.kinds())
    assert sorted(shell.values()) == [*range(9), 100, 101]  # the backlog and the new values, once
    labeler_birth = decode(shell.published[3].message.payload)
    assert labeler_birth.metrics[0].value is None  # born without a value, its backlog replayed


def test_payloads_dbirth_order_births_go_when_the_wait_is_over_even_if_a_plc_is_still_connecting(
    tmp_path: Path,
) -> None:
    shell = make(tmp_path)
    shell.run(shell.schedule.connected(T0))
    shell.run(shell.schedule.device_up("filler", T0))
    shell.store("filler", [1], T0 + 10)
    assert shell.schedule.next_deadline_ms() == T0 + WAIT
    assert shell.run(shell.schedule.tick(T0 + WAIT - 1)).sends == []
    shell.run(shell.schedule.tick(T0 + WAIT))
    shell.replay(T0 + WAIT)
    assert shell.kinds() == [*births_block(), (MessageType.DDATA, "filler")]
    assert shell.schedule.next_deadline_ms() is None


def test_payloads_ddata_order_a_device_back_after_ddeath_is_born_before_its_data(tmp_path: Path) -> None:
    shell = make(tmp_path)
    shell.run(shell.schedule.connected(T0))
    for device in DEVICES:
        shell.run(shell.schedule.device_down(device, T0))
    shell.published.clear()
    shell.run(shell.schedule.device_up("capper", T0 + 10))
    assert shell.published == []  # born already (without values): no DBIRTH, no DDEATH
    shell.run(shell.schedule.device_down("capper", T0 + 20))
    assert shell.kinds() == [(MessageType.DDEATH, "capper")]
    shell.store("capper", [7], T0 + 30)  # read just before the loss: held, the device is dead
    shell.replay(T0 + 30)
    assert shell.kinds() == [(MessageType.DDEATH, "capper")]
    shell.run(shell.schedule.device_up("capper", T0 + 40))
    assert shell.schedule.next_deadline_ms() == T0 + 40 + WAIT  # its DBIRTH waits for first values
    shell.store("capper", [8], T0 + 50)
    shell.replay(T0 + 50)
    assert shell.kinds()[1:] == [(MessageType.DBIRTH, "capper")] + [(MessageType.DDATA, "capper")] * 2
    assert sorted(shell.values()) == [7, 8]  # the new value live, the held one replayed


def test_payloads_dbirth_order_a_rebirth_names_every_device_again(tmp_path: Path) -> None:
    shell = make(tmp_path)
    shell.run(shell.schedule.connected(T0))
    shell.run(shell.schedule.tick(T0 + WAIT))
    shell.run(shell.schedule.rebirth_requested(T0 + 5 * WAIT))
    assert shell.kinds() == births_block() * 2


def test_message_flow_edge_node_birth_publish_phid_wait_births_follow_the_host_online(tmp_path: Path) -> None:
    shell = make(tmp_path, primary_host_id="scada")
    shell.run(shell.schedule.connected(T0))
    assert shell.schedule.next_deadline_ms() is None
    assert shell.run(shell.schedule.tick(T0 + 10 * WAIT)).sends == []
    shell.run(shell.schedule.host_state(HostState(True, T0), T0 + 10 * WAIT))
    shell.run(shell.schedule.tick(T0 + 11 * WAIT))
    assert shell.kinds() == births_block()


def bdseq(send: Send) -> int:
    value = next(m.value for m in decode(send.message.payload).metrics if m.name == "bdSeq")
    assert isinstance(value, int), f"bdSeq is a {type(value).__name__}, not an integer"
    return value


def test_operational_behavior_primary_application_state_with_multiple_servers_walk(tmp_path: Path) -> None:
    shell = make(tmp_path, primary_host_id="scada")
    schedule = shell.schedule
    shell.run(schedule.connected(T0))
    shell.run(schedule.host_state(HostState(True, T0), T0))
    shell.run(schedule.tick(T0 + WAIT))
    born_with = bdseq(shell.published[0])
    shell.published.clear()
    walk = shell.run(schedule.host_state(HostState(False, T0 + 5000), T0 + 5000))
    # message-flow-edge-node-birth-publish-phid-offline: the NDEATH, then the DISCONNECT
    assert [s.message.kind for s in walk.sends] == [MessageType.NDEATH]
    assert walk.sends[0].message.qos == 1
    assert bdseq(walk.sends[0]) == born_with
    assert walk.disconnect
    shell.store("filler", [1], T0 + 5001)
    assert shell.values() == []  # nothing more on the session that ends
    shell.lose_session()
    schedule.session.prepare_connect()  # the next broker: a new session, bdSeq + 1
    shell.run(schedule.connected(T0 + 6000))
    again = shell.run(schedule.host_state(HostState(False, T0 + 5000), T0 + 6000))  # retained there
    assert (again.sends, again.disconnect) == ([], False)  # already known: wait for the host here
    shell.run(schedule.tick(T0 + 6000 + WAIT))
    assert [s.message.kind for s in shell.published] == [MessageType.NDEATH]
    shell.run(schedule.host_state(HostState(True, T0 + 7000), T0 + 7000))
    shell.run(schedule.tick(T0 + 7000 + WAIT))
    shell.replay(T0 + 7000 + WAIT)
    assert shell.kinds()[1:] == [*births_block(), (MessageType.DDATA, "filler")]
    assert bdseq(shell.published[1]) == born_with + 1


def test_a_primary_host_offline_holds_data_on_the_session_when_asked_to(tmp_path: Path) -> None:
    shell = make(tmp_path, primary_host_id="scada")
    shell.schedule.host_offline = "hold"
    shell.run(shell.schedule.connected(T0))
    shell.run(shell.schedule.host_state(HostState(True, T0), T0))
    shell.run(shell.schedule.tick(T0 + WAIT))
    held = shell.run(shell.schedule.host_state(HostState(False, T0 + 5000), T0 + 5000))
    assert (held.sends, held.disconnect) == ([], False)
    shell.store("filler", [1], T0 + 5001)
    shell.replay(T0 + 5001)
    assert shell.values() == []
    shell.run(shell.schedule.host_state(HostState(True, T0 + 6000), T0 + 6000))
    shell.run(shell.schedule.tick(T0 + 6000 + WAIT))
    shell.replay(T0 + 6000 + WAIT)
    assert shell.kinds() == [*births_block(), *births_block(), (MessageType.DDATA, "filler")]
    assert bdseq(shell.published[0]) == bdseq(shell.published[4])  # the same session


# -- lanes, window, batching ----------------------------------------------------------------------


def born(tmp_path: Path, **kw: object) -> Shell:
    shell = make(tmp_path, **kw)  # type: ignore[arg-type]
    shell.run(shell.schedule.connected(T0))
    for device in DEVICES:
        shell.run(shell.schedule.device_up(device, T0))
        shell.store(device, [0], T0)
    shell.replay(T0)
    while shell.in_flight:
        shell.ack_all()
        shell.replay(T0)
    shell.published.clear()
    return shell


def test_without_a_backlog_a_batch_is_published_from_memory_and_claimed(tmp_path: Path) -> None:
    shell = born(tmp_path)
    assert shell.schedule.idle("filler")
    batch = shell.store("filler", [1, 2], T0 + 10)
    assert shell.kinds() == [(MessageType.DDATA, "filler")]
    assert shell.outbox.cursor == batch.id  # claimed: the outbox will not hand it out again
    assert not shell.schedule.idle("filler")  # in flight: the next samples accumulate
    assert shell.schedule.idle("capper")
    shell.ack_all()
    assert shell.schedule.idle("filler")
    assert batch.id not in shell.outbox.batches


def test_live_data_goes_ahead_of_a_replaying_backlog_within_its_share_of_the_window(tmp_path: Path) -> None:
    shell = born(tmp_path, window=10, share=0.5)
    shell.lose_session()
    for n in range(20):  # stored while the broker was away
        shell.store("filler", [100 + n], T0 + 100)
    shell.run(shell.schedule.connected(T0 + 1000))
    shell.run(shell.schedule.tick(T0 + 1000 + WAIT))
    shell.replay(T0 + 3000)
    assert shell.values() == list(range(100, 105))  # the replay lane keeps to 5 of the 10
    shell.store("capper", [1], T0 + 3001)  # live: at once, ahead of the 15 still waiting
    assert shell.values()[-1] == 1
    replayed = next(s for s in shell.published if s.message.kind is MessageType.DDATA)
    assert all(m.is_historical for m in decode(replayed.message.payload).metrics)
    while shell.in_flight:
        shell.ack_all()
        shell.replay(T0 + 4000)
    assert sorted(shell.values()) == [1, *range(100, 120)]  # the live one not again from the replay
    shell.replay(T0 + 4000)
    shell.store("capper", [2], T0 + 4001)
    assert shell.outbox.cursor == max(shell.outbox.batches)  # the backlog is over: fresh lane again


def test_a_live_batch_delivered_but_not_yet_removed_is_not_published_again(tmp_path: Path) -> None:
    shell = born(tmp_path)
    shell.lose_session()
    shell.store("filler", [100], T0 + 100)  # a backlog
    shell.run(shell.schedule.connected(T0 + 1000))
    shell.run(shell.schedule.tick(T0 + 1000 + WAIT))
    live = shell.store("capper", [1], T0 + 3000)  # live, ahead of the backlog
    (send,) = [s for s in shell.in_flight if s.batch_id == live.id]
    shell.in_flight.remove(send)
    assert shell.schedule.acked(send) is not None  # delivered; the outbox removes it a moment later
    shell.replay(T0 + 3001)  # meanwhile the outbox hands it out with the backlog
    assert sorted(shell.values()) == [1, 100]  # once


def test_a_full_window_holds_new_batches_in_the_outbox(tmp_path: Path) -> None:
    shell = born(tmp_path, window=2)
    shell.store("filler", [1], T0 + 1)
    shell.store("capper", [2], T0 + 1)
    assert not shell.schedule.idle("labeler")  # nothing of its own in flight, but the window is full
    shell.store("labeler", [3], T0 + 1)
    assert shell.values() == [1, 2]
    shell.ack_all()
    shell.replay(T0 + 2)
    assert shell.values() == [1, 2, 3]


# -- what no longer fits the configuration --------------------------------------------------------


def test_replayed_samples_that_no_longer_fit_are_set_aside_and_the_rest_published(tmp_path: Path) -> None:
    shell = make(tmp_path)
    gone = shell.outbox.append([sample("mixer", 1, T0)], T0, recovered=True)
    mixed = shell.outbox.append(
        [sample("filler", 2, T0), sample("filler", 3, T0, signal="process.removed")], T0, recovered=True
    )
    shell.run(shell.schedule.connected(T0))
    shell.run(shell.schedule.tick(T0 + WAIT))
    shell.replay(T0 + WAIT)
    assert shell.values() == [2]
    assert shell.outbox.set_aside == [(gone.id, Rejected.UNKNOWN_DEVICE, 1), (mixed.id, Rejected.UNKNOWN_SIGNAL, 1)]
    assert gone.id not in shell.outbox.batches  # nothing of it was published: it left at once
    shell.ack_all()
    assert mixed.id not in shell.outbox.batches  # the rest was published; acknowledged, it left


def test_a_batch_from_a_lost_session_is_not_delivered_by_a_late_acknowledgement(tmp_path: Path) -> None:
    shell = born(tmp_path)
    shell.store("filler", [1], T0 + 1)
    (send,) = shell.in_flight
    shell.lose_session()
    assert shell.schedule.acked(send) is None
    assert shell.schedule.in_flight == 0


@pytest.mark.parametrize("window", [0, -1])
def test_the_window_must_be_positive(tmp_path: Path, window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        make(tmp_path, window=window)
