"""cpppo's EtherNet/IP controller simulator, fed with a simulated machine: `CipMachineServer`.

cpppo (`python -m cpppo.server.enip`, a test and simulation dependency, GPLv3: it runs as a
separate program and is never imported) serves the tags; this module starts it on 127.0.0.1,
and a thread steps the `MachineModel` every `update_interval_s` and writes what changed into
the simulator as a client would, with pycomm3 (the simulator has no other way in).

Tag naming: `<Machine>_<signal with dots as underscores>`, all controller-scoped, e.g.

    Filler_state_run  Filler_state_idle  Filler_state_blocked  Filler_state_starved
    Filler_state_planned_stop  Filler_fault_active                       BOOL
    Filler_fault_code           INT
    Filler_counter_good         DINT        Filler_counter_reject  DINT
    Filler_counter_total        LINT
    Filler_cycle_time           REAL, s     Filler_cycle_ideal     REAL, s
    Filler_rate_actual          REAL, 1/min
    Filler_process_temperature  REAL, degC
    Filler_process_pressure     LREAL, bar
    Filler_process_fill_level   INT, 0.1 % per count (scale 0.1)
    Filler_counters             DINT[3]: good, reject, total, wrapping at 2**31 (for element reads)
    Filler_heartbeat            DINT: counts the simulator's writes

The layout is data (`CIP_LAYOUT`), and `layout_tags(machine)` turns it into the `tags:` of a
connector config. Tests may add tags of their own (`extra_tags={"Spare": "SINT", ...}`, in
cpppo's `TYPE` or `TYPE[n]` form) and set them with `poke`, or `poke_string` for a STRING.

Writes. pycomm3 1.2.16 sends a single-tag write twice in one packet, which cpppo rejects;
writes of several tags work. So every write of this simulator carries the heartbeat tag as well
and is never a single-tag write. STRING writes fail in pycomm3 with definitions of our own
(it encodes the CIP STRING only from an uploaded template), so `poke_string` runs cpppo's own
client once, as a separate program. The writer's pycomm3 tag definitions are the simulator's
own (it is the controller and knows its tags, like a controller's tag database); the connector's
come from the config, in `sources.cip.logix_tag_definitions`.

`kill()` ends the simulator with SIGKILL (a controller that dies); `start()` again brings it
back on the same port, and writes the model's full state before it returns.

Run it alone with `python -m plantline.connectors.sim.cip_server --port 44818 --seed 1`
(`--layout` prints the config tags as JSON and exits).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from pycomm3 import LogixDriver
from pycomm3.cip import Array
from pycomm3.cip.data_types import DataTypes

from plantline.connectors.samples import Value
from plantline.connectors.sim.machine import SIGNALS, MachineModel
from plantline.connectors.sim.standalone import add_common_arguments, serve_until_signalled

_log = logging.getLogger(__name__)

DEFAULT_MACHINE = "Filler"
STARTUP_TIMEOUT_S = 30.0
_CIP_TYPE_OF: Mapping[str, str] = {
    "bool": "BOOL",
    "int8": "SINT",
    "int16": "INT",
    "int32": "DINT",
    "int64": "LINT",
    "uint8": "USINT",
    "uint16": "UINT",
    "uint32": "UDINT",
    "float": "REAL",
    "double": "LREAL",
}
_ARRAY_SIGNALS = ("counter.good", "counter.reject", "counter.total")


@dataclass(frozen=True)
class CipSlot:
    """One signal's tag: its config datatype, scale and unit (the name follows the naming rule)."""

    signal: str
    datatype: str
    scale: float = 1.0
    unit: str | None = None

    def tag_name(self, machine: str) -> str:
        return tag_name(machine, self.signal)

    @property
    def cip_type(self) -> str:
        return _CIP_TYPE_OF[self.datatype]


