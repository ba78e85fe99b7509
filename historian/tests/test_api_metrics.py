"""The KPI API times every request by route template and serves the histogram on /metrics, authenticated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from plantline.connectors.metric_names import API_REQUEST_DURATION
from plantline.historian.api.app import create_app
from plantline.historian.api.telemetry import MULTIPROCESS_ENV, ApiMetrics
from plantline.historian.config import HistorianConfig

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class DownPool:
    """A pool whose database is away: every route that reads answers 503, after a measurable while."""

    def connection(self) -> Any:
        raise psycopg.OperationalError("connection refused")


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    (tmp_path / "tokens").write_text(f"{TOKEN}\n")
    config = HistorianConfig.model_validate(
        {
            "mqtt": {"brokers": [{"host": "127.0.0.1", "insecure_plaintext": True}]},
            "database": {"dsn": "dbname=none"},
            "lines": [{"site": "s1", "line": "l1", "group_id": "site1", "edge_node_ids": ["line1"]}],
            "api": {"token_file": str(tmp_path / "tokens")},
        }
    )
    return TestClient(create_app(config, cast(Any, DownPool())))


def _counts(client: TestClient) -> dict[tuple[str, str], float]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    (family,) = (f for f in text_string_to_metric_families(response.text) if f.name == API_REQUEST_DURATION.family)
    return {
        (s.labels["route"], s.labels["status"]): s.value
        for s in family.samples
        if s.name == f"{API_REQUEST_DURATION.name}_count"
    }


def test_requests_are_counted_by_route_template_and_status(client: TestClient) -> None:
    for machine in ("filler", "capper"):
        assert client.get("/kpi/current", params={"machine": machine}, headers=AUTH).status_code == 503
    assert client.get("/kpi/current").status_code == 401
    assert client.get("/no/such/route", headers=AUTH).status_code == 404
    counts = _counts(client)
    assert counts[("/kpi/current", "503")] == 2  # one series for both machines: the template, not the path
    assert counts[("/kpi/current", "401")] == 1
    assert counts[("unmatched", "404")] == 1


def test_the_histogram_has_a_bucket_at_the_objective(client: TestClient) -> None:
    client.get("/machines/status", headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    assert f'{API_REQUEST_DURATION.name}_bucket{{le="0.25",route="/machines/status",status="503"}} 1.0' in text


def test_metrics_need_the_same_authentication_as_the_api(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


WORKER = """
from plantline.historian.api.telemetry import ApiMetrics
ApiMetrics.create().duration.labels("/kpi/current", "200").observe(0.1)
"""


def test_several_workers_share_their_samples_through_the_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    for _worker in range(2):  # processes of their own, as uvicorn's workers are
        subprocess.run([sys.executable, "-c", WORKER], check=True, env=os.environ.copy())
    text = generate_latest(ApiMetrics.create().exposed).decode()
    assert f'{API_REQUEST_DURATION.name}_count{{route="/kpi/current",status="200"}} 2.0' in text
