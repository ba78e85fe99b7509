"""What flows from a source into the connector: samples of canonical signals, with one quality model."""

from __future__ import annotations

import enum
import re
from decimal import Decimal
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


def _decimals(number: float) -> int:
    """Return how many decimal places the shortest spelling of `number` has (0.1: 1, 0.25: 2, 10: 0)."""
    exponent = Decimal(repr(number)).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def scaled(raw: Value, scale: float, offset: float) -> Value:
    """Return the engineering value of a raw one: `raw * scale + offset`; bool and str as they are.

    With scale 1 and offset 0 the raw int or float is kept, so counters stay integers. A scaled
    integer is rounded to the decimals its scale and offset imply (-1233 at 0.1 is -123.3, not
    the -123.30000000000001 binary floating point makes of it): an integer count has no finer
    precision to lose. A raw float is not rounded, since its precision is the PLC's.
    """
    if isinstance(raw, bool | str):
        return raw
    if scale == 1.0 and offset == 0.0:
        return raw
    value = float(raw) * scale + offset
    if isinstance(raw, int):
        return round(value, max(_decimals(scale), _decimals(offset)))
    return value
