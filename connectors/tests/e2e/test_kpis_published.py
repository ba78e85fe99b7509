"""KPIs computed at the edge reach a Sparkplug host as device metrics, and Prometheus as gauges."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from plantline.connectors.sparkplug import DataType, MessageType

pytestmark = [pytest.mark.peer, pytest.mark.slow]

KPI_SIGNALS = {
    "state.run": "bool",
    "state.idle": "bool",
    "state.blocked": "bool",
    "state.starved": "bool",
    "state.planned_stop": "bool",
    "counter.good": "uint32",
    "counter.reject": "uint32",
    "counter.total": "uint32",
    "cycle.ideal": "double",
    "fault.active": "bool",
    "fault.code": "int32",
}


def test_kpis_are_born_and_published(line: Any) -> None:
    config = yaml.safe_load(line.config_path.read_text())
    device = config["devices"][0]
    device["tags"] = [{"signal": s, "address": f"ns=2;s=Filler.{s}", "datatype": t} for s, t in KPI_SIGNALS.items()]
    device["kpi"] = {"publish_interval_s": 1, "window_s": 60}
    line.config_path.write_text(yaml.safe_dump(config))
    with line.reader() as reader:
        line.start_sim()
        line.start_connector()
        reader.wait_for(lambda: len(reader.values_of("filler", "kpi/oee")) >= 3, 60, "three kpi/oee values")
        dbirth = reader.of(MessageType.DBIRTH, "filler")[0].payload
        born = {m.name: m.datatype for m in dbirth.metrics}
        assert born["kpi/oee"] is DataType.Double
        assert born["fault/active_code"] is DataType.Int32
        assert {"kpi/availability", "kpi/performance", "kpi/quality", "kpi/mttr_s", "kpi/mtbf_s"} <= set(born)
        assert born["kpi/data_until"] is DataType.DateTime
        reader.wait_for(
            lambda: any(v.value is not None for v in reader.values_of("filler", "kpi/availability")),
            30,
            "an availability",
        )
        last = {name: reader.values_of("filler", name)[-1].value for name in ("kpi/availability", "kpi/quality")}
        a = last["kpi/availability"]
        assert isinstance(a, float)
        assert 0.0 <= a <= 1.0
        for v in reader.values_of("filler", "kpi/oee"):
            parts = [
                reader_value(reader, n, v.timestamp) for n in ("kpi/availability", "kpi/performance", "kpi/quality")
            ]
            if v.value is not None and all(p is not None for p in parts):
                assert math.isclose(v.value, parts[0] * parts[1] * parts[2], rel_tol=1e-9)  # type: ignore[operator]
        assert line.metric('plantline_kpi_availability_ratio{device="filler",scope="window"}') == pytest.approx(
            a, abs=0.2
        )
        stated = [v for v in reader.values_of("filler", "kpi/data_until") if v.value is not None]
        assert stated, "no kpi/data_until stated"
        for v in stated:  # the newest reading the figures were computed from: never after the snapshot
            assert isinstance(v.value, int)
            assert v.value <= v.timestamp
        assert not reader.errors


def reader_value(reader: Any, name: str, timestamp: int) -> object:
    return next((v.value for v in reader.values_of("filler", name) if v.timestamp == timestamp), None)
