"""The KPI API: FastAPI over the historian's tables, read-only, with its OpenAPI description at /openapi.json.

FastAPI, not bare Starlette: the OpenAPI description is derived from the same typed parameters and
response models the handlers use, so it cannot drift from them, and schemathesis fuzzes exactly
what is served. Every error is an RFC 9457 problem (application/problem+json) naming the query
parameter at fault; nothing from a request reaches SQL but as a bound parameter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import ConnectionPool

from plantline.connectors.kpi import KpiConfig
from plantline.historian import queries
from plantline.historian.api.models import (
    CurrentKpis,
    Fault,
    FaultPage,
    KpiFigures,
    MachineStatus,
    Problem,
    SignalHistory,
    SignalPoint,
    Trend,
)
from plantline.historian.api.telemetry import ApiMetrics, RequestTimer
from plantline.historian.config import HistorianConfig
from plantline.historian.kpi import current_body
from plantline.historian.readings import window_snapshots
from plantline.historian.store import Connection

PROBLEM = "application/problem+json"
METRICS_PATH = "/metrics"
LIVE_INTERVAL_S = 1.0
Clock = Callable[[], float]


class ProblemError(Exception):
    """A request the API refuses: the problem's status, title, and the parameter at fault."""

    def __init__(self, status: int, title: str, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.param = status, title, detail, param


def _problem(status: int, title: str, detail: str, params: list[dict[str, str]]) -> JSONResponse:
    slug = title.lower().replace(" ", "-")
    body = Problem(type=f"urn:plantline:problem:{slug}", title=title, status=status, detail=detail)
    content = body.model_dump(by_alias=True) | {"invalid-params": params}
    return JSONResponse(content, status_code=status, media_type=PROBLEM)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": what, "content": {PROBLEM: {}}}
    for code, what in ((400, "A query parameter is invalid"), (401, "No valid bearer token"), (404, "Unknown"))
}


def _ms(value: dt.datetime | None, default: float) -> int:
    if value is None:
        return int(default * 1000)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)  # times without a zone are UTC
    return int(value.timestamp() * 1000)


# Names as Sparkplug and the PlantLine API allow them: no control characters, no topic wildcards.
NAME = r"^[^\x00-\x1f\x7f+#/]+$"
Site = Annotated[str | None, Query(max_length=64, pattern=NAME, description="Only machines of this site.")]
Line = Annotated[str | None, Query(max_length=64, pattern=NAME, description="Only machines of this line.")]
MachineId = Annotated[
    str | None, Query(max_length=64, pattern=NAME, description="Only this machine (its Sparkplug device id).")
]
From = Annotated[dt.datetime | None, Query(alias="from", description="Start (ISO 8601; UTC without a zone).")]
To = Annotated[dt.datetime | None, Query(description="End, exclusive (ISO 8601; default now).")]
Limit = Annotated[int | None, Query(ge=1, le=10_000, description="Items per page (at most the configured page size).")]
Cursor = Annotated[
    str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_=-]+$", description="`next_cursor` of the previous page.")
]


@dataclass(frozen=True)
class Context:
    """What the handlers share: the configuration, the connection pool, the clock, the accepted tokens."""

    config: HistorianConfig
    pool: ConnectionPool[Connection]
    clock: Clock
    tokens: tuple[bytes, ...]

    @contextmanager
    def db(self) -> Iterator[Connection]:
        with self.pool.connection() as conn:
            yield conn

    def span(self, from_: dt.datetime | None, to: dt.datetime | None, default_s: float) -> tuple[int, int]:
        """Return [from, to) in ms; `to` defaults to now, `from` to `default_s` before it."""
        end = _ms(to, self.clock())
        start = _ms(from_, end / 1000 - default_s)
        if start >= end:
            raise ProblemError(400, "Bad Request", "`from` must be before `to`", "from")
        return start, end

    def points_fit(self, start: int, end: int, bucket: str) -> None:
        limit = self.config.api.max_points
        if (end - start) // queries.BUCKET_MS[bucket] > limit:
            raise ProblemError(400, "Bad Request", f"more than {limit} points: use a wider bucket", "bucket")


def _context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


Ctx = Annotated[Context, Depends(_context)]
_bearer = HTTPBearer(auto_error=False)


