"""What flows from a source into the connector: samples of canonical signals, with one quality model."""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

# Canonical signals (docs/architecture.md, "Names and conventions"); analogue process values are `process.<name>`.
CANONICAL_SIGNALS = frozenset(
    {
        "state.run",
        "state.idle",
        "state.blocked",
        "state.starved",
        "state.planned_stop",
        "counter.good",
        "counter.reject",
        "counter.total",
        "cycle.time",
        "cycle.ideal",
        "rate.actual",
        "fault.active",
        "fault.code",
    }
)
_PROCESS = re.compile(r"process\.[a-z][a-z0-9_]{0,62}")


def is_canonical_signal(name: str) -> bool:
    """Return whether `name` is a canonical signal or a `process.<name>` value."""
    return name in CANONICAL_SIGNALS or _PROCESS.fullmatch(name) is not None


class Quality(enum.StrEnum):
    """One quality scale across protocols; the protocol's own code travels alongside."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


Value = bool | int | float | str


class Sample(NamedTuple):
    """One reading of one signal of one device.

    `source_ts_ms` is the PLC's timestamp (or the read time when the PLC gives none), in
    milliseconds since the Unix epoch; `value` is None when there is no value to give (a bad
    reading, or a KPI that is undefined, e.g. availability with no planned time): values are
    never fabricated.

    A named tuple rather than a frozen dataclass: every sample of a connector is made once by its
    source and once more when the outbox replays it, and a tuple is made in a fraction of the time.
    """

    device: str
    signal: str
    value: Value | None
    quality: Quality
    source_ts_ms: int
    protocol_code: int | None = None
