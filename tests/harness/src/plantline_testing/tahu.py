"""Eclipse Tahu's JavaScript Sparkplug decoder as an independent host: `tahu_decode`.

The pinned `sparkplug-payload` (tests/harness/tahu/package.json and its package-lock.json) is
installed with `npm ci` once into `$PLANTLINE_CACHE/tahu/<hash of package-lock.json>/`
(`plantline_testing.npm`). `tahu_decode` feeds a batch of payloads through one Node process
running tests/harness/tahu/decode.js and returns what Tahu's `decodePayload` made of each.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantline_testing import find_program
from plantline_testing.npm import NpmPackage

TAHU_DIR = Path(__file__).resolve().parents[2] / "tahu"
DECODE_SCRIPT = TAHU_DIR / "decode.js"
TAHU = NpmPackage("tahu", TAHU_DIR, probe="sparkplug-payload")


class TahuError(RuntimeError):
    """Tahu's decoder could not be installed or run."""


@dataclass(frozen=True)
class ToDecode:
    """One payload for Tahu; `datatypes` (alias -> datatype code) types metrics that carry none."""

    payload: bytes
    datatypes: Mapping[int, int] | None = None


def ensure_tahu() -> Path:
    """Return the node_modules directory holding the pinned sparkplug-payload, installing it once."""
    return TAHU.ensure()


def _line(item: ToDecode) -> str:
    line = base64.b64encode(item.payload).decode("ascii")
    if item.datatypes:
        line += " " + json.dumps({str(alias): int(code) for alias, code in item.datatypes.items()})
    return line + "\n"


def tahu_decode(items: Sequence[ToDecode], *, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Return, in order, {"payload": ...} with what Tahu decoded, or {"error": ...} for each payload.

    64-bit integers come back as decimal strings (Tahu returns Long objects for them), bytes as
    lists of numbers; a metric's datatype is Tahu's name for it ("UInt32") under "type".
    """
    if not items:
        return []
    modules = ensure_tahu()
    argv = [find_program("node"), str(DECODE_SCRIPT), str(modules)]
    stdin = "".join(_line(item) for item in items)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise TahuError(f"node {DECODE_SCRIPT.name} exited {done.returncode}:\n{done.stderr}")
    results: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]
    if len(results) != len(items):
        raise TahuError(f"{len(items)} payloads in, {len(results)} results out:\n{done.stderr}")
    return results
