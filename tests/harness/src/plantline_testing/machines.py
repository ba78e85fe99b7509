"""Samples of simulated machines (the PLC simulators' own model), without a PLC in between.

The historian's tests and benchmarks fill databases with them: changes only, as a source with a
deadband reports, every `step_s` of simulated time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sim.machine import MachineModel

T0 = 1_763_769_600_000  # 2025-11-22 00:00 UTC, a Saturday


def simulated_samples(
    device: str,
    seconds: float,
    *,
    seed: int = 3,
    start_ms: int = T0,
    step_s: float = 0.5,
    ideal_cycle_s: float = 0.5,
    signals: Collection[str] | None = None,
) -> Iterator[Sample]:
    """Yield the changes of a simulated machine's signals (`signals`, default all) in time order."""
    model = MachineModel(seed, ideal_cycle_s, start_ms / 1000)
    last: dict[str, object] = {}
    for i in range(1, int(seconds / step_s) + 1):
        ts = start_ms + round(i * step_s * 1000)
        for signal, value in model.step(ts / 1000).items():
            if (signals is None or signal in signals) and last.get(signal) != value:
                yield Sample(device, signal, value, Quality.GOOD, ts)
                last[signal] = value


def roughened(
    samples: Iterable[Sample], *, counter_offset: int = 0, bits: int = 32, bad_every: int = 0
) -> Iterator[Sample]:
    """Yield `samples` as a rougher source reports them: counters shifted by `counter_offset` (wrapping
    at `bits`, so they roll over) and every `bad_every`-th sample of bad quality, without a value."""
    for n, sample in enumerate(samples, start=1):
        if bad_every and n % bad_every == 0:
            yield sample._replace(value=None, quality=Quality.BAD)
        elif sample.signal.startswith("counter.") and isinstance(sample.value, int):
            yield sample._replace(value=(sample.value + counter_offset) % (1 << bits))
        else:
            yield sample
