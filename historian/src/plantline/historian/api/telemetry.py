"""The KPI API's request-duration histogram, timed by an ASGI middleware, and the registry /metrics serves.

Each request is timed to the start of its answer (an event stream's too, which then goes on) and
labelled with its route template, never the raw path, so that the series stay few. With several
uvicorn workers each process writes its samples to `$PROMETHEUS_MULTIPROC_DIR` (the server sets
it) and /metrics adds up every worker's, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plantline.connectors.metric_names import API_REQUEST_DURATION

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it
UNMATCHED = "unmatched"  # the route label of a request no route answers (404)


@dataclass(frozen=True)
class ApiMetrics:
    """The API's histogram, and the registry its /metrics exposes (every worker's, with several)."""

    duration: Histogram
    exposed: CollectorRegistry

    @classmethod
    def create(cls) -> ApiMetrics:
        own = CollectorRegistry()
        metric = API_REQUEST_DURATION
        duration = Histogram(metric.family, metric.help, metric.labels, buckets=metric.buckets, registry=own)
        if os.environ.get(MULTIPROCESS_ENV):
            exposed = CollectorRegistry()
            MultiProcessCollector(exposed)  # type: ignore[no-untyped-call]
            return cls(duration, exposed)
        return cls(duration, own)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestTimer:
    """ASGI middleware: observes each HTTP request's time to its response start, by route and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app, self.metrics, self.clock = app, metrics, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        answered = False

        async def timed_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._observe(scope, str(message["status"]), started)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not answered:  # an exception the server answers with 500, past this middleware
                self._observe(scope, "500", started)

    def _observe(self, scope: Scope, status: str, started: float) -> None:
        self.metrics.duration.labels(_route(scope), status).observe(self.clock() - started)
