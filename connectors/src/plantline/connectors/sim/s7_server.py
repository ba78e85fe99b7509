"""A python-snap7 3.x S7 server that serves a simulated machine: `S7MachineServer`.

Every signal of the `MachineModel` lives at a fixed place in one data block (DB10 by default,
1024 bytes), written from the model every `update_interval_s`. The layout is data,
`S7_LAYOUT`, and `layout_tags(db)` turns it into the `tags:` of a connector config:

    byte 0   DBX0.0 state.run  .1 state.idle  .2 state.blocked  .3 state.starved
             .4 state.planned_stop  .5 fault.active                              BOOL
    DBW2     fault.code            INT
    DBD4     counter.good          DWORD (UDInt counter)
    DBD8     counter.reject        DWORD
    DBD12    counter.total         DINT
    DBD16    cycle.time            REAL, s
    DBD20    cycle.ideal           REAL, s
    DBD24    rate.actual           REAL, 1/min
    DBW28    process.temperature   INT, 0.01 degC per count (scale 0.01)
    DBW30    process.fill_level    WORD, 0.01 % per count (scale 0.01)
    DBL32    process.pressure      LREAL, bar
    bytes 40..1023                 spare: left to tests (`poke`)

The process image mirrors some of it, as wiring would (`S7_IO_LAYOUT`): the stack-light outputs
QX0.0..QX0.4 are the five state bits, the input IX0.0 is the fault relay (fault.active), and the
flags MW10 and MD12 hold fault.code and counter.total. M, I and Q are 256 bytes each.

For tests: `write(signal, value)` holds a signal at a value, `release(signal)` gives it back
to the model, and `poke(area, start, data)` writes raw bytes anywhere (the model only writes its
own slots). `stop()` and `start()` again on the same port keep the memory and the model, as a
PLC keeps its retentive data across a restart.

An oracle for the S7 source. The simulator encodes values with its own small big-endian encoder
(`encode_slot`), not with the S7 source's decoder, and states its layout as data: the layers
keep `sim` and `sources` apart, and tests that read through the source then check two
independent implementations against each other. Only the hosting (model clock, update thread,
command line) is shared with the other simulators, in `hosting`.

Binding. The server listens on `host` (127.0.0.1 by default) with `start_to`; python-snap7's
`start(port)` would bind every interface. python-snap7 3.x sets SO_REUSEPORT on its listening
socket, so a second server on a port already served would start silently and share the
connections: `start()` first binds the port itself without SO_REUSEPORT and refuses a port that
something already listens on.

Run it alone with `python -m plantline.connectors.sim.s7_server --port 1102 --seed 1`
(`--layout` prints the config tags as JSON and exits).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from snap7.server import Server
from snap7.type import SrvArea

from plantline.connectors.samples import Value
from plantline.connectors.sim import hosting
from plantline.connectors.sim.hosting import HostOptions, ThreadedMachineHost, config_tag

_log = logging.getLogger(__name__)

DEFAULT_DB = 10
DB_SIZE = 1024
IO_SIZE = 256


class Area(enum.Enum):
    """The memory areas the simulator serves, with their S7 address prefixes."""

    DB = "DB"
    M = "M"
    I = "I"  # noqa: E741 -- the area's own name
    Q = "Q"


# datatype -> (size letter, struct format; None for a bit)
_FORMATS: Mapping[str, tuple[str, str | None]] = {
    "bool": ("X", None),
    "uint8": ("B", ">B"),
    "int8": ("B", ">b"),
    "int16": ("W", ">h"),
    "uint16": ("W", ">H"),
    "int32": ("D", ">i"),
    "uint32": ("D", ">I"),
    "float": ("D", ">f"),
    "double": ("L", ">d"),
}


@dataclass(frozen=True)
class S7Slot:
    """Where one signal lives: area, byte (and bit), its config datatype and scale."""

    signal: str
    area: Area
    byte: int
    datatype: str
    bit: int | None = None
    scale: float = 1.0
    unit: str | None = None

    def address(self, db: int) -> str:
        """The S7 address of the slot (`DB10.DBW2`, `QX0.0`), in data block `db` for the DB area."""
        letter = _FORMATS[self.datatype][0]
        prefix = f"DB{db}.DB" if self.area is Area.DB else self.area.value
        return f"{prefix}{letter}{self.byte}" + (f".{self.bit}" if self.bit is not None else "")


# The five state bits, in the order of their bits in DB byte 0 and of the stack-light outputs QX0.x.
_STATE_BITS = ("state.run", "state.idle", "state.blocked", "state.starved", "state.planned_stop")
S7_LAYOUT: tuple[S7Slot, ...] = (
    *(S7Slot(signal, Area.DB, 0, "bool", bit=bit) for bit, signal in enumerate(_STATE_BITS)),
    S7Slot("fault.active", Area.DB, 0, "bool", bit=5),
    S7Slot("fault.code", Area.DB, 2, "int16"),
    S7Slot("counter.good", Area.DB, 4, "uint32"),
    S7Slot("counter.reject", Area.DB, 8, "uint32"),
    S7Slot("counter.total", Area.DB, 12, "int32"),
    S7Slot("cycle.time", Area.DB, 16, "float", unit="s"),
    S7Slot("cycle.ideal", Area.DB, 20, "float", unit="s"),
    S7Slot("rate.actual", Area.DB, 24, "float", unit="1/min"),
    S7Slot("process.temperature", Area.DB, 28, "int16", scale=0.01, unit="degC"),
    S7Slot("process.fill_level", Area.DB, 30, "uint16", scale=0.01, unit="%"),
    S7Slot("process.pressure", Area.DB, 32, "double", unit="bar"),
)
S7_IO_LAYOUT: tuple[S7Slot, ...] = (
    *(S7Slot(signal, Area.Q, 0, "bool", bit=bit) for bit, signal in enumerate(_STATE_BITS)),
    S7Slot("fault.active", Area.I, 0, "bool", bit=0),
    S7Slot("fault.code", Area.M, 10, "int16"),
    S7Slot("counter.total", Area.M, 12, "int32"),
)
_SRV_AREAS: Mapping[Area, SrvArea] = {Area.DB: SrvArea.DB, Area.M: SrvArea.MK, Area.I: SrvArea.PE, Area.Q: SrvArea.PA}


def layout_tags(db: int = DEFAULT_DB, layout: Sequence[S7Slot] = S7_LAYOUT) -> list[dict[str, Any]]:
    """Return the `tags:` of a connector config that reads the simulator's data block `db`."""
    return [
        config_tag(slot.signal, slot.address(db), slot.datatype, scale=slot.scale, unit=slot.unit) for slot in layout
    ]


