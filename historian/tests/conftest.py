"""A real PostgreSQL for the historian's tests: one cluster per session, a fresh database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

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