CIP_LAYOUT: tuple[CipSlot, ...] = (
    CipSlot("state.run", "bool"),
    CipSlot("state.idle", "bool"),
    CipSlot("state.blocked", "bool"),
    CipSlot("state.starved", "bool"),
    CipSlot("state.planned_stop", "bool"),
    CipSlot("fault.active", "bool"),
    CipSlot("fault.code", "int16"),
    CipSlot("counter.good", "int32"),
    CipSlot("counter.reject", "int32"),
    CipSlot("counter.total", "int64"),
    CipSlot("cycle.time", "float", unit="s"),
    CipSlot("cycle.ideal", "float", unit="s"),
    CipSlot("rate.actual", "float", unit="1/min"),
    CipSlot("process.temperature", "float", unit="degC"),
    CipSlot("process.pressure", "double", unit="bar"),
    CipSlot("process.fill_level", "int16", scale=0.1, unit="%"),
)


def tag_name(machine: str, signal: str) -> str:
    """Return the controller tag of a machine's signal: `Filler_state_run` for (Filler, state.run)."""
    return f"{machine}_{signal.replace('.', '_')}"


def heartbeat_tag(machine: str) -> str:
    return f"{machine}_heartbeat"


def counters_tag(machine: str) -> str:
    return f"{machine}_counters"


def layout_tags(machine: str = DEFAULT_MACHINE) -> list[dict[str, Any]]:
    """Return the `tags:` of a connector config that reads the simulated machine `machine`."""
    tags: list[dict[str, Any]] = []
    for slot in CIP_LAYOUT:
        tag: dict[str, Any] = {"signal": slot.signal, "address": slot.tag_name(machine), "datatype": slot.datatype}
        if slot.scale != 1.0:
            tag["scale"] = slot.scale
        if slot.unit is not None:
            tag["unit"] = slot.unit
        tags.append(tag)
    return tags


