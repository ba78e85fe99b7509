"""The configuration of one connector process, validated, with errors that name their path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plantline.connectors.addressing.cip import CIP_TYPES, parse_logix_address
from plantline.connectors.addressing.endpoints import PlcProtocol, parse_endpoint
from plantline.connectors.addressing.mqtt import TLS_PORT
from plantline.connectors.addressing.s7 import parse_s7_address
from plantline.connectors.samples import is_canonical_signal

# Sparkplug ids become MQTT topic levels: no wildcards, no level separator (tck-id-intro-*-chars).
_SPARKPLUG_ID = re.compile(r"[^+#/\s]{1,64}")
_OPCUA_NODE_ID = re.compile(r"(ns=\d+;)?(i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)")

DEFAULT_METRICS_PORT = 9400  # a connector's /metrics, /healthz and /readyz

DataTypeName = Literal[
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float", "double", "string", "datetime",
]  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsFiles(_Strict):
    """Mutual-TLS material of the MQTT client: the CA bundle, a client certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


class BrokerEndpoint(_Strict):
    """One MQTT broker; the list in the config is the failover order."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = TLS_PORT
    tls: TlsFiles | None = None
    insecure_plaintext: bool = False  # explicit opt-in for plaintext MQTT (tests, lab networks)

    @model_validator(mode="after")
    def _tls_or_explicit_plaintext(self) -> BrokerEndpoint:
        if self.tls is None and not self.insecure_plaintext:
            raise ValueError("tls is required (set insecure_plaintext: true to allow plaintext MQTT)")
        return self


class HostMqttSettings(_Strict):
    """The broker a Sparkplug host application (the historian, the cloud bridge) subscribes at."""

    brokers: Annotated[list[BrokerEndpoint], Field(min_length=1)]
    client_id: Annotated[str, Field(min_length=1, max_length=64)]  # fixed: the broker keeps its session
    # The Sparkplug primary host id: STATE online/offline is published under it (None: a plain host).
    primary_host_id: str | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 15
    rebirth_interval_s: Annotated[float, Field(gt=0)] = 5.0


# Where UInt32 values travel: the specification's int_value, or long_value for hosts that read
# them only from there (Eclipse Tahu's JavaScript sparkplug-payload). The codec's Uint32Field.
Uint32Field = Literal["int_value", "long_value"]

# When the primary host goes OFFLINE: `disconnect` (the specification: NDEATH, disconnect, move to
# the next broker, births there once the host is ONLINE) or `hold` (keep the session, hold data
# until the host is back, then births again with the same bdSeq).
PrimaryHostOffline = Literal["disconnect", "hold"]


class SparkplugIdentity(_Strict):
    group_id: str
    edge_node_id: str
    primary_host_id: str | None = None  # wait for its STATE ONLINE before births
    uint32_field: Uint32Field = "int_value"
    primary_host_offline: PrimaryHostOffline = "disconnect"

    @field_validator("group_id", "edge_node_id", "primary_host_id")
    @classmethod
    def _topic_safe(cls, value: str | None) -> str | None:
        if value is not None and not _SPARKPLUG_ID.fullmatch(value):
            raise ValueError("expected 1-64 characters without '+', '#', '/' or spaces")
        return value

    @field_validator("uint32_field", mode="before")
    @classmethod
    def _known_field(cls, value: object) -> object:
        if value not in get_args(Uint32Field):
            raise ValueError(
                f"{value!r} is neither int_value (the Sparkplug specification) nor long_value"
                " (for hosts that read UInt32 only from long_value, such as Eclipse Tahu JavaScript)"
            )
        return value

    @model_validator(mode="after")
    def _hold_needs_a_host(self) -> SparkplugIdentity:
        # `disconnect`, the default, may be written out for any edge node (renderers do).
        if self.primary_host_offline == "hold" and self.primary_host_id is None:
            raise ValueError("primary_host_offline: hold applies only with a primary_host_id")
        return self


class OutboxSettings(_Strict):
    directory: Path
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 256 << 20
    max_age_s: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    high_watermark: Annotated[float, Field(gt=0, lt=1)] = 0.8  # fraction of max_bytes: slow sampling
    low_watermark: Annotated[float, Field(gt=0, lt=1)] = 0.5  # back to full rate below this
    replay_share: Annotated[float, Field(gt=0, le=1)] = 0.5  # of publish capacity, while live data flows

    @model_validator(mode="after")
    def _watermarks(self) -> OutboxSettings:
        if self.low_watermark >= self.high_watermark:
            raise ValueError("low_watermark must be below high_watermark")
        return self


class Deadband(_Strict):
    kind: Literal["absolute", "percent"]
    value: Annotated[float, Field(gt=0)]


class Tag(_Strict):
    signal: str
    address: Annotated[str, Field(min_length=1)]
    datatype: DataTypeName
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    deadband: Deadband | None = None
    sampling_interval_ms: Annotated[int, Field(ge=10)] | None = None  # else the device's

    @field_validator("signal")
    @classmethod
    def _canonical(cls, value: str) -> str:
        if not is_canonical_signal(value):
            raise ValueError(f"{value!r} is not a canonical signal (state.*, counter.*, cycle.*, ..., process.<name>)")
        return value


class OpcUaOptions(_Strict):
    """How the OPC UA session is secured, and which servers it trusts.

    A secured connection verifies the server's certificate against a trust list: the CAs in
    `trusted_ca_file` (a chain ending in one of them, every certificate in it checked against
    its issuer's CRL in `crl_file`) or the certificates in `server_certificate_file`, trusted as
    they are. `accept_unknown_server` accepts a server that fails this, with a warning.
    """

    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate_file: Path | None = None  # DER or PEM opcua-application certificate
    private_key_file: Path | None = None
    application_uri: Annotated[str, Field(min_length=1)] | None = None  # else the certificate's URI
    trusted_ca_file: Path | None = None  # PEM or DER CA certificates that issue trusted servers' certificates
    crl_file: Path | None = None  # PEM or DER CRLs of those CAs
    server_certificate_file: Path | None = None  # PEM or DER server certificates trusted as they are
    accept_unknown_server: bool = False  # accept a server the trust list does not vouch for (a warning)
    username: str | None = None
    password_file: Path | None = None
    publishing_interval_ms: Annotated[int, Field(ge=10)] = 100
    queue_size: Annotated[int, Field(ge=1, le=10000)] = 10

    @property
    def secured(self) -> bool:
        return self.security_policy != "None"

    @model_validator(mode="after")
    def _security_consistent(self) -> OpcUaOptions:
        if self.secured != (self.security_mode != "None"):
            raise ValueError("security_policy and security_mode must both be None or both be set")
        if self.secured and (self.certificate_file is None or self.private_key_file is None):
            raise ValueError("a secured connection needs certificate_file and private_key_file")
        if (self.trusted_ca_file is None) != (self.crl_file is None):
            raise ValueError("trusted_ca_file and crl_file go together: a CA is trusted with its CRL")
        trusts = self.trusted_ca_file is not None or self.server_certificate_file is not None
        if self.secured and not (trusts or self.accept_unknown_server):
            raise ValueError(
                "a secured connection verifies the server: set trusted_ca_file and crl_file, or"
                " server_certificate_file, or accept_unknown_server: true to accept any server"
            )
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self


class ReconnectSettings(_Strict):
    """The back-off between connection attempts to a device: `initial_delay_s`, doubling up to `max_delay_s`.

    Each delay is shortened by up to half at random, so connectors that lost the same PLC do not
    come back in step. The defaults retry a PLC that is down every 2.5-5 s, and resume within
    5 s of its return.
    """

    initial_delay_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    max_delay_s: Annotated[float, Field(gt=0, le=3600)] = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectSettings:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError("max_delay_s must be at least initial_delay_s")
        return self


_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _time_of_day(value: str) -> str:
    if not _CLOCK.fullmatch(value):
        raise ValueError(f"{value!r} is not a time of day; expected HH:MM")
    return value


class BreakSettings(_Strict):
    """A break inside a shift: not planned production time."""

    start: str = Field(description="When it starts, HH:MM in the calendar's time zone.")
    end: str = Field(description="When it ends, HH:MM.")
    name: str = Field(default="break", description="Its name.")

    _clock = field_validator("start", "end")(_time_of_day)


class ShiftSettings(_Strict):
    """One shift of the line's calendar; an end at or before the start crosses midnight."""

    name: Annotated[str, Field(min_length=1, max_length=32)] = Field(description="The shift's name in the KPIs.")
    start: str = Field(description="When it starts, HH:MM in the calendar's time zone.")
    end: str = Field(description="When it ends, HH:MM; at or before `start`: the next day.")
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_WEEKDAYS), description="The weekdays it starts on.")
    breaks: list[BreakSettings] = Field(default_factory=list, description="Its breaks.")

    _clock = field_validator("start", "end")(_time_of_day)


