"""Line KPIs at the edge: OEE, time accounting, faults, shifts; pure, fed by samples, asked with `now`.

`KpiEngine(machine_id, config)` takes a machine's samples (`update`) and gives a `KpiSnapshot`
(`snapshot(now_ms)`) over a rolling window and the current shift; `sparkplug_metrics` and
`gauge_values` (the `KPI_*` gauges of `plantline.connectors.metric_names`) are how the runtime
publishes it. `checkpoint()` saves an engine's whole state as bytes, `KpiEngine.restore` makes it
again: fed the same samples after it, the restored engine gives the snapshots the original would.
"""

from plantline.connectors.kpi.checkpoint import CheckpointError
from plantline.connectors.kpi.engine import (
    SPARKPLUG_METRICS,
    STATE_PRECEDENCE,
    KpiConfig,
    KpiEngine,
    KpiFigures,
    KpiSnapshot,
    SampleCounts,
    config_key,
    gauge_values,
    sparkplug_metrics,
)
from plantline.connectors.kpi.faults import ActiveFault, FaultStats, FaultTracker
from plantline.connectors.kpi.oee import CounterEvent, CounterRules, KpiWarning, OeeFigures, compute_oee
from plantline.connectors.kpi.shifts import (
    ALL_DAYS,
    WEEKDAYS,
    Break,
    CalendarStatus,
    Shift,
    ShiftCalendar,
    ShiftOccurrence,
)

__all__ = [
    "ALL_DAYS",
    "SPARKPLUG_METRICS",
    "STATE_PRECEDENCE",
    "WEEKDAYS",
    "ActiveFault",
    "Break",
    "CalendarStatus",
    "CheckpointError",
    "CounterEvent",
    "CounterRules",
    "FaultStats",
    "FaultTracker",
    "KpiConfig",
    "KpiEngine",
    "KpiFigures",
    "KpiSnapshot",
    "KpiWarning",
    "OeeFigures",
    "SampleCounts",
    "Shift",
    "ShiftCalendar",
    "ShiftOccurrence",
    "compute_oee",
    "config_key",
    "gauge_values",
    "sparkplug_metrics",
]
