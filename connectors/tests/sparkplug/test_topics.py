"""Sparkplug 3.0 topics and the STATE payload; tests named after the TCK assertion they check."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantline.connectors.sparkplug import (
    HostState,
    MessageType,
    Topic,
    format_topic,
    parse_state_payload,
    parse_topic,
    state_payload_offline,
    state_payload_online,
)

NODE_TYPES = [MessageType.NBIRTH, MessageType.NDEATH, MessageType.NDATA, MessageType.NCMD]
DEVICE_TYPES = [MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD]


@pytest.mark.parametrize("message_type", NODE_TYPES)
def test_topic_structure_node(message_type: MessageType) -> None:
    text = f"spBv1.0/Plant 1/{message_type}/Line-4"
    topic = Topic.node("Plant 1", message_type, "Line-4")
    assert format_topic(topic) == text == str(topic)
    assert parse_topic(text) == topic


@pytest.mark.parametrize("message_type", DEVICE_TYPES)
def test_topic_structure_device(message_type: MessageType) -> None:
    text = f"spBv1.0/site/{message_type}/line/Filler ①"
    topic = Topic.device("site", message_type, "line", "Filler ①")
    assert format_topic(topic) == text
    assert parse_topic(text) == topic
    assert topic.message_type.is_device


def test_host_topic_phid_birth_topic() -> None:
    # Sparkplug 3.0 moved STATE under the namespace: spBv1.0/STATE/<sparkplug_host_id>.
    topic = Topic.state("scada-primary")
    assert format_topic(topic) == "spBv1.0/STATE/scada-primary"
    assert parse_topic("spBv1.0/STATE/scada-primary") == topic
    assert topic.host_id == "scada-primary"
    assert topic.group_id is None


@pytest.mark.parametrize("text", ["spAv1.0/g/NDATA/e", "spBv1.1/g/NDATA/e", "spbv1.0/g/NDATA/e", "/spBv1.0/g/NDATA/e"])
def test_topic_structure_namespace_a(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not 'spBv1\.0'"):
        parse_topic(text)


def test_sparkplug_2_state_topic_is_refused() -> None:
    with pytest.raises(ValueError, match=r"2\.x STATE topic; 3\.0 uses spBv1\.0/STATE/<host_id>"):
        parse_topic("STATE/scada-primary")


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("group_id", lambda bad: Topic.node(bad, MessageType.NDATA, "e")),
        ("edge_node_id", lambda bad: Topic.node("g", MessageType.NDATA, bad)),
        ("device_id", lambda bad: Topic.device("g", MessageType.DDATA, "e", bad)),
        ("host_id", Topic.state),
    ],
)
@pytest.mark.parametrize("bad", ["a+b", "a/b", "a#b", "+", "#", "nul\x00", ""])
def test_topic_structure_namespace_valid_ids(field: str, build: object, bad: str) -> None:
    # tck-id-topic-structure-namespace-valid-group-id, -valid-edge-node-id, -valid-device-id
    assert callable(build)
    with pytest.raises(ValueError, match=field):
        build(bad)


@pytest.mark.parametrize(
    "text",
    [
        "spBv1.0/+/NDATA/e",
        "spBv1.0/g/NDATA/#",
        "spBv1.0/g/DDATA/e/+",
        "spBv1.0/g/+/e",
        "spBv1.0/STATE/+",
        "spBv1.0/#",
    ],
)
def test_wildcards_are_not_topic_names(text: str) -> None:
    with pytest.raises(ValueError, match=r"reserved|not one of|levels"):
        parse_topic(text)


@pytest.mark.parametrize(
    "text", ["spBv1.0//NDATA/e", "spBv1.0/g/NDATA/", "spBv1.0/g/DDATA/e/", "spBv1.0/STATE/", "spBv1.0/g/DDATA//d"]
)
def test_empty_levels_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is empty"):
        parse_topic(text)


@pytest.mark.parametrize("message_type", DEVICE_TYPES)
def test_topic_structure_namespace_device_id_associated_message_types(message_type: MessageType) -> None:
    with pytest.raises(ValueError, match=f"{message_type} needs a device_id"):
        parse_topic(f"spBv1.0/g/{message_type}/e")
    with pytest.raises(ValueError, match=f"{message_type} needs a device_id"):
        Topic("g", message_type, "e")


@pytest.mark.parametrize("message_type", NODE_TYPES)
def test_topic_structure_namespace_device_id_non_associated_message_types(message_type: MessageType) -> None:
    with pytest.raises(ValueError, match=f"{message_type} is an edge node message and takes no device_id"):
        parse_topic(f"spBv1.0/g/{message_type}/e/d")
    with pytest.raises(ValueError, match="takes no device_id"):
        Topic("g", message_type, "e", "d")


def test_state_topics_take_only_a_host_id() -> None:
    with pytest.raises(ValueError, match=r"a STATE topic is spBv1\.0/STATE/<host_id>"):
        parse_topic("spBv1.0/g/STATE/e")
    with pytest.raises(ValueError, match="levels"):
        parse_topic("spBv1.0/STATE/host/extra/more/still")
    with pytest.raises(ValueError, match="has only a host_id"):
        Topic("g", MessageType.STATE, None, host_id="h")
    with pytest.raises(ValueError, match="host_id belongs to STATE topics"):
        Topic("g", MessageType.NDATA, "e", host_id="h")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spBv1.0/g/NDAT/e", "message type 'NDAT' is not one of NBIRTH, NDEATH"),
        ("spBv1.0/g/ndata/e", "message type 'ndata' is not one of"),
        ("spBv1.0/g/NDATA", "has 3 levels"),
        ("spBv1.0/g/DDATA/e/d/x", "has 6 levels"),
        ("spBv1.0", "has 1 levels"),
        ("", "namespace '' is not"),
    ],
)
def test_malformed_topics_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"topic {text!r}: .*{message}"):
        parse_topic(text)


def test_message_type_must_be_the_enum() -> None:
    with pytest.raises(ValueError, match="not a Sparkplug message type"):
        Topic("g", "NDATA", "e")  # type: ignore[arg-type]


ID = st.text(st.characters(exclude_characters="+/#\x00", exclude_categories=["Cs"]), min_size=1, max_size=12)


@given(ID, st.sampled_from(NODE_TYPES + DEVICE_TYPES), ID, ID)
def test_parse_inverts_format(group_id: str, message_type: MessageType, edge_node_id: str, device_id: str) -> None:
    topic = Topic(group_id, message_type, edge_node_id, device_id if message_type.is_device else None)
    assert parse_topic(format_topic(topic)) == topic


@given(ID)
def test_parse_inverts_format_for_state(host_id: str) -> None:
    assert parse_topic(format_topic(Topic.state(host_id))) == Topic.state(host_id)


@given(st.text(max_size=40))
def test_parse_topic_returns_a_topic_or_raises_value_error(text: str) -> None:
    try:
        topic = parse_topic(text)
    except ValueError:
        return
    assert format_topic(topic) == text


# ---------------------------------------------------------------------------------------------
# STATE payload (Sparkplug 3.0: JSON)


def test_host_topic_phid_birth_payload() -> None:
    payload = state_payload_online(1_700_000_000_123)
    assert json.loads(payload) == {"online": True, "timestamp": 1_700_000_000_123}
    assert payload == b'{"online":true,"timestamp":1700000000123}'
    assert parse_state_payload(payload) == HostState(online=True, timestamp=1_700_000_000_123)


def test_host_topic_phid_death_payload() -> None:
    payload = state_payload_offline(1_700_000_000_123)
    assert json.loads(payload) == {"online": False, "timestamp": 1_700_000_000_123}
    assert parse_state_payload(payload) == HostState(online=False, timestamp=1_700_000_000_123)


def test_state_payload_from_other_hosts_parses() -> None:
    # Key order, whitespace and extra keys are the sender's business.
    assert parse_state_payload(b'{ "timestamp": 5, "online": true, "x": 1 }') == HostState(True, 5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ONLINE", "not UTF-8 JSON"),  # the Sparkplug 2.x payload
        (b"\xff\xfe\x00", "not UTF-8 JSON"),
        (b"[true, 1]", "STATE payload is list"),
        (b'{"online": "true", "timestamp": 1}', "\"online\" is 'true'"),
        (b'{"online": 1, "timestamp": 1}', '"online" is 1'),
        (b'{"timestamp": 1}', '"online" is None'),
        (b'{"online": true}', '"timestamp" is None'),
        (b'{"online": true, "timestamp": -1}', '"timestamp" is -1'),
        (b'{"online": true, "timestamp": 1.5}', '"timestamp" is 1.5'),
        (b'{"online": true, "timestamp": true}', '"timestamp" is True'),
    ],
)
def test_malformed_state_payloads_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_state_payload(data)


@pytest.mark.parametrize("timestamp", [-1, 2**64, 1.5, True])
def test_state_payload_timestamp_is_a_uint64(timestamp: int) -> None:
    with pytest.raises(ValueError, match="STATE timestamp"):
        state_payload_online(timestamp)