class ShiftCalendarSettings(_Strict):
    """The line's shifts: KPIs are also reported per shift, and time outside shifts is not planned."""

    timezone: str = Field(default="UTC", description="The IANA time zone of the shift times, e.g. `Europe/Berlin`.")
    shifts: Annotated[list[ShiftSettings], Field(min_length=1)] = Field(description="The shifts.")


class KpiSettings(_Strict):
    """Edge KPIs of a device (computed when the device has state.* signals)."""

    enabled: bool = True
    ideal_cycle_s: Annotated[float, Field(gt=0)] | None = None  # else the PLC's cycle.ideal
    window_s: Annotated[float, Field(ge=60)] = 900.0
    publish_interval_s: Annotated[float, Field(ge=1)] = 10.0
    counter_bits: Literal[16, 32, 64] = 32
    fault_debounce_s: Annotated[float, Field(ge=0)] = 5.0


def _address_problem(protocol: str, tag: Tag) -> str | None:
    """Return why a tag's address does not fit the device's protocol, or None."""
    if protocol == "opcua":
        if not _OPCUA_NODE_ID.fullmatch(tag.address):
            return f"{tag.address!r} is not an OPC UA NodeId (e.g. ns=2;s=Filler.State)"
        return None
    try:
        if protocol == "s7":
            parse_s7_address(tag.address, tag.datatype)
        else:
            parse_logix_address(tag.address)
            if tag.datatype not in CIP_TYPES:
                return f"datatype {tag.datatype} has no Logix atomic type"
    except ValueError as exc:
        return str(exc)
    return None


