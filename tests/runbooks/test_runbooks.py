"""The runbooks: one per alert and an alert per runbook, and their runnable commands work on a live line.

Every block fenced as `sh runnable` runs, in a fresh bash with `-euo pipefail`, against one line
started with `plantline up --simulate --monitoring`, with the variables runbooks/README.md lists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantline.dashboards.line import DEFAULT_RUNBOOK_BASE
from plantline.dashboards.rules import alert_names, rule_file
from plantline_testing.broker_exporter import broker_exporter
from plantline_testing.lines import REPO, UpRun, demo_line_view, free_run, line_copy
from plantline_testing.prometheus import PrometheusApi, wait_for

DEMO_VIEW = demo_line_view()  # the demo line with a bridge and the cloud bridge: every board and alert

RUNBOOKS = REPO / "runbooks"
SECTIONS = ("**Meaning.**", "**Impact.**", "## Diagnosis", "## Mitigation", "## Escalation")
RUNNABLE = re.compile(r"^```sh runnable\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCK_TIMEOUT_S = 120


def _alert_runbooks() -> dict[str, Path]:
    return {p.stem: p for p in RUNBOOKS.glob("*.md") if p.name != "README.md"}


def _blocks() -> list[tuple[str, str]]:
    found = []
    for path in sorted(RUNBOOKS.rglob("*.md")):
        for index, block in enumerate(RUNNABLE.findall(path.read_text())):
            found.append((f"{path.relative_to(RUNBOOKS)}#{index + 1}", block))
    return found


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    assert sorted(_alert_runbooks()) == sorted(alert_names(DEMO_VIEW))


def test_each_runbook_url_resolves_to_its_file() -> None:
    assert DEMO_VIEW.runbook_base == DEFAULT_RUNBOOK_BASE
    for group in rule_file(DEMO_VIEW)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                relative = rule["annotations"]["runbook_url"].removeprefix(f"{DEFAULT_RUNBOOK_BASE}/")
                assert (RUNBOOKS / relative).is_file(), rule["annotations"]["runbook_url"]


@pytest.mark.parametrize("alert", sorted(_alert_runbooks()))
def test_each_runbook_has_meaning_impact_diagnosis_mitigation_escalation_and_a_runnable_command(alert: str) -> None:
    text = _alert_runbooks()[alert].read_text()
    assert text.startswith(f"# {alert}\n")
    positions = [text.find(section) for section in SECTIONS]
    assert -1 not in positions, dict(zip(SECTIONS, positions, strict=True))
    assert positions == sorted(positions)
    assert RUNNABLE.search(text), f"{alert} has no runnable command"
    assert f"[{alert}.md]({alert}.md)" in (RUNBOOKS / "README.md").read_text()


def test_procedure_links_resolve() -> None:
    for path in RUNBOOKS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name} links to {target}"


@pytest.fixture(scope="module")
def live_line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the demo line with monitoring; return the variables the runnable blocks read."""
    root = tmp_path_factory.mktemp("runbooks")
    data = line_copy(root / "line.yaml")
    port = free_run(3)
    args = ["--monitoring", "--prometheus-port", str(port), "--broker-exporter", str(broker_exporter())]
    run = UpRun(root / "line.yaml", root / "state", up_args=args)
    try:
        run.up_detached()
        api = PrometheusApi(f"http://127.0.0.1:{port}")
        wait_for(lambda: api.query("plantline:ingest_lag_slow:ratio_rate5m"), 150, "the line's recorded SLOs")
        wait_for(lambda: api.query('mosquitto_connected{topic="$sys_broker_clients"}'), 60, "the broker's $SYS")
        spec = data["spec"]
        (root / "work").mkdir()
        yield {
            "LINE": str(root / "line.yaml"),
            "STATE": str(root / "state"),
            "LINE_ID": f"{spec['site']}-{spec['line']}",
            "PROM": api.url,
            "BROKER_HOST": spec["broker"]["host"],
            "BROKER_PORT": str(spec["broker"]["port"]),
            "WORK": str(root / "work"),
        }
    finally:
        run.down()
        run.kill_all()


@pytest.mark.peer
@pytest.mark.slow
def test_every_runnable_command_works_on_a_live_line(live_line: dict[str, str]) -> None:
    blocks = _blocks()
    assert len(blocks) >= 20
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}:/usr/sbin"
    env = {**os.environ, **live_line, "PATH": path}
    env.pop("PLANTLINE_PKI_PASSPHRASE", None)
    failed = []
    for where, block in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], env=env, cwd=live_line["WORK"],
            capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            failed.append(f"{where} exited {done.returncode}:\n{block}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    assert failed == [], "\n\n".join(failed)
