"""The KPI API fuzzed with schemathesis against its own OpenAPI description: no 5xx, answers as described."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_input_makes_the_api_fail(client: Any, api_token: str) -> None:
    # /live streams until its client goes; it is exercised in test_api with `events`.
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app).exclude(path="/live")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert {op.path for op in operations} == {
        "/machines/status", "/kpi/current", "/kpi/trend", "/faults/active", "/faults/history", "/signals/history"
    }  # fmt: skip
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {api_token}"}, checks=CHECKS)

        fuzz()
