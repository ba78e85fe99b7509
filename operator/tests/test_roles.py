"""The role model: five roles, each confined to its own line's Sparkplug namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plantline.operator.api import PlantLine, PlantLineSpec, parse_plantline
from plantline.operator.roles import (
    DEVICE_MESSAGES,
    NODE_MESSAGES,
    ROLES,
    line_grants,
    state_topic,
    topic_matches,
    topology,
)

from .conftest import DEMO

NAMES = st.from_regex(r"^[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?$", fullmatch=True)
SPARKPLUG_IDS = st.from_regex(r"^[A-Za-z0-9_.-]{1,12}$", fullmatch=True)


def line_topics(spec: PlantLineSpec) -> list[str]:
    """Return every topic a line's edge nodes, devices and primary host use."""
    topics = []
    for connector in topology(spec):
        base = f"spBv1.0/{spec.sparkplug_group}"
        node = connector.edge_node_id
        topics += [f"{base}/{kind}/{node}" for kind in (*NODE_MESSAGES, "NCMD")]
        for machine in connector.machines:
            topics += [f"{base}/{kind}/{node}/{machine.id}" for kind in (*DEVICE_MESSAGES, "DCMD")]
    if spec.primary_host_id is not None:
        topics.append(state_topic(spec.primary_host_id))
    return topics


def _edge_nodes(spec: PlantLineSpec) -> set[tuple[str, str]]:
    return {(spec.sparkplug_group, c.edge_node_id) for c in topology(spec)}


@st.composite
def lines(draw: st.DrawFn, base: dict[str, Any]) -> PlantLine:
    data: dict[str, Any] = {**base, "spec": dict(base["spec"])}
    spec = data["spec"]
    # Few sites and groups, so that lines often share a Sparkplug group, as lines of one site do.
    spec["site"], spec["line"] = draw(st.sampled_from(["site1", "site2"])), draw(NAMES)
    spec["groupId"] = draw(st.none() | st.sampled_from(["site1", "plant.a"]) | SPARKPLUG_IDS)
    spec["edgeNodeId"] = draw(st.none() | SPARKPLUG_IDS)
    spec["primaryHostId"] = draw(st.none() | st.sampled_from(["scada", "mes"]) | SPARKPLUG_IDS)
    spec["connectors"] = {"grouping": draw(st.sampled_from(["perLine", "perMachine", "perProtocol"]))}
    if draw(st.booleans()):
        spec["broker"] = {**spec["broker"], "bridge": {"host": "core.example"}}
    try:
        return parse_plantline(data)
    except Exception:
        assume(False)
        raise


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_rule_of_one_line_matches_another_lines_topics(base: dict[str, Any], data: st.DataObject) -> None:
    one, other = data.draw(lines(base)), data.draw(lines(base))
    # Two lines of a plant are two lines: no shared edge node, no shared primary host.
    assume(not _edge_nodes(one.spec) & _edge_nodes(other.spec))
    assume(one.spec.primary_host_id is None or one.spec.primary_host_id != other.spec.primary_host_id)
    theirs = line_topics(other.spec)
    for grant in line_grants(one.spec):
        for rule in grant.rules:
            assert not [t for t in theirs if topic_matches(rule.topic, t)], (grant.identity, rule)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_rule_stays_in_the_lines_own_namespace(base: dict[str, Any], data: st.DataObject) -> None:
    line = data.draw(lines(base))
    group, nodes = line.spec.sparkplug_group, {c.edge_node_id for c in topology(line.spec)}
    state = state_topic(line.spec.primary_host_id) if line.spec.primary_host_id else None
    for grant in line_grants(line.spec):
        for rule in grant.rules:
            levels = rule.topic.split("/")
            assert rule.topic == state or (levels[1] == group and levels[3] in nodes), rule


def test_the_five_roles_and_who_holds_them(demo_data: Callable[[], dict[str, Any]]) -> None:
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    data["spec"]["broker"]["bridge"] = {"host": "core.example"}
    grants = {g.identity: g.role for g in line_grants(parse_plantline(data).spec)}
    assert grants == {
        "site1-line1-capper": "edge",
        "site1-line1-filler": "edge",
        "site1-line1-labeler": "edge",
        "site1-line1-bridge": "edge",
        "site1-line1-host": "host",
        "site1-line1-reader": "analytics",
        "site1-line1-dashboard": "dashboard",
        "site1-line1-admin": "admin",
    }
    assert set(grants.values()) == set(ROLES)


def test_only_the_host_and_the_admin_may_send_commands(demo_data: Callable[[], dict[str, Any]]) -> None:
    data = demo_data()
    data["spec"]["primaryHostId"] = "scada"
    grants = line_grants(parse_plantline(data).spec)
    command = "spBv1.0/site1/NCMD/line1-filler"

    def roles(excluded: str) -> set[str]:
        return {g.role for g in grants for r in g.rules if r.action != excluded and topic_matches(r.topic, command)}

    assert roles(excluded="subscribe") == {"host", "admin"}
    readers = roles(excluded="publish")
    assert readers == {"edge", "host", "analytics", "admin"}  # the dashboard reads no command


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("a/+/c/#", "a/b/c", True),
        ("a/+/c/#", "a/b/c/d/e", True),
        ("a/+/c/#", "a/b/x/c", False),
        ("a/+", "a/b/c", False),
        ("a/b", "a/b", True),
        ("#", "a", True),
    ],
)
def test_topic_matching(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matches(pattern, topic) is matches
