"""The publish schedule of a connector, sans I/O: what goes to the broker next, and in which order.

The runtime (its asyncio shell) tells the schedule what happened -- an MQTT session opened or was
lost, the primary host's STATE, a device's PLC connected or was lost, a batch was stored in the
outbox, the outbox handed out older batches, a PUBACK arrived, time passed -- and the schedule
answers with a `Plan`: the messages to publish, in order, and the samples to set aside. It takes
`now_ms` where time matters and does no I/O; the shell does the publishing, the outbox calls and
the timers.

What it decides:

- Birth order (payloads-dbirth-order): the NBIRTH, then a DBIRTH for every configured device,
  before any data of the session. The births wait, at most `birth_wait_ms`, until every PLC that
  is still connecting has delivered its first values, so that they carry values instead of
  nulls; a device whose PLC is down is born without values (see `plantline.connectors.session`).
  A device whose PLC comes back later in the session gets its DBIRTH once its first values are
  read (at most `birth_wait_ms` after it connected). Data never overtakes a birth: a batch of a
  device that is not born stays in the outbox, or waits in memory when the outbox already handed
  it out, until the device's DBIRTH has gone out.
- Lanes: a stored batch is published at once from memory (the fresh lane) when nothing older
  waits in the outbox. While older batches are replayed, new ones still go at once (the live
  lane), and the replay may use only `replay_share` of the in-flight window, so current values
  are never stuck behind hours of history.
- The window: at most `window` data messages wait for their PUBACK (a soft limit: every batch
  the outbox handed out is published).
- Batching (`idle`): a device's buffered samples are flushed at once when nothing of the device
  is in flight; while acknowledgements are outstanding they accumulate into larger batches.
- The primary host going offline: by default the session ends (NDEATH, DISCONNECT) and the
  next broker of the list is tried (operational-behavior-primary-application-state-with-
  multiple-servers-walk); optionally the session is kept and data held (`host_offline="hold"`).
- What no longer fits the configuration (a removed device or signal, a retyped value) is set
  aside (`SetAside`) instead of published; the rest of its batch goes out.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Literal, Protocol

from plantline.connectors.samples import Sample
from plantline.connectors.session import EdgeNodeSession, HostNews, Outgoing, Rejected
from plantline.connectors.sparkplug import HostState

DEFAULT_WINDOW = 500  # data messages awaiting PUBACK
DEFAULT_BIRTH_WAIT_MS = 2000  # how long births wait for a connecting PLC's first values

_source_ts = attrgetter("source_ts_ms")


class StoredBatch(Protocol):
    """A batch as the outbox stores it (`plantline.connectors.outbox.Batch`)."""

    @property
    def id(self) -> int: ...

    @property
    def samples(self) -> tuple[Sample, ...]: ...

    @property
    def appended_at(self) -> float: ...

    @property
    def recovered(self) -> bool: ...


class DeviceLink(enum.Enum):
    """What the schedule knows of a device's PLC connection."""

    UNKNOWN = "unknown"  # not connected yet, nor known to be down
    UP = "up"
    DOWN = "down"


class Lane(enum.Enum):
    FRESH = "fresh"  # stored just now, nothing older waits: claimed in the outbox and published
    LIVE = "live"  # stored just now while a backlog replays: published ahead of it
    REPLAY = "replay"  # handed out by the outbox


@dataclass(frozen=True, slots=True, eq=False)
class Send:
    """One message to publish; `batch_id` is the outbox batch a data message carries."""

    message: Outgoing
    batch_id: int | None = None


@dataclass(frozen=True, slots=True)
class SetAside:
    """Samples of a stored batch that no longer fit the configuration, by reason.

    `whole`: none of the batch's samples was published, so the stored batch itself goes.
    """

    batch_id: int
    rejected: dict[Rejected, tuple[Sample, ...]]
    whole: bool


@dataclass(slots=True)
class Plan:
    """What to do now, in order: set aside `set_aside`, publish `sends`.

    `claim`: the id of a batch published on the fresh lane; the shell marks it handed out in the
    outbox (nothing older waits there), so the outbox does not hand it out again.
    """

    sends: list[Send] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    claim: int | None = None
    disconnect: bool = False  # after `sends` (the NDEATH): end the MQTT session, go to the next broker

    def extend(self, other: Plan) -> None:
        self.sends += other.sends
        self.set_aside += other.set_aside
        if other.claim is not None:
            self.claim = other.claim
        self.disconnect = self.disconnect or other.disconnect