def _authorised(ctx: Ctx, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    if not ctx.tokens:
        return  # mutual TLS: the TLS handshake authenticated the client
    given = credentials.credentials.encode() if credentials is not None else b""
    if not any(hmac.compare_digest(given, token) for token in ctx.tokens):
        raise ProblemError(401, "Unauthorized", "a valid bearer token is required", "Authorization")


@dataclass(frozen=True, slots=True)
class Where:
    """Which machines a request asks about: by site, line and machine (None: any)."""

    site: str | None
    line: str | None
    machine: str | None


def _where(site: Site = None, line: Line = None, machine: MachineId = None) -> Where:
    return Where(site, line, machine)


Selected = Annotated[Where, Depends(_where)]


def _select(conn: Connection, where: Where) -> list[queries.MachineRow]:
    """Return the machines the filters select; a filter that selects nothing is a 404 naming it."""
    site, line, machine = where.site, where.line, where.machine
    found = queries.machines(conn, site=site, line=line, machine=machine)
    if found:
        return found
    for name, value in (("machine", machine), ("line", line), ("site", site)):
        if value is not None and not queries.known(conn, name, value):
            raise ProblemError(404, "Not Found", f"no {name} {value!r} in the historian", name)
    if any(v is not None for v in (site, line, machine)):
        raise ProblemError(404, "Not Found", "no machine matches site, line and machine together", "machine")
    return found


router = APIRouter(dependencies=[Depends(_authorised)], responses=_ERRORS)


@router.get("/machines/status", response_model=list[MachineStatus])
def machines_status(ctx: Ctx, where: Selected) -> list[MachineStatus]:
    """The machines' online flag, current state, active fault and the KPIs their edge published last."""
    with ctx.db() as conn:
        found = _select(conn, where)
        return _statuses(found, queries.status(conn, [m.id for m in found]))


@router.get("/kpi/current", response_model=list[CurrentKpis])
def kpi_current(
    ctx: Ctx,
    where: Selected,
    at: Annotated[dt.datetime | None, Query(description="The window's end (default now).")] = None,
    window_s: Annotated[float | None, Query(ge=60, le=86_400, description="Default: the machine's own.")] = None,
    until: Annotated[
        dt.datetime | None,
        Query(
            description="Use samples up to this time only (default `at`): to recompute a snapshot the edge "
            "published (`edge.data_until_ms`) from the data it had then."
        ),
    ] = None,
) -> list[CurrentKpis]:
    """OEE, A, P, Q over each machine's rolling window, from stored samples, by the edge's KPI engine.

    Without `at`, `until` and `window_s`, a machine's window ends at its newest KPI sample, as the
    historian's KPI refresh keeps it (at most a refresh interval behind); otherwise it is replayed.
    """
    at_ms = _ms(at, ctx.clock())
    until_ms = min(at_ms, _ms(until, at_ms / 1000))
    with ctx.db() as conn:
        found = _select(conn, where)
        ids = [m.id for m in found]
        bodies = queries.current_kpis(conn, ids) if (at, until, window_s) == (None, None, None) else {}
        missing = [m for m in found if m.id not in bodies]
        configs = [(m.id, m.machine, _kpi_config(ctx.config, m, window_s)) for m in missing]
        for m, snapshot in zip(missing, window_snapshots(conn, configs, at_ms, until_ms), strict=True):
            bodies[m.id] = current_body(snapshot.window)
        edges = queries.edge_snapshots(conn, ids, at_ms)
        return [_current_kpis(m, bodies[m.id], edges.get(m.id)) for m in found]


@router.get("/kpi/trend", response_model=list[Trend])
def kpi_trend(
    ctx: Ctx,
    where: Selected,
    from_: From = None,
    to: To = None,
    bucket: Annotated[Literal["1m", "5m", "1h"], Query(description="The width of each point.")] = "5m",
) -> list[Trend]:
    """OEE, A, P, Q per bucket (default over the last 8 h), from the KPI minutes."""
    start, end = ctx.span(from_, to, 8 * 3600)
    ctx.points_fit(start, end, bucket)
    with ctx.db() as conn:
        return [_trend(conn, m, start, end, bucket) for m in _select(conn, where)]


@router.get("/faults/active", response_model=list[Fault])
def faults_active(ctx: Ctx, where: Selected) -> list[Fault]:
    """The faults going on now."""
    with ctx.db() as conn:
        found = {m.id: m for m in _select(conn, where)}
        rows = queries.faults(conn, list(found), active=True, limit=10_000)
    return [_fault(found[mid], s, e, c) for mid, s, e, c in rows]


@router.get("/faults/history", response_model=FaultPage)
def faults_history(
    ctx: Ctx,
    where: Selected,
    from_: From = None,
    to: To = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> FaultPage:
    """Faults overlapping [from, to) (default the last 24 h), by start time, a page at a time."""
    start, end = ctx.span(from_, to, 24 * 3600)
    size = min(limit or ctx.config.api.page_size, ctx.config.api.page_size)
    after = _cursor(cursor)
    with ctx.db() as conn:
        found = {m.id: m for m in _select(conn, where)}
        rows = queries.faults(conn, list(found), active=False, from_ms=start, to_ms=end, after=after, limit=size)
    more = _encode_cursor(rows[-1][1], rows[-1][0]) if len(rows) == size else None
    return FaultPage(faults=[_fault(found[mid], s, e, c) for mid, s, e, c in rows], next_cursor=more)


@router.get("/signals/history", response_model=SignalHistory)
def signals_history(
    ctx: Ctx,
    machine: Annotated[str, Query(max_length=64, pattern=NAME, description="The machine (its Sparkplug device id).")],
    signal: Annotated[str, Query(max_length=80, pattern=NAME, description="The signal, e.g. process.temperature.")],
    site: Site = None,
    line: Line = None,
    from_: From = None,
    to: To = None,
    bucket: Annotated[Literal["raw", "1m", "5m", "1h"], Query(description="Raw samples or a rollup.")] = "1m",
    limit: Limit = None,
    cursor: Cursor = None,
) -> SignalHistory:
    """One signal's samples (bucket=raw, a page at a time) or its rollup (min, max, avg, last, count, increase)."""
    start, end = ctx.span(from_, to, 3600)
    longest = ctx.config.api.max_raw_range_s
    if bucket == "raw" and end - start > longest * 1000:
        raise ProblemError(400, "Bad Request", f"raw samples span at most {longest} s: narrow it or use a rollup", "to")
    if bucket != "raw":
        ctx.points_fit(start, end, bucket)
    size = min(limit or ctx.config.api.page_size, ctx.config.api.page_size)
    with ctx.db() as conn:
        (found,) = _select(conn, Where(site, line, machine))[:1]
        series = queries.series_id(conn, found.id, signal)
        if series is None:
            raise ProblemError(404, "Not Found", f"machine {machine!r} has no signal {signal!r}", "signal")
        return _signal(conn, found, signal, series, bucket, (start, end), _cursor(cursor), size)


@router.get("/live", response_class=StreamingResponse)
async def live(
    ctx: Ctx,
    request: Request,
    where: Selected,
    events: Annotated[int | None, Query(ge=1, le=100_000, description="Stop after this many events.")] = None,
) -> StreamingResponse:
    """Server-sent events `status`: the machines' status (as /machines/status) whenever it changes."""

    def snapshot() -> list[dict[str, Any]]:
        with ctx.db() as conn:
            found = _select(conn, where)
            return [s.model_dump() for s in _statuses(found, queries.status(conn, [m.id for m in found]))]

    first = await asyncio.to_thread(snapshot)  # a bad filter fails here, as a problem, not mid-stream

    async def stream() -> AsyncIterator[str]:
        sent, last, current = 0, None, first
        while events is None or sent < events:
            if current != last:
                yield f"event: status\ndata: {json.dumps(current)}\n\n"
                sent, last = sent + 1, current
            if await request.is_disconnected():
                return
            await asyncio.sleep(LIVE_INTERVAL_S)
            current = await asyncio.to_thread(snapshot)

    return StreamingResponse(stream(), media_type="text/event-stream")


def create_app(
    config: HistorianConfig,
    pool: ConnectionPool[Connection],
    *,
    clock: Clock = time.time,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Return the KPI API over `pool`, accepting the bearer tokens of `config.api.token_file` (none: mTLS).

    Every request is timed (`telemetry.RequestTimer`); /metrics serves the histogram to a client
    authenticated as for any other route.
    """
    app = FastAPI(
        title="PlantLine KPI API",
        version="1",
        description="OEE, machine status and faults from the historian. Read-only; a bearer token or mutual TLS.",
        lifespan=lifespan,
    )
    app.state.context = Context(config, pool, clock, tuple(_tokens(config)))
    app.add_exception_handler(ProblemError, _on_problem)  # type: ignore[arg-type]  # Starlette types handlers loosely
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(psycopg.OperationalError, _on_database)  # type: ignore[arg-type]
    app.include_router(router)
    metrics = ApiMetrics.create()
    app.add_middleware(RequestTimer, metrics=metrics)

    @app.get(METRICS_PATH, include_in_schema=False, dependencies=[Depends(_authorised)])
    def prometheus_metrics() -> Response:
        """The request-duration histogram, behind the API's own authentication (a scrape brings its token)."""
        return Response(generate_latest(metrics.exposed), media_type=CONTENT_TYPE_LATEST)

    return app


def _tokens(config: HistorianConfig) -> list[bytes]:
    path = config.api.token_file
    if path is None:
        return []
    return [line.strip().encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def _on_problem(_request: Request, exc: ProblemError) -> JSONResponse:
    params = [] if exc.param is None else [{"name": exc.param, "reason": exc.detail}]
    response = _problem(exc.status, exc.title, exc.detail, params)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    params = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("query", "header")]
        params.append({"name": ".".join(location) or "request", "reason": str(error.get("msg", "invalid"))})
    names = ", ".join(p["name"] for p in params)
    return _problem(400, "Bad Request", f"invalid query parameter(s): {names}", params)


async def _on_database(_request: Request, _exc: psycopg.OperationalError) -> JSONResponse:
    return _problem(503, "Service Unavailable", "the database cannot be reached", [])


def _statuses(found: list[queries.MachineRow], status: dict[int, dict[str, Any]]) -> list[MachineStatus]:
    return [
        MachineStatus.model_validate({"site": m.site, "line": m.line, "machine": m.machine, **status.get(m.id, {})})
        for m in found
    ]


def _kpi_config(config: HistorianConfig, m: queries.MachineRow, window_s: float | None) -> KpiConfig:
    """Return the machine's own KPI configuration, with another window when `window_s` asks for one."""
    kpis = config.kpi_config(m.group_id, m.edge_node_id, m.machine)
    if window_s is None:
        return kpis
    return dataclasses.replace(kpis, window_s=window_s, resolution_s=min(kpis.resolution_s, window_s))


def _current_kpis(m: queries.MachineRow, body: dict[str, Any], edge: dict[str, Any] | None) -> CurrentKpis:
    return CurrentKpis(
        site=m.site,
        line=m.line,
        machine=m.machine,
        window=KpiFigures.model_validate({name: body[name] for name in KpiFigures.model_fields}),
        mttr_s=body["mttr_s"],
        mtbf_s=body["mtbf_s"],
        fault_count=body["fault_count"],
        warnings=body["warnings"],
        edge=edge,
    )


def _trend(conn: Connection, m: queries.MachineRow, start: int, end: int, bucket: str) -> Trend:
    width = queries.BUCKET_MS[bucket]
    first = start - start % width
    points = []
    for found in queries.bucket_totals(conn, m.id, first, end, width):
        totals, figures = found.totals, found.totals.figures()
        points.append(
            KpiFigures(
                start_ms=found.start_ms,
                end_ms=min(found.start_ms + width, found.end_ms),
                oee=figures.oee,
                availability=figures.availability,
                performance=figures.performance,
                quality=figures.quality,
                run_s=totals.run_ms / 1000,
                planned_s=totals.planned_ms / 1000,
                good=totals.good,
                reject=totals.reject,
                total=totals.total,
            )
        )
    return Trend(site=m.site, line=m.line, machine=m.machine, bucket=bucket, points=points)


def _fault(m: queries.MachineRow, started: int, ended: int | None, code: int) -> Fault:
    return Fault(site=m.site, line=m.line, machine=m.machine, code=code, started_ms=started, ended_ms=ended)


def _encode_cursor(ms: int, tiebreak: int) -> str:
    return base64.urlsafe_b64encode(f"{ms}:{tiebreak}".encode()).decode()


def _cursor(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        ms, tiebreak = base64.urlsafe_b64decode(text.encode()).decode().split(":")
        return int(ms), int(tiebreak)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ProblemError(400, "Bad Request", "not a cursor this API returned", "cursor") from None


def _signal(
    conn: Connection,
    m: queries.MachineRow,
    signal: str,
    series: int,
    bucket: str,
    span_ms: tuple[int, int],
    after: tuple[int, int] | None,
    limit: int,
) -> SignalHistory:
    start, end = span_ms
    qualities = ("good", "uncertain", "bad")
    more = None
    if bucket == "raw":
        rows = queries.raw(conn, series, start, end, None if after is None else after[0], limit)
        points = [SignalPoint(ts_ms=t, value=v, text=x, quality=qualities[q]) for t, v, x, q in rows]
        more = _encode_cursor(rows[-1][0], 0) if len(rows) == limit else None
    else:
        rows = queries.rolled(conn, series, bucket, start, end)
        points = [
            SignalPoint(ts_ms=t, value=avg, n=n, min=lo, max=hi, last=last, increase=inc)
            for t, n, lo, hi, avg, last, inc in rows
        ]
    return SignalHistory(
        site=m.site, line=m.line, machine=m.machine, signal=signal, bucket=bucket, points=points, next_cursor=more
    )
