"""From the connector's configuration to the KPI engine's (one place for the translation)."""

from __future__ import annotations

from datetime import time

from plantline.connectors.config import Device, KpiSettings, ShiftCalendarSettings
from plantline.connectors.kpi.engine import KpiConfig
from plantline.connectors.kpi.oee import CounterRules
from plantline.connectors.kpi.shifts import Break, Shift, ShiftCalendar

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def shift_calendar(settings: ShiftCalendarSettings) -> ShiftCalendar:
    """Return the KPI engine's calendar for the configured shifts."""
    return ShiftCalendar(
        settings.timezone,
        tuple(
            Shift(
                shift.name,
                _clock(shift.start),
                _clock(shift.end),
                frozenset(_DAYS[d] for d in shift.days),
                tuple(Break(_clock(b.start), _clock(b.end), b.name) for b in shift.breaks),
            )
            for shift in settings.shifts
        ),
    )


def kpi_config(device: Device, shifts: ShiftCalendarSettings | None) -> KpiConfig:
    """Return how the device's KPIs are computed."""
    return engine_config(device.kpi, shifts)


def engine_config(settings: KpiSettings, shifts: ShiftCalendarSettings | None) -> KpiConfig:
    """Return the KPI engine's configuration for a machine's KPI settings (the edge's and the historian's)."""
    return KpiConfig(
        window_s=settings.window_s,
        resolution_s=min(5.0, settings.window_s),
        ideal_cycle_s=settings.ideal_cycle_s,
        counters=CounterRules(bits=settings.counter_bits),
        fault_debounce_s=settings.fault_debounce_s,
        calendar=shift_calendar(shifts) if shifts is not None else None,
    )
