"""A real PostgreSQL for the historian's tests (one cluster per session, a fresh database per test), and a
database filled with an hour of two simulated machines behind the KPI API (`line`, `client`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from plantline.connectors.config import KpiSettings
from plantline.connectors.samples import Quality, Sample
from plantline.connectors.sparkplug import DataType, MessageType
from plantline.connectors.sparkplug.host import HostMetric, NodeKey, Release
from plantline.historian.api.app import create_app
from plantline.historian.api.server import open_pool
from plantline.historian.config import HistorianConfig
from plantline.historian.kpi import KPI_SIGNALS, MINUTE_MS
from plantline.historian.kpi_refresh import refresh_kpis
from plantline.historian.refresh import refresh_rollups
from plantline.historian.rows import Rows
from plantline.historian.schema import migrate
from plantline.historian.store import Store, connect
from plantline_testing.machines import T0, simulated_samples
from plantline_testing.postgres import PostgresCluster

_names = itertools.count()


@pytest.fixture(scope="session")
def cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def dsn(cluster: PostgresCluster) -> str:
    """Return the connection string of a new, empty database."""
    name = f"t{next(_names)}"
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster.dsn.replace("dbname=plantline", f"dbname={name}")


TOKEN = "s3cret-token"
END = T0 + 60 * MINUTE_MS  # the API's clock: an hour of data before it
TYPES = {"state": DataType.Boolean, "counter": DataType.UInt32, "fault": DataType.Int32, "cycle": DataType.Double}
END = T0 + 60 * MINUTE_MS


def config_for(dsn: str, tmp: Path) -> HistorianConfig:
    (tmp / "tokens").write_text(f"{TOKEN}\n")
    machines = {"filler": KpiSettings(ideal_cycle_s=0.5), "capper": KpiSettings(ideal_cycle_s=0.5)}
    return HistorianConfig.model_validate(
        {
            "mqtt": {"brokers": [{"host": "127.0.0.1", "insecure_plaintext": True}]},
            "database": {"dsn": dsn},
            "lines": [
                {"site": "s1", "line": "l1", "group_id": "site1", "edge_node_ids": ["line1"], "machines": machines}
            ],
            "api": {"token_file": str(tmp / "tokens"), "page_size": 5, "max_raw_range_s": 3600},
        }
    )


def _release(device: str, samples: list[Sample]) -> Release[Any]:
    metrics = tuple(
        HostMetric(
            s.signal, TYPES.get(s.signal.split(".")[0], DataType.Double), s.value, s.source_ts_ms, s.quality, False
        )
        for s in samples
    )
    return Release(0, MessageType.DDATA, NodeKey("site1", "line1"), device, metrics)


@pytest.fixture(scope="session")
def line(
    cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> tuple[HistorianConfig, dict[str, list[Sample]]]:
    with psycopg.connect(cluster.dsn, autocommit=True) as admin:
        admin.execute("CREATE DATABASE api")
    dsn = cluster.dsn.replace("dbname=plantline", "dbname=api")
    config = config_for(dsn, tmp_path_factory.mktemp("api"))
    conn = connect(dsn)
    migrate(conn)
    store = Store(conn, config.lines)
    data = {
        d: list(simulated_samples(d, 3600, seed=seed, signals=KPI_SIGNALS))
        for d, seed in (("filler", 3), ("capper", 5))
    }
    for device, samples in data.items():
        temps = [Sample(device, "process.temperature", 20.0 + i % 7, Quality.GOOD, T0 + i * 1000) for i in range(3600)]
        data[device] = samples + temps
        rows = Rows()
        rows.add(_release(device, samples + temps), T0)
        rows.add(Release(0, MessageType.DBIRTH, NodeKey("site1", "line1"), device, ()), T0)
        store.write(rows, messages=1)
    refresh_rollups(conn)
    refresh_kpis(conn, config)
    conn.close()
    return config, data


@pytest.fixture
def client(line: tuple[HistorianConfig, Any]) -> Iterator[TestClient]:
    config, _ = line
    with open_pool(config, max_size=2) as pool:
        app = create_app(config, pool, clock=lambda: END / 1000)
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
            yield test_client


@pytest.fixture
def api_token() -> str:
    return TOKEN
