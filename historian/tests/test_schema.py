"""Versioned migrations: applied once, in order; a database newer than the code is refused."""

from __future__ import annotations

import psycopg
import pytest

from plantline.historian.schema import SchemaTooNew, current_version, migrate, migrations

pytestmark = pytest.mark.peer


def test_migrations_apply_once_in_order(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        assert current_version(conn) == 0
        applied = migrate(conn)
        assert applied == [m.version for m in migrations()]
        assert migrate(conn) == []
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"samples", "series", "machines", "rollup_1m", "kpi_minutes", "faults", "machine_states"} <= tables


def test_a_database_newer_than_the_code_is_refused(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        newest = migrations()[-1].version
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'from_the_future')", (newest + 1,))
        conn.commit()
        with pytest.raises(SchemaTooNew, match=f"version {newest + 1}"):
            migrate(conn)
