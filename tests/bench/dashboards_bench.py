"""Rendering a 200-machine line's dashboards and rules, and the Prometheus series a machine costs.

1. render: `render_files(view)` (four dashboards as JSON, the rule file as YAML) for a line of
   --machines machines, each read for the demo's 13 signals, in one connector (perLine) and in one
   connector per machine (perMachine: six alerts per connector). Baseline: the same for a
   one-machine line; the ratio is how the cost grows with the line. Bounded by --seconds.
2. cardinality (unless --no-live): `plantline up --simulate --monitoring` runs the demo line
   (3 machines, one connector) until the connector has published KPIs, then Prometheus is asked
   how many series each source gives: per machine (series with a `device` label, divided by the
   machines), per connector (the rest of its series), the broker exporter, the certificate facts
   and the recording rules; and the total a --machines line would have. Figures only, no baseline.
   With --cloud-bridge, the line runs the cloud bridge too (`--cloud`, to a one-node Kafka from
   plantline_testing.kafka), and its series (with the recording rules of its SLO) are counted.

Run: uv run --all-packages python tests/bench/dashboards_bench.py [--seconds S] [--machines N]
[--no-live] [--cloud-bridge] [--format table|json]. Progress goes to stderr, the results table (or JSON) to stdout.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import harness
from harness import Budget, Row
from plantline.connectors.metric_names import KPI_FAULT_ACTIVE_CODE, KPI_GAUGES, KPI_STATE
from plantline.dashboards import ConnectorView, LineView, MachineView, render_files
from plantline.dashboards.rules import alert_rules

if TYPE_CHECKING:
    from plantline_testing.prometheus import PrometheusApi

# Inside a shift every KPI gauge but the active fault code and the state (window only) has a `scope="shift"` series too.
SHIFT_SERIES = len([g for g in KPI_GAUGES if g not in (KPI_FAULT_ACTIVE_CODE, KPI_STATE)])

SIGNALS = (
    "state.run", "state.idle", "state.blocked", "state.starved", "state.planned_stop", "fault.active",
    "fault.code", "counter.good", "counter.reject", "counter.total", "cycle.time", "process.temperature",
    "process.fill_level",
)  # fmt: skip

progress = harness.progress("dashboards-bench")


def line(machines: int, *, per_machine: bool) -> LineView:
    """Return a line of `machines` machines, in one connector or one connector per machine."""
    ids = tuple(f"m{i:03d}" for i in range(machines))
    connectors = (
        tuple(ConnectorView(i, (i,)) for i in ids) if per_machine else (ConnectorView("line1", ids),)
    )  # fmt: skip
    return LineView(
        name="site1-line1", namespace="plantline", site="site1", area="area1", line="line1",
        machines=tuple(MachineView(i, "s7", SIGNALS) for i in ids), connectors=connectors,
        bridge="site1-line1-bridge", cloud_bridge=True,
    )  # fmt: skip


def _ms_per_render(view: LineView, budget: Budget) -> float | None:
    rate = harness.timed(harness.repeated(lambda: render_files(view), most=16), budget, warm_up=True)
    per_second = rate.per_second
    return 1000 / per_second if per_second else None


def render_rows(machines: int, budget: Budget) -> list[Row]:
    rows = []
    for per_machine in (False, True):
        big, one = line(machines, per_machine=per_machine), line(1, per_machine=per_machine)
        grouping = "perMachine" if per_machine else "perLine"
        progress(f"render {machines} machines, {grouping}")
        size = sum(len(text) for text in render_files(big).values())
        rows.append(
            Row(
                f"render dashboards + rules, {machines} machines, {grouping}", _ms_per_render(big, budget),
                "ms", "1 machine", _ms_per_render(one, budget),
                f"{len(alert_rules(big))} alerts, {size / 1e6:.2f} MB of files",
            )
        )  # fmt: skip
    return rows


def _count(api: PrometheusApi, expr: str) -> float:
    found = api.query(expr)
    return float(found[0]["value"][1]) if found else 0.0


def _wait(probe: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(1)


@contextlib.contextmanager
def _cloud(root: Path, wanted: bool) -> Iterator[list[str]]:
    """Yield `plantline up`'s arguments for the cloud bridge to a Kafka started here (none unless `wanted`)."""
    if not wanted:
        yield []
        return
    from plantline_testing import free_port
    from plantline_testing.kafka import KafkaServer
    from plantline_testing.lines import free_run

    kafka = KafkaServer.with_own_ca(root / "kafka", free_run(3), users={"bridge": "bridge-secret"})
    progress("starting Kafka for the cloud bridge")
    with kafka:
        url = f"kafka://bridge@{kafka.bootstrap}?password_file={kafka.directory / 'bridge-password'}&ca={kafka.ca_file}"
        yield ["--cloud", url, "--bridge-port", str(free_port())]


