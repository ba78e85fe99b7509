"""The C snap7 server (from the python-snap7 2.x wheel) as an independent S7 peer: `CSnap7Server`.

python-snap7 3.x is pure Python, client and server alike; a test that only pits the 3.x client
against the 3.x server can pass with both wrong in the same way. The 2.x wheel ships the C
snap7 library, whose server is the one other S7 implementation that runs here. 2.x and 3.x
cannot share an environment (same import name), so `snap7_c_python()` keeps a virtualenv of its
own under `$PLANTLINE_CACHE/snap7-c` (or `~/.cache/plantline/snap7-c`), created and filled with
`pip install 'python-snap7<3'` once, and the server runs there as a subprocess: a small script
(`SERVER_SCRIPT`) that registers the given areas, listens on 127.0.0.1 with `start_to` (2.x's
`mainloop` and `start` bind every interface), and optionally counts a DINT up every 50 ms so
values keep changing. Stopped by its PID: SIGTERM, or SIGKILL for a PLC that dies.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Self

from plantline.connectors.sim.hosting import end_process
from plantline_testing import venvs
from plantline_testing.venvs import cached_venv

SNAP7_C_REQUIREMENT = "python-snap7<3"
START_TIMEOUT_S = 30.0

SERVER_SCRIPT = '''\
"""Serve S7 areas with the C snap7 server of python-snap7 2.x (run by plantline_testing.snap7_c)."""
import ctypes
import json
import signal
import struct
import sys
import threading

from snap7.server import Server
from snap7.type import SrvArea

spec = json.loads(sys.argv[1])
server = Server(log=False)
buffers = []
for name, index, data in spec["areas"]:
    raw = bytearray.fromhex(data)
    buffer = (ctypes.c_ubyte * len(raw)).from_buffer(raw)  # the C server reads this memory
    buffers.append((getattr(SrvArea, name), index, buffer))
    server.register_area(getattr(SrvArea, name), index, buffer)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
server.start_to("127.0.0.1", spec["port"])
print("listening", flush=True)
tick = spec.get("tick")  # [index into areas, byte offset] of a DINT counted up every 50 ms
count = 0
while not stop.wait(0.05):
    if tick is not None:
        area, index, buffer = buffers[tick[0]]
        count += 1
        server.lock_area(area, index)
        struct.pack_into(">i", buffer, tick[1], count)
        server.unlock_area(area, index)
server.stop()
server.destroy()
'''


def cache_dir() -> Path:
    """Return where the 2.x virtualenv lives: `$PLANTLINE_CACHE/snap7-c` or `~/.cache/plantline/snap7-c`."""
    return venvs.cache_dir("snap7-c")


def snap7_c_python(root: Path | None = None) -> Path:
    """Return the Python of a virtualenv with python-snap7 2.x, creating it the first time.

    Raises subprocess.CalledProcessError or TimeoutExpired if it cannot be created (e.g. no
    package index); a half-made virtualenv is removed and made again next time.
    """
    root = root or cache_dir()

    def check(python: Path) -> str:
        version = subprocess.run(
            [str(python), "-c", "import snap7; print(snap7.__version__)"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        if not version.startswith("2."):
            raise RuntimeError(f"expected python-snap7 2.x in {root}, got {version}")
        (root / "server.py").write_text(SERVER_SCRIPT, encoding="utf-8")
        return version

    return cached_venv(root, SNAP7_C_REQUIREMENT, check=check)


class CSnap7Server:
    """The C snap7 server serving `areas` on 127.0.0.1:`port` in a subprocess."""

    def __init__(
        self,
        port: int,
        areas: list[tuple[str, int, bytes]],
        *,
        tick: tuple[int, int] | None = None,
        python: Path | None = None,
    ) -> None:
        """`areas`: (SrvArea name, index, initial bytes), e.g. ("DB", 10, data), ("PA", 0, data).

        `tick`: (position in `areas`, byte offset) of a DINT the server counts up every 50 ms.
        """
        self.port = port
        self.areas = areas
        self.tick = tick
        self.python = python or snap7_c_python()
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def url(self) -> str:
        return f"s7://127.0.0.1:{self.port}?rack=0&slot=1"

    def start(self) -> None:
        """Start the server and return once it listens."""
        spec = {"port": self.port, "areas": [[n, i, d.hex()] for n, i, d in self.areas], "tick": self.tick}
        script = self.python.parent.parent / "server.py"
        if not script.exists():  # a cache made by an older helper
            script.write_text(SERVER_SCRIPT, encoding="utf-8")
        process = subprocess.Popen(
            [str(self.python), str(script), json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._process = process
        line = (
            process.stdout.readline() if process.stdout is not None else ""
        )  # printed once it listens (or nothing if it died)
        if line.strip() != "listening":
            self.kill()
            raise RuntimeError(f"the C snap7 server did not start: {line!r}")

    def kill(self) -> None:
        """End the server with SIGKILL (a PLC that dies)."""
        process, self._process = self._process, None
        if process is not None:
            end_process(process, kill=True)

    def stop(self) -> None:
        """End the server with SIGTERM (SIGKILL if it does not end in 10 s)."""
        process, self._process = self._process, None
        if process is not None:
            end_process(process)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
