"""The connector config model: valid files load; every mistake is reported with its path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantline.connectors.config import ConfigError, load_config, parse_config
from plantline.connectors.samples import is_canonical_signal

VALID: dict[str, Any] = {
    "sparkplug": {"group_id": "site1", "edge_node_id": "line1"},
    "brokers": [
        {"host": "broker.site1", "port": 8883, "tls": {"ca_file": "ca.crt", "cert_file": "c.crt", "key_file": "c.key"}},
        {"host": "127.0.0.1", "port": 1883, "insecure_plaintext": True},
    ],
    "outbox": {"directory": "/var/lib/plantline/outbox"},
    "state_directory": "/var/lib/plantline/state",
    "devices": [
        {
            "id": "filler",
            "protocol": "opcua",
            "endpoint": "opc.tcp://10.0.0.5:4840/",
            "tags": [
                {"signal": "state.run", "address": "ns=2;s=Filler.Running", "datatype": "bool"},
                {"signal": "counter.good", "address": "ns=2;i=1002", "datatype": "uint32"},
                {
                    "signal": "process.temperature",
                    "address": "ns=2;s=Filler.Temp",
                    "datatype": "int16",
                    "scale": 0.1,
                    "unit": "degC",
                    "deadband": {"kind": "absolute", "value": 0.5},
                },
            ],
        }
    ],
}


def _with(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    target: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "connector.yaml"
    path.write_text(yaml.safe_dump(VALID))
    config = load_config(path)
    assert config.sparkplug.edge_node_id == "line1"
    assert [b.port for b in config.brokers] == [8883, 1883]
    assert config.devices[0].tags[2].scale == 0.1
    assert config.outbox.max_bytes == 256 << 20
    assert config.batching.linger_ms == 20


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("devices.0.tags.1.address", "DB10.DBW2", "devices[0].tags[1].address: 'DB10.DBW2' is not an OPC UA NodeId"),
        ("devices.0.tags.0.signal", "speed", "devices[0].tags[0].signal: 'speed' is not a canonical signal"),
        ("devices.0.tags.2.datatype", "int7", "devices[0].tags[2].datatype: Input should be"),
        ("devices.0.protocol", "modbus", "devices[0].protocol: Input should be 'opcua'"),
        ("devices.0.endpoint", "http://x", "devices[0].endpoint: 'http://x': expected opc.tcp://"),
        ("devices.0.id", "a/b", "devices[0].id: expected 1-64 characters"),
        ("sparkplug.group_id", "site+1", "sparkplug.group_id: expected 1-64 characters"),
        ("brokers.1.insecure_plaintext", False, "brokers[1]: tls is required"),
        ("brokers.0.port", 70000, "brokers[0].port: Input should be less than or equal to 65535"),
        ("devices.0.tags", [], "devices[0].tags: List should have at least 1 item"),
        ("outbox.high_watermark", 0.4, "outbox: low_watermark must be below high_watermark"),
        ("devices.0.color", "red", "devices[0].color: Extra inputs are not permitted"),
        ("state_directory", _DELETE, "state_directory: Field required"),
        ("sparkplug.primary_host_offline", "hold", "sparkplug.primary_host_offline: hold applies only with a"),
    ],
)
def test_errors_name_the_path(path: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with(path, value), source="line1.yaml")
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems
    assert str(err.value).startswith("line1.yaml: ")


def test_primary_host_offline_is_disconnect_unless_hold_is_chosen() -> None:
    written_out = _with("sparkplug.primary_host_offline", "disconnect")  # as a renderer writes the default
    assert parse_config(written_out, source="x.yaml").sparkplug.primary_host_id is None
    with_host = _with("sparkplug.primary_host_id", "scada")
    assert parse_config(with_host, source="x.yaml").sparkplug.primary_host_offline == "disconnect"
    with_host["sparkplug"]["primary_host_offline"] = "hold"
    assert parse_config(with_host, source="x.yaml").sparkplug.primary_host_offline == "hold"
    with_host["sparkplug"]["primary_host_offline"] = "ignore"
    with pytest.raises(ConfigError) as err:
        parse_config(with_host, source="x.yaml")
    assert err.value.problems[0].startswith("sparkplug.primary_host_offline: Input should be 'disconnect' or 'hold'")


def test_duplicates_are_named() -> None:
    data = copy.deepcopy(VALID)
    data["devices"].append(copy.deepcopy(data["devices"][0]))
    data["devices"][0]["tags"][1]["signal"] = "state.run"
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="x.yaml")
    assert "devices[0].tags[1].signal: 'state.run' appears twice" in err.value.problems


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("state.run", True), ("counter.total", True), ("process.fill_level", True), ("process.", False), ("speed", False)],
)
def test_canonical_signals(name: str, ok: bool) -> None:
    assert is_canonical_signal(name) is ok


@pytest.mark.parametrize(
    ("protocol", "endpoint", "address", "datatype", "expected"),
    [
        ("s7", "s7://10.0.0.7", "DB10.DBX4.9", "bool", "devices[0].tags[0].address: "),
        ("s7", "s7://10.0.0.7", "DB10.DBW2", "float", "devices[0].tags[0].address: "),
        ("s7", "opc.tcp://10.0.0.7:4840/", "DB10.DBW2", "int16", "devices[0].endpoint: "),
        ("s7", "s7://10.0.0.7?slot=99", "DB10.DBW2", "int16", "devices[0].endpoint: "),
        ("cip", "cip://10.0.0.8", "Filler.Member", "int32", "devices[0].tags[0].address: "),
        ("cip", "cip://10.0.0.8", "Filler_count", "datetime", "devices[0].tags[0].address: datatype datetime"),
        ("cip", "s7://10.0.0.8", "Filler_count", "int32", "devices[0].endpoint: "),
        ("opcua", "opc.tcp://x:4840/", "DB10.DBW2", "int16", "devices[0].tags[0].address: 'DB10.DBW2'"),
    ],
)
def test_addresses_and_endpoints_fit_the_protocol(
    protocol: str, endpoint: str, address: str, datatype: str, expected: str
) -> None:
    data = copy.deepcopy(VALID)
    data["devices"] = [
        {
            "id": "m",
            "protocol": protocol,
            "endpoint": endpoint,
            "tags": [{"signal": "process.x", "address": address, "datatype": datatype}],
        }
    ]
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="line.yaml")
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_s7_and_cip_devices_validate() -> None:
    data = copy.deepcopy(VALID)
    data["devices"] = [
        {"id": "capper", "protocol": "s7", "endpoint": "s7://10.0.0.7:102?rack=0&slot=1",
         "tags": [{"signal": "state.run", "address": "DB10.DBX0.0", "datatype": "bool"},
                  {"signal": "counter.good", "address": "DB10.DBD4", "datatype": "uint32"}]},
        {"id": "labeler", "protocol": "cip", "endpoint": "cip://10.0.0.8/0",
         "tags": [{"signal": "state.run", "address": "Labeler_run", "datatype": "bool"},
                  {"signal": "counter.good", "address": "Counts[2]", "datatype": "int32"}]},
    ]  # fmt: skip
    config = parse_config(data, source="line.yaml")
    assert [d.protocol for d in config.devices] == ["s7", "cip"]


def test_uint32_field_defaults_to_the_spec_and_accepts_long_value() -> None:
    assert parse_config(VALID, source="c").sparkplug.uint32_field == "int_value"
    config = parse_config(_with("sparkplug.uint32_field", "long_value"), source="c")
    assert config.sparkplug.uint32_field == "long_value"


@pytest.mark.parametrize("value", ["intValue", "uint64", 7, None])
def test_an_unknown_uint32_field_is_named_with_its_choices(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with("sparkplug.uint32_field", value), source="c")
    assert caught.value.problems == [
        f"sparkplug.uint32_field: {value!r} is neither int_value (the Sparkplug specification) nor long_value"
        " (for hosts that read UInt32 only from long_value, such as Eclipse Tahu JavaScript)"
    ]


def test_the_config_and_the_codec_know_the_same_uint32_fields() -> None:
    from typing import get_args

    from plantline.connectors.config import Uint32Field
    from plantline.connectors.sparkplug import UINT32_FIELDS

    assert get_args(Uint32Field) == UINT32_FIELDS
