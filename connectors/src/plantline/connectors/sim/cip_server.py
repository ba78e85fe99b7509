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
client once, as a separate program.

An oracle for the CIP source. The simulator states its tags' controller types itself
(`CIP_LAYOUT`, as a controller's tag database holds them), and its writer gets its pycomm3 tag
definitions the way pycomm3 builds them from a real controller's tag upload: from Symbol Object
records (`_symbol`), with pycomm3's own code. It shares neither with the connector, whose
definitions come from the config's datatypes (`sources.cip.logix_tag_definitions`); so a test
that reads the simulator through the CIP source checks the connector's type mapping and
definitions against an independent statement of them, and cpppo checks every write's type.
Only the hosting (model clock, update thread, command line) is shared, in `hosting`.

`kill()` ends the simulator with SIGKILL (a controller that dies); `start()` again brings it
back on the same port, and writes the model's full state before it returns.

Run it alone with `python -m plantline.connectors.sim.cip_server --port 44818 --seed 1`
(`--layout` prints the config tags as JSON and exits).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from pycomm3 import LogixDriver
from pycomm3.cip.data_types import DataTypes
from pycomm3.const import BASE_TAG_BIT

from plantline.connectors.samples import Value
from plantline.connectors.sim import hosting
from plantline.connectors.sim.hosting import HostOptions, ThreadedMachineHost, config_tag, end_process

_log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
_ARRAY_SIGNALS = ("counter.good", "counter.reject", "counter.total")


@dataclass(frozen=True)
class CipSlot:
    """One signal's tag: the controller's type of it, the config's datatype, scale and unit.

    The name follows the naming rule. The types are the simulator's own statement of its tags,
    as a controller's tag database holds them, not derived from the connector's type mapping.
    """

    signal: str
    cip_type: str
    datatype: str
    scale: float = 1.0
    unit: str | None = None

    def tag_name(self, machine: str) -> str:
        return tag_name(machine, self.signal)


CIP_LAYOUT: tuple[CipSlot, ...] = (
    CipSlot("state.run", "BOOL", "bool"),
    CipSlot("state.idle", "BOOL", "bool"),
    CipSlot("state.blocked", "BOOL", "bool"),
    CipSlot("state.starved", "BOOL", "bool"),
    CipSlot("state.planned_stop", "BOOL", "bool"),
    CipSlot("fault.active", "BOOL", "bool"),
    CipSlot("fault.code", "INT", "int16"),
    CipSlot("counter.good", "DINT", "int32"),
    CipSlot("counter.reject", "DINT", "int32"),
    CipSlot("counter.total", "LINT", "int64"),
    CipSlot("cycle.time", "REAL", "float", unit="s"),
    CipSlot("cycle.ideal", "REAL", "float", unit="s"),
    CipSlot("rate.actual", "REAL", "float", unit="1/min"),
    CipSlot("process.temperature", "REAL", "float", unit="degC"),
    CipSlot("process.pressure", "LREAL", "double", unit="bar"),
    CipSlot("process.fill_level", "INT", "int16", scale=0.1, unit="%"),
)


def tag_name(machine: str, signal: str) -> str:
    """Return the controller tag of a machine's signal: `Filler_state_run` for (Filler, state.run)."""
    return f"{machine}_{signal.replace('.', '_')}"


def heartbeat_tag(machine: str) -> str:
    return f"{machine}_heartbeat"


def counters_tag(machine: str) -> str:
    return f"{machine}_counters"


def layout_tags(machine: str = hosting.DEFAULT_MACHINE) -> list[dict[str, Any]]:
    """Return the `tags:` of a connector config that reads the simulated machine `machine`."""
    return [
        config_tag(slot.signal, slot.tag_name(machine), slot.datatype, scale=slot.scale, unit=slot.unit)
        for slot in CIP_LAYOUT
    ]


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


def _symbol(spec: str) -> dict[str, Any]:
    """Return the Symbol Object record a Logix controller uploads for a tag of cpppo type `spec`.

    The simulator's writer turns these into pycomm3 definitions with pycomm3's own code for a
    tag upload (see the module docstring), not with the connector's `logix_tag_definitions`.
    """
    cip_type, _, rest = spec.partition("[")
    elements = int(rest.rstrip("]")) if rest else 0
    code = DataTypes.get(cip_type).code  # type: ignore[no-untyped-call]
    return {
        "instance_id": None,  # cpppo gives none: requests use the symbolic name
        "symbol_type": code | (1 << 13 if elements else 0),  # bits 13-14: the number of dimensions
        "dimensions": [elements, 0, 0],
        "software_control": BASE_TAG_BIT,  # a tag of its own, not an alias
        "external_access": "Read/Write",
        "symbol_address": None,
        "symbol_object_address": None,
    }


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


class CipMachineServer(ThreadedMachineHost):
    """A simulated machine served by cpppo's EtherNet/IP simulator; start/stop or use as `with`."""

    def __init__(
        self,
        port: int,
        *,
        extra_tags: Mapping[str, str] | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__(port, **options)
        self.startup_timeout_s = startup_timeout_s
        self.addressing = tag_name(self.machine, "<signal>")  # how its signals are addressed, for the ready line
        self._tags = simulator_tags(self.machine, extra_tags or {})
        self._slots = {slot.signal: slot for slot in CIP_LAYOUT}
        self._written: dict[str, Value] = {}  # tag -> raw value last written
        self._heartbeat = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: LogixDriver | None = None

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

    def start(self) -> None:
        """Start cpppo, write the machine's full state, and keep it updated; OSError if the port is taken."""
        if self._process is not None:
            raise RuntimeError("the simulator is already running")
        hosting.ensure_port_free(self.host, self.port)
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
                self._step()
        except BaseException:
            self.stop()
            raise
        self._start_updates("cip")
        _log.info("simulated %s serving on %s (pid %s)", self.machine, self.url, self.pid)

    def stop(self) -> None:
        """Stop updating and end the simulator (SIGTERM, then SIGKILL); the model is kept."""
        self._halt_updates()
        process, self._process = self._process, None
        if process is not None:
            end_process(process)

    def kill(self) -> None:
        """End the simulator with SIGKILL, as a controller that dies; `start()` brings it back."""
        process, self._process = self._process, None
        if process is not None:
            end_process(process, kill=True)
        self._halt_updates()

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
        super()._halt_updates()
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
        writer._tags = {name: writer._create_tag(name, _symbol(spec)) for name, spec in self._tags.items()}  # type: ignore[no-untyped-call]
        self._writer = writer

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()  # type: ignore[no-untyped-call]

    def _show(self, values: Mapping[str, Value]) -> None:
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

    def _tick(self) -> None:
        try:
            with self._lock:
                if self._writer is None:
                    self._written.clear()  # the simulator restarted empty: write everything
                    self._open_writer()
                self._step()
        except Exception as exc:  # noqa: BLE001  # cpppo went away: retry at the next tick
            _log.warning("simulated %s: cannot write to cpppo: %s", self.machine, exc)
            with self._lock:
                self._close_writer()


# -- standalone ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until SIGINT or SIGTERM (or print its config tags with --layout)."""
    parser = hosting.simulator_parser(
        "cip_server", "EtherNet/IP (cpppo's simulator)", "--port 44818 --seed 1 --machine Filler", "tag name prefix"
    )
    hosting.serve_until_signalled(
        parser,
        argv,
        lambda args: CipMachineServer(args.port, **hosting.host_options(args)),
        layout=lambda args: layout_tags(args.machine),
    )


if __name__ == "__main__":
    main()
