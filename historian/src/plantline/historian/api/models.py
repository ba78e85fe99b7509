"""The KPI API's response bodies and its problem details (RFC 9457), as they appear in its OpenAPI description."""

from __future__ import annotations

from pydantic import BaseModel, Field


class InvalidParam(BaseModel):
    name: str = Field(description="The query parameter at fault.")
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem: `invalid_params` names the parameters at fault."""

    type: str = Field(description="A URN naming the kind of problem.")
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] = Field(default_factory=list, alias="invalid-params")

    model_config = {"populate_by_name": True}


class Machine(BaseModel):
    site: str
    line: str
    machine: str


class Fault(BaseModel):
    site: str
    line: str
    machine: str
    code: int
    started_ms: int
    ended_ms: int | None = Field(description="None while the fault is active.")


class FaultPage(BaseModel):
    faults: list[Fault]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last one.")


class ActiveFault(BaseModel):
    code: int
    since_ms: int


class EdgeKpis(BaseModel):
    """The KPIs the edge itself published last (its kpi/* metrics)."""

    at_ms: int
    oee: float | None
    availability: float | None
    performance: float | None
    quality: float | None


class MachineStatus(Machine):
    online: bool | None = Field(description="Per the Sparkplug births and deaths; None before any.")
    state: str | None = Field(description="run, planned_stop, blocked, starved, idle or unknown.")
    state_since_ms: int | None
    active_fault: ActiveFault | None
    edge_kpis: EdgeKpis | None


class KpiFigures(BaseModel):
    start_ms: int
    end_ms: int
    oee: float | None
    availability: float | None
    performance: float | None
    quality: float | None
    run_s: float
    planned_s: float
    good: int | None
    reject: int | None
    total: int


class CurrentKpis(Machine):
    """The rolling window's KPIs computed from stored samples by the edge's KPI engine."""

    window: KpiFigures
    mttr_s: float | None
    mtbf_s: float | None
    fault_count: int
    warnings: list[str]
    edge: dict[str, float | int | None] | None = Field(
        description="What the edge published last before `at`; `data_until_ms`: the newest sample it had then."
    )


class Trend(Machine):
    bucket: str
    points: list[KpiFigures]


class SignalPoint(BaseModel):
    ts_ms: int = Field(description="The sample's source time, or the bucket's start.")
    value: float | None = Field(description="The value (raw), or the average (rollups).")
    text: str | None = None
    quality: str | None = Field(default=None, description="Raw samples: good, uncertain or bad.")
    n: int | None = None
    min: float | None = None
    max: float | None = None
    last: float | None = None
    increase: int | None = Field(default=None, description="Counters: the parts counted in the bucket.")


class SignalHistory(Machine):
    signal: str
    bucket: str
    points: list[SignalPoint]
    next_cursor: str | None