def simulator_tags(machine: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """Return every tag the simulator defines, name -> cpppo type (`DINT`, `DINT[3]`)."""
    out = {slot.tag_name(machine): slot.cip_type for slot in CIP_LAYOUT}
    out[counters_tag(machine)] = f"DINT[{len(_ARRAY_SIGNALS)}]"
    out[heartbeat_tag(machine)] = "DINT"
    out.update(extra)
    return out


def raw_value(slot: CipSlot, value: Value) -> Value:
    """Return what the controller stores for `value`: divided by the scale, an int for integer types."""
    if isinstance(value, bool | str):
        return value
    if slot.scale != 1.0:
        return round(float(value) / slot.scale)
    return float(value) if slot.cip_type in ("REAL", "LREAL") else int(value)


def _definition(name: str, spec: str) -> dict[str, Any]:
    """The simulator's own pycomm3 definition of one of its tags (see the module docstring)."""
    cip_type, _, rest = spec.partition("[")
    elements = int(rest.rstrip("]")) if rest else 0
    type_class = DataTypes.get(cip_type)  # type: ignore[no-untyped-call]
    return {
        "tag_name": name,
        "instance_id": None,
        "alias": False,
        "tag_type": "atomic",
        "external_access": "Read/Write",
        "data_type": cip_type,
        "data_type_name": cip_type,
        "dim": 1 if elements else 0,
        "dimensions": [elements, 0, 0],
        "type_class": Array(length_=elements, element_type_=type_class) if elements else type_class,
    }


def _ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


class CipMachineServer:
    """A simulated machine served by cpppo's EtherNet/IP simulator; start/stop or use as `with`."""

    def __init__(
        self,
        port: int,
        *,
        seed: int = 0,
        update_interval_s: float = 0.1,
        machine: str = DEFAULT_MACHINE,
        host: str = "127.0.0.1",
        ideal_cycle_s: float = 2.0,
        speed: float = 1.0,
        model: MachineModel | None = None,
        extra_tags: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        if update_interval_s <= 0:
            raise ValueError(f"update_interval_s must be > 0, got {update_interval_s!r}")
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.port = port
        self.host = host
        self.machine = machine
        self.update_interval_s = update_interval_s
        self.speed = speed
        self.startup_timeout_s = startup_timeout_s
        self._clock = clock
        self._wall_start = clock()
        self.model = model if model is not None else MachineModel(seed, ideal_cycle_s, self._wall_start)
        self._model_start = self.model.now
        self._tags = simulator_tags(machine, extra_tags or {})
        self._definitions = {name: _definition(name, spec) for name, spec in self._tags.items()}
        self._slots = {slot.signal: slot for slot in CIP_LAYOUT}
        self._lock = threading.Lock()  # the model, the writer and what was written
        self._held: dict[str, Value] = {}
        self._written: dict[str, Value] = {}  # tag -> raw value last written
        self._heartbeat = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: LogixDriver | None = None
        self._stop = threading.Event()
        self._updater: threading.Thread | None = None
        self.updates = 0

    @property
    def url(self) -> str:
        """The endpoint a CIP source connects to."""
        return f"cip://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id of the running cpppo simulator."""
        return self._process.pid if self._process is not None else None

    def tags(self) -> list[dict[str, Any]]:
        """Return the config tags reading this machine (see `layout_tags`)."""
        return layout_tags(self.machine)

    def tag_name(self, signal: str) -> str:
        return tag_name(self.machine, signal)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start cpppo, write the machine's full state, and keep it updated; OSError if the port is taken."""
        if self._process is not None:
            raise RuntimeError("the simulator is already running")
        _ensure_port_free(self.host, self.port)
        specs = [f"{name}={spec}" for name, spec in self._tags.items()]
        command = [sys.executable, "-m", "cpppo.server.enip", "--no-config", "-U", "-a", f"{self.host}:{self.port}"]
        self._process = subprocess.Popen(
            [*command, *specs], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            self._wait_listening()
            with self._lock:
                self._written.clear()
                self._open_writer()
                self._step_and_write()
        except BaseException:
            self.stop()
            raise
        self._stop.clear()
        name = f"sim-cip:{self.machine}:{self.port}"
        self._updater = threading.Thread(target=self._update_loop, name=name, daemon=True)
        self._updater.start()
        _log.info("simulated %s serving on %s (pid %s)", self.machine, self.url, self.pid)

    def stop(self) -> None:
        """Stop updating and end the simulator (SIGTERM, then SIGKILL); the model is kept."""
        self._halt_updates()
        if self._process is not None:
            process, self._process = self._process, None
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def kill(self) -> None:
        """End the simulator with SIGKILL, as a controller that dies; `start()` brings it back."""
        if self._process is not None:
            process, self._process = self._process, None
            process.kill()
            process.wait(timeout=10)
        self._halt_updates()

    def write(self, signal: str, value: Value) -> None:
        """Hold `signal` at `value`, bypassing the model until `release(signal)`."""
        if signal not in SIGNALS:
            raise KeyError(f"unknown signal {signal!r}")
        with self._lock:
            self._held[signal] = value
            self._write_values({signal: value})

    def release(self, signal: str) -> None:
        """Report `signal` from the model again."""
        with self._lock:
            self._held.pop(signal, None)
            self._write_values(self.model.values())

    def values(self) -> dict[str, Value]:
        """Return what the simulator holds for every signal (the model's, or the held ones)."""
        with self._lock:
            return {**self.model.values(), **self._held}

    def poke(self, values: Mapping[str, Value]) -> None:
        """Write raw values to any of the simulator's tags (`{"Spare": 5, "Arr[2]": 7}`) in one write."""
        with self._lock:
            self._send(dict(values))

    def poke_string(self, name: str, text: str) -> None:
        """Set a STRING tag with cpppo's own client (pycomm3 cannot encode it without a template)."""
        command = [sys.executable, "-m", "cpppo.server.enip.client", "-a", f"{self.host}:{self.port}"]
        subprocess.run([*command, f"{name}=(STRING){text}"], check=True, capture_output=True, timeout=30)

    # -- internals --------------------------------------------------------------------------------

    def _halt_updates(self) -> None:
        self._stop.set()
        if self._updater is not None:
            self._updater.join(timeout=10)
            self._updater = None
        with self._lock:
            self._close_writer()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while not _listening(self.host, self.port):
            if self._process is None or self._process.poll() is not None:
                raise OSError(f"cpppo exited before listening on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"cpppo did not listen on {self.host}:{self.port} within {self.startup_timeout_s} s")
            time.sleep(0.05)

    def _open_writer(self) -> None:
        writer = LogixDriver(f"{self.host}:{self.port}", init_tags=False)
        writer.open()  # type: ignore[no-untyped-call]
        writer._tags = dict(self._definitions)
        self._writer = writer

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()  # type: ignore[no-untyped-call]

    def _model_now(self) -> float:
        return self._model_start + (self._clock() - self._wall_start) * self.speed

    def _step_and_write(self) -> None:
        values = self.model.step(max(self.model.now, self._model_now()))
        self._write_values({s: v for s, v in values.items() if s not in self._held})
        self.updates += 1

    def _write_values(self, values: Mapping[str, Value]) -> None:
        """Write the tags of `values` that changed since the last write (lock held)."""
        raw: dict[str, Value] = {}
        for signal, value in values.items():
            raw[tag_name(self.machine, signal)] = raw_value(self._slots[signal], value)
            if signal in _ARRAY_SIGNALS:
                # a DINT wraps as a PLC counter does
                raw[f"{counters_tag(self.machine)}[{_ARRAY_SIGNALS.index(signal)}]"] = (
                    int(value) + 2**31
                ) % 2**32 - 2**31
        changed = {name: value for name, value in raw.items() if self._written.get(name) != value}
        if changed:
            self._send(changed)

    def _send(self, values: dict[str, Value]) -> None:
        """Write `values` and the heartbeat in one multi-tag write (lock held); raise on refusal."""
        if self._writer is None:
            raise RuntimeError("the simulator is not running")
        self._heartbeat += 1
        pairs = [*values.items(), (heartbeat_tag(self.machine), self._heartbeat)]
        results = self._writer.write(*pairs)
        refused = [r for r in (results if isinstance(results, list) else [results]) if r.error]
        if refused:
            raise RuntimeError(f"cpppo refused writes: {', '.join(f'{r.tag}: {r.error}' for r in refused)}")
        self._written.update(values)

    def _update_loop(self) -> None:
        while not self._stop.wait(self.update_interval_s):
            try:
                with self._lock:
                    if self._writer is None:
                        self._written.clear()  # the simulator restarted empty: write everything
                        self._open_writer()
                    self._step_and_write()
            except Exception as exc:  # noqa: BLE001  # cpppo went away: retry at the next tick
                _log.warning("simulated %s: cannot write to cpppo: %s", self.machine, exc)
                with self._lock:
                    self._close_writer()


# -- standalone ------------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m plantline.connectors.sim.cip_server",
        description="Serve a simulated machine over EtherNet/IP (cpppo's simulator) until interrupted.",
        epilog="Example: python -m plantline.connectors.sim.cip_server --port 44818 --seed 1 --machine Filler",
    )
    add_common_arguments(parser, machine=DEFAULT_MACHINE, machine_help="tag name prefix")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until SIGINT or SIGTERM."""
    args = _parse(argv)
    if args.layout:
        print(json.dumps(layout_tags(args.machine), indent=2))
        return
    serve_until_signalled(
        args.log_level,
        lambda: CipMachineServer(
            args.port,
            seed=args.seed,
            update_interval_s=args.update_interval,
            machine=args.machine,
            host=args.host,
            ideal_cycle_s=args.ideal_cycle,
            speed=args.speed,
        ),
        lambda server: f"serving {args.machine} on {server.url} ({args.machine}_<signal>)",
    )


if __name__ == "__main__":
    main()
