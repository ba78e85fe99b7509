"""What the polling simulators' command lines share: the common flags, and serving until a signal."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal as signals
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol


class Serving(Protocol):
    """A simulator that runs in the background between start() and stop()."""

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def add_common_arguments(parser: argparse.ArgumentParser, *, machine: str, machine_help: str) -> None:
    """Add the flags every simulator takes."""
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--machine", default=machine, help=f"{machine_help} (default: {machine})")
    parser.add_argument("--update-interval", type=float, default=0.1, help="seconds between model steps")
    parser.add_argument("--ideal-cycle", type=float, default=2.0, help="ideal cycle time in seconds")
    parser.add_argument("--speed", type=float, default=1.0, help="model seconds per wall-clock second")
    parser.add_argument("--layout", action="store_true", help="print the config tags as JSON and exit")
    parser.add_argument("--log-level", default="WARNING")


def serve_until_signalled(log_level: str, make: Callable[[], Serving], banner: Callable[[Serving], str]) -> None:
    """Start the simulator `make` returns and serve until SIGINT or SIGTERM.

    Exit status 2 for bad arguments (ValueError), 1 when it cannot start (OSError, e.g. a taken port).
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    for signum in (signals.SIGINT, signals.SIGTERM):
        signals.signal(signum, on_signal)
    try:
        server = make()
        server.start()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    try:
        print(banner(server), file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        with contextlib.suppress(Exception):
            server.stop()
