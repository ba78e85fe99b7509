"""The KPI API over a real PostgreSQL filled by the historian's own store and refreshers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plantline.connectors.kpi import KpiEngine
from plantline.connectors.samples import Sample
from plantline.historian import queries
from plantline.historian.api.models import KpiFigures
from plantline.historian.kpi import KPI_SIGNALS, MINUTE_MS, combine, current_body
from plantline.historian.readings import window_snapshot
from plantline.historian.store import connect
from plantline_testing.machines import T0

pytestmark = pytest.mark.peer

END = T0 + 60 * MINUTE_MS  # as the `client` fixture's clock


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def test_current_kpis_are_the_edge_engines_on_the_same_samples(client: TestClient, line: Any) -> None:
    _, data = line
    at = T0 + 40 * MINUTE_MS + 1234
    engine = KpiEngine("filler", line[0].kpi_config("site1", "line1", "filler"))
    for sample in data["filler"]:
        if sample.source_ts_ms <= at:
            engine.update(sample)
    expected = engine.snapshot(at).window
    response = client.get("/kpi/current", params={"machine": "filler", "at": iso(at)})
    assert response.status_code == 200, response.text
    (got,) = response.json()
    assert got["window"]["start_ms"] == expected.start_ms
    for name in ("oee", "availability", "performance", "quality", "total", "good"):
        assert got["window"][name] == getattr(expected, name), name


def full_replays(config: Any, samples: list[Sample], times: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    """Return the body /kpi/current gives for each (until, at), from one engine fed every sample up to `until`."""
    ordered = iter(sorted((s for s in samples if s.signal in KPI_SIGNALS), key=lambda s: (s.source_ts_ms, s.signal)))
    engine, out = KpiEngine(samples[0].device, config), {}
    pending = next(ordered, None)
    for until, at in sorted(times):
        while pending is not None and pending.source_ts_ms <= until:
            engine.update(pending)
            pending = next(ordered, None)
        out[(until, at)] = current_body(engine.snapshot(at).window)
    return out


def as_answered(body: dict[str, Any]) -> dict[str, Any]:
    """Return a `kpi.current_body` as /kpi/current answers it (the window's figures apart)."""
    window = {name: body[name] for name in KpiFigures.model_fields}
    return {"window": window, **{name: body[name] for name in ("mttr_s", "mtbf_s", "fault_count", "warnings")}}


def test_current_kpis_at_any_time_are_the_engine_fed_every_sample(client: TestClient, line: Any) -> None:
    config, data = line
    rng = random.Random(7)
    times = [(at, at) for at in (rng.randrange(T0 + MINUTE_MS, END + 5 * MINUTE_MS) for _ in range(30))]
    times += [(at - rng.randrange(1, 90_000), at) for at in (rng.randrange(T0 + 2 * MINUTE_MS, END) for _ in range(8))]
    expected = {d: full_replays(config.kpi_config("site1", "line1", d), data[d], times) for d in ("capper", "filler")}
    for until, at in times:
        response = client.get("/kpi/current", params={"line": "l1", "at": iso(at), "until": iso(until)})
        assert response.status_code == 200, response.text
        for got in response.json():
            assert {k: got[k] for k in ("window", "mttr_s", "mtbf_s", "fault_count", "warnings")} == as_answered(
                expected[got["machine"]][(until, at)]
            ), (got["machine"], until, at)


def test_another_window_is_replayed_from_a_minute_before_it(client: TestClient, line: Any) -> None:
    config, _ = line
    at = T0 + 50 * MINUTE_MS + 777
    own = client.get("/kpi/current", params={"machine": "capper", "at": iso(at)}).json()
    assert client.get("/kpi/current", params={"machine": "capper", "at": iso(at), "window_s": 900}).json() == own
    longer = client.get("/kpi/current", params={"machine": "capper", "at": iso(at), "window_s": 1800}).json()
    kpis = dataclasses.replace(config.kpi_config("site1", "line1", "capper"), window_s=1800.0)
    with connect(config.database.conninfo()) as conn:
        (capper,) = queries.machines(conn, site=None, line=None, machine="capper")
        replayed = window_snapshot(conn, capper.id, "capper", kpis, at, at)
    assert longer[0]["window"]["start_ms"] == at - 1800_000 - (at - 1800_000) % 5000
    assert {k: longer[0][k] for k in ("window", "mttr_s", "mtbf_s")} == {
        k: v for k, v in as_answered(current_body(replayed.window)).items() if k in ("window", "mttr_s", "mtbf_s")
    }


def test_current_kpis_without_a_time_are_the_window_replayed_at_the_newest_sample(
    client: TestClient, line: Any
) -> None:
    _, data = line
    newest = max(s.source_ts_ms for s in data["capper"] if s.signal in KPI_SIGNALS)
    kept = client.get("/kpi/current", params={"machine": "capper"})
    replayed = client.get("/kpi/current", params={"machine": "capper", "at": iso(newest)})
    assert kept.status_code == replayed.status_code == 200, kept.text
    assert kept.json()[0]["window"]["end_ms"] == newest  # not the clock's END: the data's own now
    assert kept.json() == replayed.json()


def test_trend_points_add_up_the_minutes(client: TestClient, line: Any) -> None:
    response = client.get("/kpi/trend", params={"machine": "capper", "from": iso(T0), "to": iso(END), "bucket": "5m"})
    assert response.status_code == 200, response.text
    (trend,) = response.json()
    assert len(trend["points"]) == 12
    with connect(line[0].database.conninfo()) as conn:
        (capper,) = queries.machines(conn, site=None, line=None, machine="capper")
        minutes = queries.minutes(conn, capper.id, T0, END)
    for point in trend["points"]:
        inside = [m for m in minutes if point["start_ms"] <= m.start_ms < point["start_ms"] + 5 * MINUTE_MS]
        assert point["oee"] == combine(inside).figures().oee
    hourly = client.get("/kpi/trend", params={"machine": "capper", "from": iso(T0), "to": iso(END), "bucket": "1h"})
    (point,) = hourly.json()[0]["points"]
    assert point["total"] == sum(p["total"] for p in trend["points"])
    assert 0 < point["oee"] <= 1


def test_status_faults_and_signal_history(client: TestClient) -> None:
    status = client.get("/machines/status", params={"line": "l1"}).json()
    assert [(m["machine"], m["online"]) for m in status] == [("capper", True), ("filler", True)]
    assert all(m["state"] in {"run", "idle", "blocked", "starved", "planned_stop", "unknown"} for m in status)
    pages, cursor = [], None
    while True:
        params = {"from": iso(T0), "to": iso(END), **({"cursor": cursor} if cursor else {})}
        page = client.get("/faults/history", params=params).json()
        pages += page["faults"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages, "the simulated hour has faults"
    assert len({(f["machine"], f["started_ms"]) for f in pages}) == len(pages), "pages do not overlap"
    assert pages == sorted(pages, key=lambda f: (f["started_ms"], f["machine"]))
    hist = client.get(
        "/signals/history",
        params={"machine": "filler", "signal": "process.temperature", "from": iso(T0), "to": iso(END), "bucket": "1h"},
    ).json()
    (hour,) = hist["points"]
    assert (hour["n"], hour["min"], hour["max"]) == (3600, 20.0, 26.0)
    counters = client.get(
        "/signals/history",
        params={"machine": "filler", "signal": "counter.total", "from": iso(T0), "to": iso(END), "bucket": "1h"},
    ).json()
    assert counters["points"][0]["increase"] > 0


@pytest.mark.parametrize(
    ("path", "params", "status", "name"),
    [
        ("/kpi/current", {"machine": "nope"}, 404, "machine"),
        ("/kpi/trend", {"line": "nope"}, 404, "line"),
        ("/kpi/trend", {"from": iso(END), "to": iso(T0)}, 400, "from"),
        ("/kpi/trend", {"bucket": "2m"}, 400, "bucket"),
        ("/kpi/trend", {"from": iso(T0 - 400 * 86_400_000), "bucket": "1m"}, 400, "bucket"),
        ("/signals/history", {"machine": "filler", "signal": "process.temperature", "bucket": "raw",
                              "from": iso(T0 - 86_400_000)}, 400, "to"),
        ("/signals/history", {"machine": "filler", "signal": "process.nothing"}, 404, "signal"),
        ("/faults/history", {"cursor": "%%%"}, 400, "cursor"),
        ("/kpi/current", {"window_s": "5"}, 400, "window_s"),
    ],
)  # fmt: skip
def test_bad_input_is_a_problem_naming_the_parameter(
    client: TestClient, path: str, params: dict[str, str], status: int, name: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert name in [p["name"] for p in problem["invalid-params"]]


def test_without_the_token_nothing_is_served(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        response = client.get("/machines/status", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_live_streams_the_status_as_server_sent_events(client: TestClient) -> None:
    with client.stream("GET", "/live", params={"machine": "filler", "events": 1}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert text.startswith("event: status\ndata: [")
    assert '"machine": "filler"' in text
