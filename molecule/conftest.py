"""Shared testinfra support for the molecule scenarios' verify step.

Each scenario names its containers `pl-<scenario>-<role>-<run id>` (see molecule.yml); `hosts`
returns the testinfra host of one of them over podman exec. When a test fails, the journal of
every container the test touched is printed under the failure, as a reviewer would ask for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator

import pytest
import testinfra
from testinfra.host import Host

JOURNAL_LINES = 120

HostFactory = Callable[[str], Host]


def container_name(role: str) -> str:
    """Return the container name of `role` in the running scenario."""
    scenario = os.environ["MOLECULE_SCENARIO_NAME"].replace("_", "-")
    return f"pl-{scenario}-{role}-{os.environ['PLANTLINE_RUN_ID']}"


@pytest.fixture
def hosts(request: pytest.FixtureRequest) -> HostFactory:
    """Return a factory of testinfra hosts by role; the test records which ones it used."""
    used: dict[str, Host] = {}
    request.node.stash[_USED] = used

    def get(role: str) -> Host:
        if role not in used:
            used[role] = testinfra.get_host(f"podman://{container_name(role)}")
        return used[role]

    return get


_USED = pytest.StashKey[dict[str, Host]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Return the test's report, with the journal of every container it used when it failed."""
    report = yield
    if report.when != "call" or not report.failed:
        return report
    for role, host in item.stash.get(_USED, {}).items():
        journal = host.run(f"journalctl --no-pager -o short-precise -n {JOURNAL_LINES}")
        report.sections.append((f"journalctl of {role} ({container_name(role)})", journal.stdout + journal.stderr))
    return report
