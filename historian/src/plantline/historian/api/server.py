"""Serve the KPI API with uvicorn: TLS when configured, mutual TLS with a client CA, bearer tokens otherwise.

Its database sessions are read-only (`default_transaction_read_only`); give its database role
SELECT rights only, as the historian's docs describe.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from plantline.historian.api.app import create_app
from plantline.historian.api.telemetry import MULTIPROCESS_ENV
from plantline.historian.config import ApiSettings, HistorianConfig, load_config
from plantline.historian.store import Connection

SESSION = r"-c timezone=UTC -c default_transaction_read_only=on -c default_transaction_isolation=repeatable\ read"


def open_pool(config: HistorianConfig, *, max_size: int = 8) -> ConnectionPool[Connection]:
    """Return an open pool of read-only, UTC sessions whose transactions each read one snapshot.

    Repeatable read: a request's statements (a KPI checkpoint, then the samples after it) see the
    same data, whatever ingest and the refresh commit meanwhile.
    """
    return ConnectionPool(
        config.database.conninfo(), min_size=1, max_size=max_size, kwargs={"options": SESSION}, open=True
    )


CONFIG_ENV = "PLANTLINE_HISTORIAN_CONFIG"  # how each worker process finds the configuration


def app() -> FastAPI:
    """Return the API of the configuration $PLANTLINE_HISTORIAN_CONFIG names (uvicorn's factory, per worker)."""
    config = load_config(Path(os.environ[CONFIG_ENV]))
    pool = open_pool(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    return create_app(config, pool, lifespan=lifespan)


def serve(config: HistorianConfig, path: Path) -> None:
    """Serve until interrupted, with `api.workers` processes; refuse to serve without any authentication."""
    api = config.api
    if api.token_file is None and api.client_ca_file is None:
        raise ValueError(
            "api: set token_file (bearer tokens) or client_ca_file (mutual TLS); the API never serves anonymously"
        )
    os.environ[CONFIG_ENV] = str(path.resolve())
    with _shared_metrics(api.workers):
        _run(api)


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, give them a directory to share their metrics in, for the lifetime of the server."""
    if workers == 1 or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="plantline-api-metrics-") as directory:
        os.environ[MULTIPROCESS_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_ENV]


def _run(api: ApiSettings) -> None:
    uvicorn.run(
        "plantline.historian.api.server:app",
        factory=True,
        workers=api.workers,
        host=api.host,
        port=api.port,
        ssl_certfile=str(api.cert_file) if api.cert_file else None,
        ssl_keyfile=str(api.key_file) if api.key_file else None,
        ssl_ca_certs=str(api.client_ca_file) if api.client_ca_file else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if api.client_ca_file else ssl.CERT_NONE,
        log_level="warning",
        access_log=False,
    )
