"""A simulated packaging machine (a filler, by default): its states, counters, cycles and process values.

Pure: `MachineModel.step(now)` advances the model to `now` (seconds, any epoch, never going
backwards) and returns the value of every canonical signal. No I/O, no clock, no global random
state. Two random streams, both derived from the seed:

- the *event* stream decides state durations, next states, fault codes, cycle times and rejects.
  Events are processed in simulated-time order whatever the step size, so the discrete history
  (states, counters, faults) depends only on the seed, not on how often `step` is called;
- the *noise* stream adds measurement noise to the process values, one draw per step, so those
  depend on the seed and the sequence of `now`.

States and signals: exactly one of `state.run`, `state.idle`, `state.blocked`, `state.starved`,
`state.planned_stop` is true at any time. The canonical signals have no `state.fault`; a
faulted machine is stopped for no planned reason and not because of its neighbours, so it
reports `state.idle`, with `fault.active` true and `fault.code` non-zero saying why
(`FAULT_STATE_SIGNAL`). `fault.active` is true exactly while the model is in FAULT.

Units: `cycle.time` and `cycle.ideal` in seconds, `rate.actual` in parts per minute (from the
last completed cycle, 0 when not running), temperature in degC, pressure in bar, fill level in %.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from plantline.connectors.samples import Value


class MachineState(enum.Enum):
    RUN = "run"
    IDLE = "idle"
    BLOCKED = "blocked"
    STARVED = "starved"
    PLANNED_STOP = "planned_stop"
    FAULT = "fault"


STATE_SIGNALS: Mapping[MachineState, str] = {
    MachineState.RUN: "state.run",
    MachineState.IDLE: "state.idle",
    MachineState.BLOCKED: "state.blocked",
    MachineState.STARVED: "state.starved",
    MachineState.PLANNED_STOP: "state.planned_stop",
}
FAULT_STATE_SIGNAL = "state.idle"  # see the module docstring

# Every signal the model produces, in a stable order, with the Python type of its value.
SIGNAL_TYPES: Mapping[str, type[bool] | type[int] | type[float]] = {
    "state.run": bool,
    "state.idle": bool,
    "state.blocked": bool,
    "state.starved": bool,
    "state.planned_stop": bool,
    "counter.good": int,
    "counter.reject": int,
    "counter.total": int,
    "cycle.time": float,
    "cycle.ideal": float,
    "rate.actual": float,
    "fault.active": bool,
    "fault.code": int,
    "process.temperature": float,
    "process.pressure": float,
    "process.fill_level": float,
}
SIGNALS: tuple[str, ...] = tuple(SIGNAL_TYPES)

# Engineering units and ranges (OPC UA EURange) of the analogue values.
UNITS: Mapping[str, str] = {
    "cycle.time": "s",
    "cycle.ideal": "s",
    "rate.actual": "1/min",
    "process.temperature": "degC",
    "process.pressure": "bar",
    "process.fill_level": "%",
}
EU_RANGES: Mapping[str, tuple[float, float]] = {
    "process.temperature": (0.0, 150.0),
    "process.pressure": (0.0, 10.0),
    "process.fill_level": (0.0, 100.0),
}


@dataclass(frozen=True)
class Fault:
    code: int
    text: str
    weight: float  # relative frequency
    duration_s: tuple[float, float]  # uniform range of the time to clear it


FAULTS: tuple[Fault, ...] = (
    Fault(1001, "infeed jam", 0.35, (30.0, 180.0)),
    Fault(1002, "capper torque out of range", 0.20, (60.0, 300.0)),
    Fault(1003, "container down at the filler valve", 0.25, (15.0, 90.0)),
    Fault(1004, "emergency stop pressed", 0.08, (120.0, 600.0)),
    Fault(1005, "low compressed-air pressure", 0.12, (45.0, 240.0)),
)
LOW_AIR_FAULT = 1005


@dataclass(frozen=True)
class MachineProfile:
    """How the machine behaves; the defaults describe a plausible bottle filler."""

    mean_run_s: float = 240.0  # mean time between stops (exponential)
    run_s: tuple[float, float] = (20.0, 1800.0)  # clip of a run period
    # Which stop follows a run period, as relative weights.
    next_after_run: Mapping[MachineState, float] = field(
        default_factory=lambda: {
            MachineState.FAULT: 0.30,
            MachineState.BLOCKED: 0.25,
            MachineState.STARVED: 0.25,
            MachineState.IDLE: 0.12,
            MachineState.PLANNED_STOP: 0.08,
        }
    )
    stop_s: Mapping[MachineState, tuple[float, float]] = field(
        default_factory=lambda: {
            MachineState.IDLE: (10.0, 90.0),
            MachineState.BLOCKED: (5.0, 60.0),
            MachineState.STARVED: (5.0, 90.0),
            MachineState.PLANNED_STOP: (600.0, 1800.0),  # changeover, break, cleaning
        }
    )
    faults: tuple[Fault, ...] = FAULTS
    cycle_jitter: float = 0.03  # sigma of the relative slowdown of a normal cycle
    micro_stop_probability: float = 0.02  # a cycle that takes 1-5 ideal cycles longer
    reject_probability: float = 0.015
    restart_reject_probability: float = 0.08  # the first parts after a fault
    restart_parts: int = 10


@dataclass
class _Process:
    temperature: float = 60.0
    pressure: float = 2.5
    fill_level: float = 70.0
    refilling: bool = False


class MachineModel:
    """The machine's state at simulated time `now`; advance it with `step(now)`."""

    def __init__(
        self,
        seed: int,
        ideal_cycle_s: float,
        now: float,
        *,
        profile: MachineProfile | None = None,
    ) -> None:
        if ideal_cycle_s <= 0:
            raise ValueError(f"ideal_cycle_s must be > 0, got {ideal_cycle_s!r}")
        self.ideal_cycle_s = float(ideal_cycle_s)
        self.profile = profile or MachineProfile()
        # Not for cryptography: a reproducible simulation.
        self._events = random.Random(f"plantline-sim-events-{seed}")  # noqa: S311
        self._noise = random.Random(f"plantline-sim-noise-{seed}")  # noqa: S311
        self._t = float(now)
        self.state = MachineState.RUN
        self.fault_code = 0
        self.good = 0
        self.reject = 0
        self.last_cycle_s = self.ideal_cycle_s
        self._parts_since_fault = self.profile.restart_parts
        self._process = _Process()
        self._state_until = self._t + self._run_duration()
        self._cycle_s = 0.0  # duration of the cycle in progress
        self._cycle_due: float | None = None
        self._start_cycle()
        self._measured: dict[str, float] = {}
        self._measure()

    @property
    def now(self) -> float:
        """The simulated time the model was last advanced to."""
        return self._t

    def step(self, now: float) -> dict[str, Value]:
        """Advance the model to `now` and return every signal's value."""
        if now < self._t:
            raise ValueError(f"time went backwards: {now!r} < {self._t!r}")
        start = self._t
        while True:
            due = self._state_until
            if self._cycle_due is not None and self._cycle_due < due:
                due = self._cycle_due
            if due > now:
                break
            self._t = due
            if due == self._cycle_due:
                self._complete_cycle()
            else:
                self._end_state()
        self._t = now
        self._advance_process(now - start)
        self._measure()
        return self.values()

    def values(self) -> dict[str, Value]:
        """Return every signal's current value (the same as the last `step` returned)."""
        reported = FAULT_STATE_SIGNAL if self.state is MachineState.FAULT else STATE_SIGNALS[self.state]
        out: dict[str, Value] = {signal: signal == reported for signal in STATE_SIGNALS.values()}
        running = self.state is MachineState.RUN
        out.update(
            {
                "counter.good": self.good,
                "counter.reject": self.reject,
                "counter.total": self.good + self.reject,
                "cycle.time": round(self.last_cycle_s, 3),
                "cycle.ideal": self.ideal_cycle_s,
                "rate.actual": round(60.0 / self.last_cycle_s, 3) if running else 0.0,
                "fault.active": self.state is MachineState.FAULT,
                "fault.code": self.fault_code,
            }
        )
        out.update(self._measured)
        return out

    def _measure(self) -> None:
        """Read the process values as a sensor would: with noise, rounded (the noise stream)."""
        process, noise = self._process, self._noise
        self._measured = {
            "process.temperature": round(process.temperature + noise.gauss(0.0, 0.15), 2),
            "process.pressure": round(max(0.0, process.pressure + noise.gauss(0.0, 0.03)), 3),
            "process.fill_level": round(min(100.0, max(0.0, process.fill_level + noise.gauss(0.0, 0.05))), 2),
        }

    # -- discrete events (the event stream) -------------------------------------------------------

    def _run_duration(self) -> float:
        low, high = self.profile.run_s
        return min(high, max(low, self._events.expovariate(1.0 / self.profile.mean_run_s)))

    def _cycle_duration(self) -> float:
        rng, profile = self._events, self.profile
        slowdown = abs(rng.gauss(0.0, profile.cycle_jitter))
        if rng.random() < profile.micro_stop_probability:
            slowdown += rng.uniform(1.0, 5.0)
        return self.ideal_cycle_s * (1.0 + slowdown)

    def _start_cycle(self) -> None:
        self._cycle_s = self._cycle_duration()
        self._cycle_due = self._t + self._cycle_s

    def _complete_cycle(self) -> None:
        self.last_cycle_s = self._cycle_s
        self._parts_since_fault += 1
        restart = self._parts_since_fault <= self.profile.restart_parts
        p_reject = self.profile.restart_reject_probability if restart else self.profile.reject_probability
        if self._events.random() < p_reject:
            self.reject += 1
        else:
            self.good += 1
        self._process.fill_level -= 0.04
        self._start_cycle()

    def _end_state(self) -> None:
        rng = self._events
        if self.state is MachineState.RUN:
            weights = self.profile.next_after_run
            self.state = rng.choices(list(weights), weights=list(weights.values()))[0]
            self._cycle_due = None  # the part in progress is not completed
            if self.state is MachineState.FAULT:
                faults = self.profile.faults
                fault = rng.choices(faults, weights=[f.weight for f in faults])[0]
                self.fault_code = fault.code
                self._state_until = self._t + rng.uniform(*fault.duration_s)
            else:
                self._state_until = self._t + rng.uniform(*self.profile.stop_s[self.state])
            return
        if self.state is MachineState.FAULT:
            self.fault_code = 0
            self._parts_since_fault = 0
        self.state = MachineState.RUN
        self._state_until = self._t + self._run_duration()
        self._start_cycle()

    # -- continuous process values ----------------------------------------------------------------

    def _advance_process(self, dt: float) -> None:
        if dt <= 0:
            return
        process, state = self._process, self.state
        running = state is MachineState.RUN
        if running:
            temperature_target = 68.0
        elif state is MachineState.PLANNED_STOP:
            temperature_target = 25.0
        else:
            temperature_target = 45.0  # heaters on standby
        process.temperature += (temperature_target - process.temperature) * (1.0 - math.exp(-dt / 180.0))
        pressure_target = 2.5 if running else 0.4
        if self.fault_code == LOW_AIR_FAULT:
            pressure_target = 1.2
        process.pressure += (pressure_target - process.pressure) * (1.0 - math.exp(-dt / 5.0))
        # The product tank refills with hysteresis: the valve opens below 35 % and closes at 85 %.
        if process.fill_level < 35.0:
            process.refilling = True
        if process.refilling:
            process.fill_level = min(100.0, process.fill_level + 0.5 * dt)
            if process.fill_level >= 85.0:
                process.refilling = False
        process.fill_level = max(0.0, process.fill_level)
