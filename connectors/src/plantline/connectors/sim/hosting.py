"""What the simulators share: the machine they serve, its clock and updates, and their command line.

    class S7MachineServer(ThreadedMachineHost):   # implements start, stop and _show
        ...

`MachineHost` holds what every simulator has: where it listens, the `MachineModel` it serves,
and the model's own time (`speed` times the wall clock, going on from where a kept model left
off, as a PLC keeps its retentive data across a restart). `ThreadedMachineHost` adds, for the
simulators whose servers run on threads (S7, CIP), a thread that steps the model every
`update_interval_s`, and `write`/`release` to hold a signal at a value for a test.
`simulator_parser`, `host_options` and `serve_until_signalled` run any simulator from the
command line until SIGINT or SIGTERM.

What is not shared is how values reach the wire: each simulator encodes them in its protocol's
form with its own code, never with the sources' decoders (the layers keep `sim` and `sources`
apart), so a test that reads a simulator through a source checks two independent
implementations against each other.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import json
import logging
import signal as signals
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, Self, TypedDict, Unpack

from plantline.connectors.samples import Value
from plantline.connectors.sim.machine import SIGNALS, MachineModel

_log = logging.getLogger(__name__)

DEFAULT_MACHINE = "Filler"


class HostOptions(TypedDict, total=False):
    """What every simulator takes besides its port."""

    seed: int  # of a new model (ignored with `model`)
    update_interval_s: float  # between model steps
    machine: str  # the machine's name in addresses and messages
    host: str  # the address to listen on (127.0.0.1 unless told otherwise)
    ideal_cycle_s: float  # of a new model
    speed: float  # model seconds per wall-clock second (> 1 for demos and tests)
    model: MachineModel | None  # serve this model on (a restart that keeps the machine's counters)
    clock: Callable[[], float]  # the wall clock


def config_tag(
    signal: str, address: str, datatype: str, *, scale: float = 1.0, unit: str | None = None
) -> dict[str, Any]:
    """Return one entry of a connector config's `tags:` (scale and unit only where they say something)."""
    tag: dict[str, Any] = {"signal": signal, "address": address, "datatype": datatype}
    if scale != 1.0:
        tag["scale"] = scale
    if unit is not None:
        tag["unit"] = unit
    return tag


def end_process(process: subprocess.Popen[Any], *, kill: bool = False, timeout_s: float = 10.0) -> None:
    """End a child program and reap it: SIGTERM (SIGKILL if it is not gone in `timeout_s`), or SIGKILL."""
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=timeout_s)


def ensure_port_free(host: str, port: int) -> None:
    """Raise OSError if something listens on host:port already.

    The bind is done without SO_REUSEPORT, so it also finds a server that would share the port
    silently (python-snap7 3.x sets SO_REUSEPORT on its listening socket).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server does: TIME_WAIT is fine
        probe.bind((host, port))


class MachineHost:
    """A simulated machine served on a port: its model, the model's time, and how often it steps."""

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
        clock: Callable[[], float] = time.time,
    ) -> None:
        if update_interval_s <= 0:
            raise ValueError(f"update_interval_s must be > 0, got {update_interval_s!r}")
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.port = port
        self.host = host
        self.machine = machine
        self._clock = clock
        self._wall_start = clock()
        self.model = model if model is not None else MachineModel(seed, ideal_cycle_s, self._wall_start)
        self._model_start = self.model.now
        self.update_interval_s = update_interval_s
        self.speed = speed
        self.updates = 0  # model steps served so far

    def _model_now(self) -> float:
        return self._model_start + (self._clock() - self._wall_start) * self.speed


