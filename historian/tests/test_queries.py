"""The KPI API's reads against a real PostgreSQL, where what they answer is not obvious from the SQL."""

from __future__ import annotations

import random

import pytest

from plantline.historian import queries
from plantline.historian.schema import migrate
from plantline.historian.store import connect

pytestmark = pytest.mark.peer

T0 = 1_763_769_600_000
H = 3_600_000


def test_fault_pages_hold_every_fault_overlapping_the_span_once_in_start_order(dsn: str) -> None:
    rng = random.Random(11)
    conn = connect(dsn)
    migrate(conn)
    conn.execute("INSERT INTO machines (group_id, edge_node_id, device_id, site, line) SELECT 'g', 'n', 'm' || i,"
                 " 's', 'l' FROM generate_series(1, 4) i")  # fmt: skip
    faults = []
    for machine in (1, 2, 3, 4):
        for _ in range(60):  # over three days, some lasting hours, some still going on
            start = T0 + rng.randrange(0, 72 * H)
            end = None if rng.random() < 0.05 else start + rng.choice([1_000, 60_000, 5 * H])
            faults.append((machine, start, end, rng.randrange(1, 9)))
    faults.append((1, T0 + 24 * H - 1, T0 + 24 * H, 5))  # ends exactly where the span starts: overlaps
    faults.append((2, T0 + 48 * H, T0 + 49 * H, 5))  # starts exactly where it ends: does not
    faults.append((3, T0 + 30 * H, T0 + 30 * H + 10, 1))  # the same start on two machines: both, in machine order
    faults.append((4, T0 + 30 * H, None, 2))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO faults (machine_id, started_at, ended_at, code) VALUES (%s, at_ms(%s), at_ms(%s), %s)"
            " ON CONFLICT DO NOTHING",
            faults,
        )
    stored = conn.execute("SELECT machine_id, ms(started_at), ms(ended_at), code FROM faults").fetchall()
    start, end = T0 + 24 * H, T0 + 48 * H
    expected = sorted((f for f in stored if f[1] < end and (f[2] is None or f[2] >= start)), key=lambda f: (f[1], f[0]))
    assert any(f[1] < start for f in expected)  # some began before the span, and some are still going on
    assert any(f[2] is None for f in expected)
    for machines in ([1, 2, 3, 4], [2, 3]):
        pages, after = [], None
        while True:
            page = queries.faults(conn, machines, active=False, from_ms=start, to_ms=end, after=after, limit=7)
            pages += page
            if len(page) < 7:
                break
            after = (page[-1][1], page[-1][0])
        assert pages == [f for f in expected if f[0] in machines]
    active = queries.faults(conn, [1, 2, 3, 4], active=True, limit=1000)
    assert active == sorted((f for f in stored if f[2] is None), key=lambda f: (f[1], f[0]))
    conn.close()