def raw_value(slot: S7Slot, value: Value) -> Value:
    """Return what the PLC stores for `value` of `slot`: the engineering value divided by its scale."""
    if slot.scale == 1.0 or isinstance(value, bool | str):
        return value
    return round(float(value) / slot.scale)


def encode_slot(memory: bytearray, slot: S7Slot, value: Value) -> None:
    """Write the raw value of `slot` into its area's `memory`, big-endian (bits in place)."""
    fmt = _FORMATS[slot.datatype][1]
    if fmt is None:
        mask = 1 << (slot.bit or 0)
        memory[slot.byte] = memory[slot.byte] | mask if value else memory[slot.byte] & ~mask
        return
    raw = raw_value(slot, value)
    number = float(raw) if fmt in (">f", ">d") else int(raw)
    struct.pack_into(fmt, memory, slot.byte, number)


def encode_machine(
    values: Mapping[str, Value], *, size: int = DB_SIZE, layout: Sequence[S7Slot] = S7_LAYOUT
) -> bytearray:
    """Return the bytes of the data block holding `values` at the places of `layout` (pure)."""
    block = bytearray(size)
    for slot in layout:
        if slot.area is Area.DB and slot.signal in values:
            encode_slot(block, slot, values[slot.signal])
    return block


class S7MachineServer(ThreadedMachineHost):
    """A simulated machine served by a python-snap7 3.x server; start/stop or use as `with`."""

    def __init__(
        self, port: int, *, db: int = DEFAULT_DB, db_size: int = DB_SIZE, **options: Unpack[HostOptions]
    ) -> None:
        super().__init__(port, **options)
        if not 1 <= db <= 65535:
            raise ValueError(f"db must be within 1..65535, got {db!r}")
        if db_size < 40:
            raise ValueError(f"db_size must be >= 40 bytes (the layout's), got {db_size!r}")
        self.db = db
        self.addressing = f"DB{db}"  # how its signals are addressed, for the ready line
        self._memory: dict[Area, bytearray] = {
            Area.DB: bytearray(db_size),
            Area.M: bytearray(IO_SIZE),
            Area.I: bytearray(IO_SIZE),
            Area.Q: bytearray(IO_SIZE),
        }
        self._slots = (*S7_LAYOUT, *S7_IO_LAYOUT)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The endpoint an S7 source connects to."""
        return f"s7://{self.host}:{self.port}?rack=0&slot=1"

    def tags(self) -> list[dict[str, Any]]:
        """Return the config tags reading this server's data block (see `layout_tags`)."""
        return layout_tags(self.db)

    def start(self) -> None:
        """Write the model's current values and listen; raises OSError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        hosting.ensure_port_free(self.host, self.port)
        server = Server(log=False)
        for area, memory in self._memory.items():
            server.register_area(_SRV_AREAS[area], self.db if area is Area.DB else 0, memory)
        self._tick()
        server.start_to(self.host, self.port)
        self._server = server
        self._start_updates("s7")
        _log.info("simulated %s serving on %s (DB%d)", self.machine, self.url, self.db)

    def stop(self) -> None:
        """Stop updating and listening and drop every client connection; memory and model are kept."""
        self._halt_updates()
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()

    def poke(self, area: Area, start: int, data: bytes) -> None:
        """Write raw bytes into an area from `start` (e.g. the DB's spare bytes from 40 on)."""
        memory = self._memory[area]
        if start < 0 or start + len(data) > len(memory):
            raise ValueError(f"{area.value}: bytes {start}..{start + len(data) - 1} are outside 0..{len(memory) - 1}")
        with self._lock, self._locked(area):
            memory[start : start + len(data)] = data

    def peek(self, area: Area, start: int, size: int) -> bytes:
        """Return `size` bytes of an area's memory from `start`."""
        with self._lock, self._locked(area):
            return bytes(self._memory[area][start : start + size])

    # -- internals --------------------------------------------------------------------------------

    def _show(self, values: Mapping[str, Value]) -> None:
        for slot in self._slots:
            if slot.signal in values:
                with self._locked(slot.area):
                    encode_slot(self._memory[slot.area], slot, values[slot.signal])

    @contextlib.contextmanager
    def _locked(self, area: Area) -> Iterator[None]:
        """Hold the server's own lock of `area`, so a client never reads a half-written value."""
        server = self._server
        if server is None:
            yield
            return
        index = self.db if area is Area.DB else 0
        server.lock_area(_SRV_AREAS[area], index)
        try:
            yield
        finally:
            server.unlock_area(_SRV_AREAS[area], index)


# -- standalone ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until SIGINT or SIGTERM (or print its config tags with --layout)."""
    parser = hosting.simulator_parser(
        "s7_server", "S7 (python-snap7 3.x server)", "--port 1102 --seed 1 --db 10", "name used in messages"
    )
    parser.add_argument("--db", type=int, default=DEFAULT_DB, help="the data block number (default: 10)")
    hosting.serve_until_signalled(
        parser,
        argv,
        lambda args: S7MachineServer(args.port, db=args.db, **hosting.host_options(args)),
        layout=lambda args: layout_tags(args.db),
    )


if __name__ == "__main__":
    main()