class ThreadedMachineHost(MachineHost, abc.ABC):
    """A simulator whose server runs on threads: a thread steps the model; start/stop or use as `with`."""

    def __init__(self, port: int, **options: Unpack[HostOptions]) -> None:
        super().__init__(port, **options)
        self._lock = threading.Lock()  # the model, the held values and what the server holds
        self._held: dict[str, Value] = {}
        self._stop = threading.Event()
        self._updater: threading.Thread | None = None

    @abc.abstractmethod
    def start(self) -> None:
        """Serve the machine's current state and keep it updated; raise OSError if the port is taken."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and updating; the model (and what a PLC would retain) is kept."""

    @abc.abstractmethod
    def _show(self, values: Mapping[str, Value]) -> None:
        """Make the server hold `values` (signal -> engineering value); the lock is held."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def write(self, signal: str, value: Value) -> None:
        """Hold `signal` at `value`, bypassing the model until `release(signal)`."""
        if signal not in SIGNALS:
            raise KeyError(f"unknown signal {signal!r}")
        with self._lock:
            self._held[signal] = value
            self._show({signal: value})

    def release(self, signal: str) -> None:
        """Report `signal` from the model again."""
        with self._lock:
            self._held.pop(signal, None)
            self._show({signal: self.model.values()[signal]})

    def values(self) -> dict[str, Value]:
        """Return what the server holds for every signal now (the model's, or the held ones)."""
        with self._lock:
            return {**self.model.values(), **self._held}

    def _step(self) -> None:
        """Step the model to now and show what changed, but the held signals (lock held)."""
        values = self.model.step(max(self.model.now, self._model_now()))
        self._show({s: v for s, v in values.items() if s not in self._held})
        self.updates += 1

    def _tick(self) -> None:
        """One update of the running server."""
        with self._lock:
            self._step()

    def _start_updates(self, protocol: str) -> None:
        self._stop.clear()
        name = f"sim-{protocol}:{self.machine}:{self.port}"
        self._updater = threading.Thread(target=self._update_loop, name=name, daemon=True)
        self._updater.start()

    def _halt_updates(self) -> None:
        self._stop.set()
        if self._updater is not None:
            self._updater.join(timeout=10)
            self._updater = None

    def _update_loop(self) -> None:
        while not self._stop.wait(self.update_interval_s):
            self._tick()


# -- the command line ---------------------------------------------------------------------------------


class Serving(Protocol):
    """A simulator as the command line runs it (start and stop may be coroutines)."""

    @property
    def machine(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def addressing(self) -> str:
        """How the machine's signals are addressed, for the ready line (`DB10`, `Filler_<signal>`)."""
        ...

    def start(self) -> Awaitable[None] | None: ...

    def stop(self) -> Awaitable[None] | None: ...


def simulator_parser(name: str, protocol: str, example: str, machine_help: str) -> argparse.ArgumentParser:
    """Return a parser with the flags every simulator takes; add a simulator's own to it.

    `name` is the simulator's module in this package (`s7_server`), `protocol` what it serves
    over, `example` the flags of an example, `machine_help` what `--machine` names.
    """
    module = f"{__package__}.{name}"
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=f"Serve a simulated machine over {protocol} until interrupted.",
        epilog=f"Example: python -m {module} {example}",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--machine", default=DEFAULT_MACHINE, help=f"{machine_help} (default: {DEFAULT_MACHINE})")
    parser.add_argument("--update-interval", type=float, default=0.1, help="seconds between model steps")
    parser.add_argument("--ideal-cycle", type=float, default=2.0, help="ideal cycle time in seconds")
    parser.add_argument("--speed", type=float, default=1.0, help="model seconds per wall-clock second")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def host_options(args: argparse.Namespace) -> HostOptions:
    """Return the options of `MachineHost` that the common flags set."""
    return HostOptions(
        seed=args.seed,
        update_interval_s=args.update_interval,
        machine=args.machine,
        host=args.host,
        ideal_cycle_s=args.ideal_cycle,
        speed=args.speed,
    )


def serve_until_signalled(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    make: Callable[[argparse.Namespace], Serving],
    *,
    layout: Callable[[argparse.Namespace], list[dict[str, Any]]] | None = None,
) -> None:
    """Parse `argv`, start the simulator `make` returns, say so on stderr, serve until SIGINT or SIGTERM.

    With `layout`, the command takes `--layout` and then prints the config tags `layout` returns
    instead. Exits with status 2 for bad arguments (ValueError), 1 when the simulator cannot
    start (OSError, e.g. a taken port or a missing certificate file).
    """
    if layout is not None:
        parser.add_argument("--layout", action="store_true", help="print the config tags as JSON and exit")
    args = parser.parse_args(argv)
    if layout is not None and args.layout:
        print(json.dumps(layout(args), indent=2))
        return
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(lambda: make(args)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


async def _serve(make: Callable[[], Serving]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signals.SIGINT, signals.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = make()
    await _done(server.start())
    try:
        print(f"serving {server.machine} on {server.url} ({server.addressing})", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):  # going away anyway: a failed stop changes nothing
            await _done(server.stop())


async def _done(step: Awaitable[None] | None) -> None:
    if step is not None:
        await step