def _add_once(seen: set[str], value: str, where: str) -> None:
    """Add `value` to `seen`; raise ValueError naming `where` when it is there already."""
    if value in seen:
        raise ValueError(f"{where}: {value!r} appears twice")
    seen.add(value)


def _endpoint_problem(protocol: PlcProtocol, endpoint: str) -> str | None:
    try:
        parse_endpoint(protocol, endpoint)
    except ValueError as exc:
        return str(exc).removeprefix("endpoint: ")
    return None


class Device(_Strict):
    id: str
    protocol: PlcProtocol
    endpoint: Annotated[str, Field(min_length=1)]
    sampling_interval_ms: Annotated[int, Field(ge=10)] = 1000
    reconnect: ReconnectSettings = ReconnectSettings()
    opcua: OpcUaOptions = OpcUaOptions()
    kpi: KpiSettings = KpiSettings()
    tags: Annotated[list[Tag], Field(min_length=1)]

    @property
    def computes_kpis(self) -> bool:
        return self.kpi.enabled and any(tag.signal.startswith("state.") for tag in self.tags)

    def interval_of(self, tag: Tag) -> int:
        """Return how often `tag` is sampled, in milliseconds: its own interval, else the device's."""
        return tag.sampling_interval_ms or self.sampling_interval_ms

    @field_validator("id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not _SPARKPLUG_ID.fullmatch(value):
            raise ValueError("expected 1-64 characters without '+', '#', '/' or spaces")
        return value

    @model_validator(mode="after")
    def _tags_fit_protocol(self) -> Device:
        seen: set[str] = set()
        for index, tag in enumerate(self.tags):
            _add_once(seen, tag.signal, f"tags[{index}].signal")
            problem = _address_problem(self.protocol, tag)
            if problem:
                raise ValueError(f"tags[{index}].address: {problem}")
        problem = _endpoint_problem(self.protocol, self.endpoint)
        if problem:
            raise ValueError(f"endpoint: {problem}")
        return self


class Batching(_Strict):
    max_metrics: Annotated[int, Field(ge=1, le=100_000)] = 1000  # per DDATA message
    linger_ms: Annotated[int, Field(ge=0, le=10_000)] = 20


class ConnectorConfig(_Strict):
    """Everything one connector process needs."""

    sparkplug: SparkplugIdentity
    brokers: Annotated[list[BrokerEndpoint], Field(min_length=1)]
    outbox: OutboxSettings
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_METRICS_PORT  # 0: no metrics endpoint
    metrics_address: str = "127.0.0.1"  # 0.0.0.0 in a pod, so probes and Prometheus reach it
    state_directory: Path  # bdSeq and other small state
    batching: Batching = Batching()
    shifts: ShiftCalendarSettings | None = None
    devices: Annotated[list[Device], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_devices(self) -> ConnectorConfig:
        seen: set[str] = set()
        for index, device in enumerate(self.devices):
            _add_once(seen, device.id, f"devices[{index}].id")
        return self


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid; `problems` lists each by path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def _path(location: tuple[int | str, ...]) -> str:
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = _path(tuple(p for p in item["loc"] if p not in ("function-after",)))
        message = item["msg"].removeprefix("Value error, ")
        # a model validator reports its own sub-path at the start of the message
        if message.startswith(("tags[", "devices[", "endpoint:", "primary_host_offline:")) and where:
            problems.append(f"{where}.{message}")
        elif message.startswith("devices["):
            problems.append(message)
        else:
            problems.append(f"{where}: {message}" if where else message)
    return problems


def problems_of(error: ValidationError) -> list[str]:
    """Return a pydantic validation error as one line per problem, each starting with its path."""
    return _problems(error)


def parse_config(data: Any, *, source: str) -> ConnectorConfig:
    """Return the validated config from parsed YAML/JSON data, or raise ConfigError."""
    try:
        return ConnectorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None


def load_config(path: Path) -> ConnectorConfig:
    """Return the validated config read from a YAML file, or raise ConfigError."""
    return parse_config(read_yaml(path), source=str(path))


def read_yaml(path: Path) -> Any:
    """Return the YAML document in `path`, or raise ConfigError naming the file and what went wrong."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