@dataclass(frozen=True, slots=True)
class Delivered:
    """A batch every message of which the broker acknowledged: it may leave the outbox."""

    batch_id: int
    oldest_ts_ms: int  # its oldest sample's source timestamp


@dataclass(slots=True)
class _Device:
    link: DeviceLink = DeviceLink.UNKNOWN
    has_values: bool = False  # values were read since the PLC connected
    birth_due_ms: int | None = None  # its DBIRTH waits for its first values until then
    in_flight: int = 0  # its fresh and live data messages awaiting PUBACK
    deferred: list[StoredBatch] = field(default_factory=list)  # handed out, waiting for its DBIRTH


@dataclass(slots=True)
class _Flight:
    messages: int  # still awaiting PUBACK
    lane: Lane
    oldest_ts_ms: int


class PublishScheduler:
    """The publish schedule of one edge node (see the module's docstring)."""

    def __init__(
        self,
        session: EdgeNodeSession,
        *,
        window: int = DEFAULT_WINDOW,
        replay_share: float = 0.5,
        birth_wait_ms: int = DEFAULT_BIRTH_WAIT_MS,
        host_offline: Literal["disconnect", "hold"] = "disconnect",
    ) -> None:
        if window < 1 or not 0 < replay_share <= 1 or birth_wait_ms < 0:
            raise ValueError("window >= 1, 0 < replay_share <= 1 and birth_wait_ms >= 0 are required")
        self.session = session
        self.window, self.replay_share = window, replay_share
        self.birth_wait_ms, self.host_offline = birth_wait_ms, host_offline
        self._devices = {device_id: _Device() for device_id in session.devices}
        self._flights: dict[int, _Flight] = {}  # by batch id
        self._in_flight = 0  # data messages awaiting PUBACK
        self._replay_in_flight = 0  # of which on the replay lane
        self._live: set[int] = set()  # published on the live lane; the outbox may hand them out again
        self._backlog = True  # the outbox may hold batches it has not handed out
        self._session_start_s = 0.0  # batches stored before this are historical
        self._births_due_ms: int | None = None  # the births wait for first values until then

    # -- the MQTT session ---------------------------------------------------------------------------

    def connected(self, now_ms: int) -> Plan:
        """An MQTT session opened (bdSeq advanced, its NDEATH registered as the Will)."""
        self.session.on_session_open()
        self._session_start_s = now_ms / 1000
        self._backlog = True
        return self._births_allowed(now_ms)

    def lost(self) -> None:
        """The MQTT session ended: what was in flight comes back from the outbox (requeued)."""
        self.session.on_disconnected()
        self._flights.clear()
        self._live.clear()
        self._in_flight = self._replay_in_flight = 0
        for device in self._devices.values():
            device.in_flight = 0
            device.deferred.clear()
            device.birth_due_ms = None
        self._backlog = True
        self._births_due_ms = None

    def host_state(self, state: HostState, now_ms: int) -> Plan:
        """The primary host's STATE: births may go once it is online; data is held while it is not.

        When it goes offline (a STATE newer than any seen), and `host_offline` is "disconnect",
        the plan ends the MQTT session: the NDEATH, then `disconnect` (to the next broker; births
        there wait for the host's online STATE). With "hold" the session stays, data waits, and
        the births are published again (same bdSeq) once the host is back.
        """
        allowed = self.session.births_allowed
        news = self.session.on_host_state(state)
        if news is HostNews.ONLINE and not allowed and self.session.births_allowed:
            return self._births_allowed(now_ms)
        if news is HostNews.WENT_OFFLINE and self.host_offline == "disconnect":
            plan = Plan([Send(m) for m in self.session.shutdown(now_ms)])
            plan.disconnect = bool(plan.sends)
            return plan
        return Plan()

    def rebirth_requested(self, now_ms: int) -> Plan:
        """NCMD Node Control/Rebirth (debounced by the session)."""
        return self._after_births(self.session.on_rebirth_request(now_ms), now_ms)

    def shutdown(self, now_ms: int) -> list[Outgoing]:
        """Return the NDEATH a clean stop publishes before its DISCONNECT."""
        return self.session.shutdown(now_ms)

    def tick(self, now_ms: int) -> Plan:
        """Time passed: births, DBIRTHs and a deferred rebirth whose time has come."""
        plan = self._maybe_births(now_ms)
        for device_id, device in self._devices.items():
            if device.birth_due_ms is not None and now_ms >= device.birth_due_ms:
                plan.extend(self._device_birth(device_id, now_ms))
        plan.extend(self._after_births(self.session.due_rebirth(now_ms), now_ms))
        return plan

    def next_deadline_ms(self) -> int | None:
        """When `tick` has something to do next (None: nothing is waiting for time)."""
        due = [d.birth_due_ms for d in self._devices.values() if d.birth_due_ms is not None]
        if self._births_due_ms is not None and self.session.births_allowed:
            due.append(self._births_due_ms)
        if self.session.rebirth_due_ms is not None:
            due.append(self.session.rebirth_due_ms)
        return min(due, default=None)

    # -- devices ------------------------------------------------------------------------------------

    def device_up(self, device_id: str, now_ms: int) -> Plan:
        """The device's PLC connected: its DBIRTH follows its first values (at most birth_wait_ms)."""
        device = self._devices[device_id]
        device.link = DeviceLink.UP
        self.session.set_reachable(device_id, True)
        if self.session.can_publish_data and not self.session.device_is_born(device_id):
            device.birth_due_ms = now_ms + self.birth_wait_ms
            if device.has_values:
                return self._device_birth(device_id, now_ms)
        return self._maybe_births(now_ms)

    def device_down(self, device_id: str, now_ms: int) -> Plan:
        """The device's PLC is lost: its DDEATH (when it is born)."""
        device = self._devices[device_id]
        device.link = DeviceLink.DOWN
        device.has_values = False
        device.birth_due_ms = None
        plan = Plan([Send(m) for m in self.session.device_offline(device_id, now_ms)])
        plan.extend(self._maybe_births(now_ms))  # a PLC known to be down no longer holds them back
        return plan

    # -- data ---------------------------------------------------------------------------------------

    def idle(self, device_id: str) -> bool:
        """Whether the device's buffered samples should be stored and published now.

        True when they could be published at once and nothing of the device is in flight;
        otherwise they accumulate (the shell bounds how many and for how long).
        """
        device = self._devices.get(device_id)
        return (
            device is not None
            and device.in_flight == 0
            and not device.deferred
            and self._in_flight < self.window
            and self.session.device_is_born(device_id)
        )

    def stored(self, batch: StoredBatch, now_ms: int, *, readings: bool = True) -> Plan:
        """A batch of one device was stored in the outbox just now: publish it if it may go.

        `readings`: the samples were read from the PLC (not computed): with its PLC up, the
        device has values now.
        """
        device_id = batch.samples[0].device
        device = self._devices[device_id]
        self.session.remember(batch.samples, device_id)
        plan = Plan()
        if readings and device.link is DeviceLink.UP and not device.has_values:
            device.has_values = True
            plan.extend(self._values_arrived(device_id, now_ms))
        if device.deferred or self._in_flight >= self.window or not self.session.device_is_born(device_id):
            self._backlog = True  # it stays in the outbox; the replay lane hands it out
            return plan
        if self._backlog:
            if self._publish(batch, now_ms, Lane.LIVE, plan):
                self._live.add(batch.id)
        else:
            plan.claim = batch.id
            self._publish(batch, now_ms, Lane.FRESH, plan)
        return plan

    def unclaimed(self) -> None:
        """The outbox refused a claim: something older waits there after all."""
        self._backlog = True

    def replay_room(self) -> int:
        """How many more messages the replay lane may have in flight now (0: none)."""
        if not self._backlog or not self.session.can_publish_data:
            return 0
        room = self.window - self._in_flight
        share = int(self.window * self.replay_share) - self._replay_in_flight
        return max(0, min(room, share))

    def replayed(self, batches: Sequence[StoredBatch], now_ms: int) -> Plan:
        """The outbox handed out these batches (oldest first): publish, defer or set them aside.

        No batch means the outbox holds nothing more to hand out: the backlog is over.
        """
        plan = Plan()
        if not batches:
            self._backlog = False
            self._live.clear()  # each was handed out again or has left the outbox
            return plan
        for batch in batches:
            if batch.id in self._live:
                self._live.discard(batch.id)  # published on the live lane already
                continue
            waiting = self._unborn_device(batch)
            if waiting is not None:
                waiting.deferred.append(batch)
                continue
            self._publish(batch, now_ms, Lane.REPLAY, plan)
        return plan

    def acked(self, send: Send) -> Delivered | None:
        """The broker acknowledged a data message; the batch is delivered once all of it is."""
        batch_id = send.batch_id
        flight = self._flights.get(batch_id) if batch_id is not None else None
        if flight is None or batch_id is None:
            return None
        self._in_flight -= 1
        if flight.lane is Lane.REPLAY:
            self._replay_in_flight -= 1
        else:
            device = self._devices.get(send.message.device_id or "")
            if device is not None:
                device.in_flight -= 1
        flight.messages -= 1
        if flight.messages:
            return None
        # A live batch stays in `_live`: until the outbox removed it, it may be handed out again.
        del self._flights[batch_id]
        return Delivered(batch_id, flight.oldest_ts_ms)

    @property
    def in_flight(self) -> int:
        """Data messages awaiting PUBACK."""
        return self._in_flight

    # -- internals ----------------------------------------------------------------------------------

    def _births_allowed(self, now_ms: int) -> Plan:
        """Nothing holds the births back any more but the devices' first values."""
        self._births_due_ms = now_ms + self.birth_wait_ms
        return self._maybe_births(now_ms)

    def _maybe_births(self, now_ms: int) -> Plan:
        if self._births_due_ms is None or not self.session.births_allowed:
            return Plan()
        if now_ms < self._births_due_ms and not all(map(_settled, self._devices.values())):
            return Plan()
        self._births_due_ms = None
        return self._after_births(self.session.births(now_ms), now_ms)

    def _after_births(self, births: list[Outgoing], now_ms: int) -> Plan:
        """Births went out: publish what waited for them, after them."""
        plan = Plan([Send(m) for m in births])
        if births:
            for device_id in self._devices:
                plan.extend(self._born(device_id, now_ms))
        return plan

    def _values_arrived(self, device_id: str, now_ms: int) -> Plan:
        if self._devices[device_id].birth_due_ms is not None:
            return self._device_birth(device_id, now_ms)
        return self._maybe_births(now_ms)

    def _device_birth(self, device_id: str, now_ms: int) -> Plan:
        self._devices[device_id].birth_due_ms = None
        plan = Plan([Send(m) for m in self.session.device_online(device_id, now_ms)])
        plan.extend(self._born(device_id, now_ms))
        return plan

    def _born(self, device_id: str, now_ms: int) -> Plan:
        """The device was just born: its deferred batches go now, right after the DBIRTH."""
        device = self._devices[device_id]
        device.birth_due_ms = None
        plan = Plan()
        if device.deferred and self.session.device_is_born(device_id):
            waiting, device.deferred = device.deferred, []
            for batch in waiting:
                self._publish(batch, now_ms, Lane.REPLAY, plan)
        return plan

    def _unborn_device(self, batch: StoredBatch) -> _Device | None:
        """Return the first configured device of the batch that is not born now, if any."""
        samples = batch.samples
        first = samples[0].device
        names = {first} if first == samples[-1].device else {s.device for s in samples}
        for name in names:
            device = self._devices.get(name)
            if device is not None and not self.session.device_is_born(name):
                return device
        return None

    def _publish(self, batch: StoredBatch, now_ms: int, lane: Lane, plan: Plan) -> bool:
        """Add the batch's data messages to the plan; return whether any message goes out."""
        historical = lane is Lane.REPLAY and (batch.recovered or batch.appended_at < self._session_start_s)
        made = self.session.data(batch.samples, now_ms, historical=historical)
        if made.rejected:
            rejected = {reason: tuple(samples) for reason, samples in made.rejected.items()}
            plan.set_aside.append(SetAside(batch.id, rejected, whole=not made.messages))
        if not made.messages:
            return False
        self._flights[batch.id] = _Flight(len(made.messages), lane, min(map(_source_ts, batch.samples)))
        self._in_flight += len(made.messages)
        for message in made.messages:
            plan.sends.append(Send(message, batch.id))
            if lane is Lane.REPLAY:
                self._replay_in_flight += 1
            else:
                device = self._devices.get(message.device_id or "")
                if device is not None:
                    device.in_flight += 1
        return True


def _settled(device: _Device) -> bool:
    """Whether births need not wait for the device: its PLC is down, or its first values are in."""
    return device.link is DeviceLink.DOWN or (device.link is DeviceLink.UP and device.has_values)