def cardinality_rows(machines: int, *, cloud_bridge: bool = False) -> list[Row]:
    from plantline_testing.broker_exporter import broker_exporter
    from plantline_testing.lines import UpRun, free_run, line_copy
    from plantline_testing.prometheus import PrometheusApi

    with tempfile.TemporaryDirectory(prefix="dashboards-bench-") as work, _cloud(Path(work), cloud_bridge) as cloud:
        root = Path(work)
        data = line_copy(root / "line.yaml")
        port = free_run(3)
        args = ["--monitoring", "--prometheus-port", str(port), "--broker-exporter", str(broker_exporter()), *cloud]
        run = UpRun(root / "line.yaml", root / "state", up_args=args)
        try:
            progress("starting plantline up --simulate --monitoring")
            run.up_detached()
            api = PrometheusApi(f"http://127.0.0.1:{port}")
            # the KPIs (in both scopes where a shift runs) and the recording rules must be in
            _wait(lambda: _count(api, "count(plantline_kpi_oee_ratio)") >= 3, 180, "the KPIs")
            _wait(lambda: _count(api, 'count({__name__=~"plantline:.+"})') > 0, 120, "the recording rules")
            if cloud_bridge:  # every machine's topic has had records, and the bridge's SLO is recorded
                _wait(lambda: _count(api, "count(plantline_bridge_records_total)") >= 3, 180, "the bridge's records")
                _wait(lambda: _count(api, "count(plantline:bridge_produce_slow:ratio_rate5m)") > 0, 120, "its SLO")
            time.sleep(10)
            demo = len(data["spec"]["machines"])
            in_shift = _count(api, 'count(plantline_kpi_oee_ratio{scope="shift"})') > 0
            device = _count(api, 'count({component="connector", device!=""})')
            connector = _count(api, 'count({component="connector", device=""})')
            broker = _count(api, 'count({component="broker"})')
            pki = _count(api, 'count({component="pki"})')
            bridge = _count(api, 'count({component="bridge"})')
            recorded = _count(api, 'count({__name__=~"plantline:.+"})')
        finally:
            run.down()
            run.kill_all()
    per_machine = device / demo
    if not in_shift:  # measured outside the line's shifts: count the shift scope's gauges too
        per_machine += SHIFT_SERIES
    when = "inside a shift" if in_shift else f"outside a shift, +{SHIFT_SERIES} shift-scope KPIs"
    recorded_notes = "with the cloud bridge's SLO" if cloud_bridge else ""
    rows = [
        Row("series per machine (device-labelled)", per_machine, "series", notes=f"{demo} machines, {when}"),
        Row("series per connector (no device label)", connector, "series", notes="with its process metrics"),
        Row("series of the broker exporter", broker, "series", notes="mqtt-exporter on $SYS"),
        Row("series of the certificate facts", pki, "series", notes="with up's process metrics"),
        Row("series of the recording rules, per line", recorded, "series", notes=recorded_notes),
    ]
    if cloud_bridge:
        rows.append(Row("series of the cloud bridge", bridge, "series", notes=f"{demo} topics, one per equipment type"))
    total = per_machine * machines + connector + broker + pki + recorded + bridge
    rows.append(Row(f"series of a {machines}-machine line (perLine)", total, "series",
                    notes="per machine x machines + the rest"))  # fmt: skip
    return rows


def main() -> int:
    parser = harness.arguments(__doc__, seconds=2.0)
    parser.add_argument("--machines", type=int, default=200, help="machines of the rendered line (default 200)")
    parser.add_argument("--no-live", action="store_true", help="skip the cardinality measurement on a live line")
    parser.add_argument("--cloud-bridge", action="store_true", help="the live line runs the cloud bridge to a Kafka")
    args = parser.parse_args()
    budget = harness.budget(parser, args)
    rows = render_rows(args.machines, budget)
    if not args.no_live:
        rows += cardinality_rows(args.machines, cloud_bridge=args.cloud_bridge)
    env = harness.environment(prometheus=harness.command_output("promtool", "--version").split("\n")[0])
    harness.report("dashboards: render time and Prometheus series", env, rows, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
