"""The PlantLine API (plantline.dev/v1alpha1): the validated model of one production line.

Field names are camelCase in YAML (Kubernetes style) and snake_case in Python. Structure and
simple ranges are checked by pydantic; the cross-field checks (unique ids, addresses that fit
their protocol, certificate identities) run in `spec_problems`, which reuses the connectors'
own validation so that an address is parsed in one place only. Every problem carries its path
in spec terms, e.g. `spec.machines[2].tags[0].address: ...`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from plantline.connectors.addressing.endpoints import PlcProtocol
from plantline.connectors.addressing.mqtt import TLS_PORT
from plantline.connectors.config import (
    DataTypeName,
    Device,
    PrimaryHostOffline,
    ShiftCalendarSettings,
    Uint32Field,
)
from plantline.pki.errors import InvalidInput
from plantline.pki.names import validate_identity
from plantline.pki.profiles import builtin_profiles
from plantline.pki.window import parse_window

# The API's names are spelled once, in the literals the model checks; the constants are read from them.
ApiVersion = Literal["plantline.dev/v1alpha1"]
Kind = Literal["PlantLine"]
API_VERSION: str = get_args(ApiVersion)[0]
GROUP, VERSION = API_VERSION.split("/")
KIND: str = get_args(Kind)[0]
PLURAL = "plantlines"

# ISA-95 names become topic levels, certificate identities and Kubernetes names: DNS-label-like.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$"
# Sparkplug ids become MQTT topic levels: no wildcards, no level separator.
SPARKPLUG_ID_PATTERN = r"^[^+#/\s]{1,64}$"
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$"

PlaceName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=20)]
SparkplugId = Annotated[str, Field(pattern=SPARKPLUG_ID_PATTERN, max_length=64)]
Host = Annotated[str, Field(pattern=HOST_PATTERN, max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535)]

MAX_MACHINES = 64
MAX_TAGS = 128  # with addresses up to 128 characters, the CRD's CEL rules fit the apiserver's cost budget


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, use_enum_values=True
    )


class DeadbandSpec(_Spec):
    """Publish a value only when it moved by more than this since the last published one."""

    kind: Literal["absolute", "percent"] = Field(
        description="`absolute`: in the tag's (scaled) unit; `percent`: of the OPC UA node's EURange "
        "(PLCs read by polling give none: ignored there, with a warning)."
    )
    value: Annotated[float, Field(gt=0)] = Field(description="How far the value must move to be published again.")


class TagSpec(_Spec):
    """One PLC tag and the canonical signal it becomes: value = raw * scale + offset."""

    signal: Annotated[str, Field(min_length=1, max_length=80)] = Field(
        description="The canonical signal (e.g. `state.run`, `counter.good`, `process.<name>`); once per machine."
    )
    address: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="Where the PLC holds it, in the machine's protocol: an OPC UA NodeId, an S7 or a Logix address."
    )
    datatype: DataTypeName = Field(description="The PLC's datatype of the raw value.")
    scale: float = Field(default=1.0, description="Factor applied to the raw value.")
    offset: float = Field(default=0.0, description="Added to the scaled value.")
    unit: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="Engineering unit, e.g. `degC`."
    )
    deadband: DeadbandSpec | None = Field(default=None, description="Publish only changes larger than this.")
    sampling_interval: Annotated[float, Field(ge=0.01, le=3600)] | None = Field(
        default=None,
        description="Seconds between samples of this tag (OPC UA: a subscription per distinct interval; S7, CIP:"
        " a poll group per interval); default: the machine's.",
    )


PEM_CERTIFICATE_PATTERN = r"^\s*-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\s*$"
PemCertificate = Annotated[str, Field(pattern=PEM_CERTIFICATE_PATTERN, max_length=8192)]


class ServerTrustSpec(_Spec):
    """Which OPC UA server certificates the connector trusts (OPC UA Part 4 verification)."""

    line_ca: bool = Field(
        default=True,
        description="Trust a server whose certificate the line's CA issued (for `plantline up`, its OPC UA"
        " issuing CA), checked against the CA's current CRL.",
    )
    certificates: Annotated[list[PemCertificate], Field(max_length=8)] = Field(
        default_factory=list,
        description="PEM server certificates trusted as they are, e.g. a PLC's own self-signed one.",
    )
    accept_unknown: bool = Field(
        default=False,
        description="Accept a server that neither vouches for, with a warning in the connector's log"
        " (commissioning only: it gives up knowing who the connector talks to).",
    )


class OpcUaSpec(_Spec):
    """OPC UA session security; when on, the machine gets an opcua-application certificate."""

    security_policy: Literal["None", "Basic256Sha256"] = Field(
        default="None", description="The session's security policy; set together with `securityMode`."
    )
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = Field(
        default="None", description="The session's message security; set together with `securityPolicy`."
    )
    publishing_interval: Annotated[float, Field(ge=0.01, le=3600)] = Field(
        default=0.1, description="Seconds between the server's publish cycles of the subscription."
    )
    queue_size: Annotated[int, Field(ge=1, le=10000)] = Field(
        default=10, description="Values the server queues per monitored item between publish cycles."
    )
    application_uri: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", max_length=256)] | None = Field(
        default=None,
        description="The connector's ApplicationUri towards this machine, put in its certificate;"
        " default `urn:plantline:<site>:<line>:<machine id>`.",
    )
    server_trust: ServerTrustSpec = Field(
        default=ServerTrustSpec(), description="Which server certificates the connector trusts when secured."
    )

    @property
    def secured(self) -> bool:
        return self.security_policy != "None" or self.security_mode != "None"


class ReconnectSpec(_Spec):
    """The back-off between the connector's attempts to reach a machine's PLC.

    Attempts start `initialDelay` apart and double up to `maxDelay`, each shortened by up to half
    at random. The defaults try a PLC that is down every 2.5-5 s (a TCP connection attempt each)
    and resume within 5 s of its return.
    """

    initial_delay: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=0.5, description="Seconds before the first retry."
    )
    max_delay: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=5.0, description="The longest wait between attempts, in seconds: how late data resumes at worst."
    )


class MachineSpec(_Spec):
    """One machine of the line (a Sparkplug device) read over one protocol."""

    id: PlaceName = Field(description="The machine's name: its Sparkplug device id; unique in the line.")
    protocol: PlcProtocol = Field(description="How its PLC is read.")
    equipment_type: PlaceName | None = Field(
        default=None,
        description="What kind of equipment it is (e.g. `filler`): the cloud bridge's topic (Event Hub) is one per "
        "type; default: the machine's id.",
    )
    endpoint: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="The PLC: `opc.tcp://HOST:PORT/PATH`, `s7://HOST[:PORT]?rack=R&slot=S` or `cip://HOST[:PORT]`."
    )
    opcua: OpcUaSpec | None = Field(default=None, description="OPC UA session options (protocol `opcua` only).")
    ideal_cycle_time: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Seconds per part at rated speed, for OEE performance; else the PLC's `cycle.ideal`."
    )
    sampling_interval: Annotated[float, Field(ge=0.01, le=3600)] = Field(
        default=1.0, description="Seconds between reads of the machine's tags (unless a tag has its own)."
    )
    reconnect: ReconnectSpec = Field(
        default=ReconnectSpec(), description="The back-off between attempts to reach the PLC."
    )
    tags: Annotated[list[TagSpec], Field(min_length=1, max_length=MAX_TAGS)] = Field(
        description="The PLC tags read, each becoming one canonical signal."
    )


class ConnectorsSpec(_Spec):
    """How machines are grouped into connector processes (one Sparkplug edge node each).

    `perLine` (the default) runs one connector for the whole line, which is then the edge node,
    as the design names it; `perMachine` and `perProtocol` split the line into several edge nodes
    `<edgeNodeId>-<group>` (each process owns its bdSeq and NDEATH, so they cannot share one).
    """

    grouping: Literal["perLine", "perMachine", "perProtocol"] = Field(
        default="perLine",
        description="`perLine`: one connector, the edge node `<edgeNodeId>`; `perMachine`, `perProtocol`: "
        "one connector per machine or protocol, each the edge node `<edgeNodeId>-<group>`.",
    )


class BridgeSpec(_Spec):
    """The site broker's bridge to a core broker: the line's topics out, commands and STATE in."""

    host: Host = Field(description="The core broker's host name or address.")
    port: Port = Field(default=TLS_PORT, description="The core broker's MQTT over TLS port.")
    remote_prefix: Annotated[str, Field(max_length=64, pattern=r"^([^+#\s]*/)?$")] = Field(
        default="", description="Put before every topic on the core broker (ends with `/`); empty: the same topics."
    )


class BrokerSpec(_Spec):
    """The line's (site) broker.

    Once it acknowledged a sample, the connectors delete their copy: what waits in the broker for a
    client that is away (the bridge during a WAN outage, a persistent subscriber) has no other copy.
    `queueLimitMib` bounds that per client (beyond it the broker drops new messages); the broker
    writes it to disk every `autosaveSeconds`, the most a crash of the broker can lose.
    """

    kind: Literal["mosquitto", "emqx"] = Field(
        default="mosquitto",
        description="The broker software: `mosquitto` is rendered for the site (`plantline up`, Ansible); with "
        "`emqx` the operator reconciles the line's authorization rules and bridge in the core EMQX.",
    )
    host: Host = Field(
        description="Where the connectors reach the broker, and its certificate's subject alternative name."
    )
    port: Port = Field(default=TLS_PORT, description="The MQTT over TLS port the broker listens on.")
    listen_address: Annotated[str, Field(max_length=45, pattern=r"^[0-9A-Fa-f:.]+$")] | None = Field(
        default=None,
        description="The IP address the broker binds; default: `host` when it is an IP address, else `0.0.0.0` "
        "(every interface).",
    )
    bridge: BridgeSpec | None = Field(default=None, description="Bridge the line's topics to a core broker.")
    queue_limit_mib: Annotated[int, Field(ge=1, le=65536)] = Field(
        default=256, description="MiB the broker queues per absent client (the bridge while the core is away)."
    )
    autosave_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=5, description="Seconds between the broker's writes of its queues to disk."
    )

    @field_validator("listen_address")
    @classmethod
    def _ip_address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
        return value


class PkiSpec(_Spec):
    """Certificate policy of the line: validity per signing profile, renewal margin, window."""

    validity_days: Annotated[dict[str, Annotated[int, Field(ge=1, le=3650)]], Field(max_length=16)] = Field(
        default_factory=dict,
        description="Days a new certificate is valid, by signing profile (`mqtt-client`, `mqtt-server`, "
        "`opcua-application`, `operator`); else the profile's.",
    )
    renew_before: Annotated[int, Field(ge=1, le=365)] | None = Field(
        default=None, description="Days before expiry a certificate is renewed; else the profile's margin."
    )
    maintenance_window: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="When renewals may happen, e.g. `sat 02:00-06:00`, in the shift calendar's time zone; "
        "a certificate that would expire first is renewed at once.",
    )


class KpiSpec(_Spec):
    """How the edge computes KPIs."""

    shift_calendar: ShiftCalendarSettings | None = Field(
        default=None, description="The line's shifts: KPIs per shift, and time outside shifts is not planned."
    )


class DashboardsSpec(_Spec):
    """The line's Grafana dashboards and Prometheus alert rules."""

    enabled: bool = Field(
        default=True,
        description="Whether the line gets its dashboards (ConfigMaps for Grafana's sidecar) and alert rules "
        "(a PrometheusRule, or a ConfigMap without the prometheus-operator); false removes them.",
    )


# A Secret's name (a DNS subdomain) and a key of its data (what Kubernetes allows there).
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]{1,253}$"
# An Event Hubs namespace: 6-50 letters, digits and hyphens, starting with a letter (Azure's rule).
EVENT_HUBS_NAMESPACE_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$"
BOOTSTRAP_SERVER_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$"
KAFKA_TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
CloudSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
CloudSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SecretKeySelector(_Spec):
    """One key of a Secret in the PlantLine's namespace, mounted as a file; its value is never copied."""

    name: Annotated[str, Field(pattern=SECRET_NAME_PATTERN, max_length=253)] = Field(description="The Secret's name.")
    key: Annotated[str, Field(pattern=SECRET_KEY_PATTERN, max_length=253)] = Field(
        description="The key of the Secret's data that holds the value."
    )


class CloudTopicsSpec(_Spec):
    """Which topic (Event Hub) each equipment type's samples go to, and the dead-letter topic."""

    naming: Literal["eventHubs", "prefixed"] | None = Field(
        default=None,
        description="`eventHubs`: `<equipmentType>-equipment` and `dead-letter`, the hubs the Pulumi cloud stack "
        "makes; `prefixed`: `<prefix>.<equipmentType>` and `<prefix>.deadletter`. Default: `eventHubs` with "
        "`eventHubsNamespace`, else `prefixed`.",
    )
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")] = Field(
        default="plantline", description="The topics' prefix with naming `prefixed`."
    )
    by_equipment_type: Annotated[
        dict[str, Annotated[str, Field(pattern=KAFKA_TOPIC_PATTERN)]], Field(max_length=MAX_MACHINES)
    ] = Field(
        default_factory=dict,
        description="Topics by equipment type, over the naming's (the cloud stack's `hubs` output fits as it is).",
    )
    dead_letter: Annotated[str, Field(pattern=KAFKA_TOPIC_PATTERN)] | None = Field(
        default=None, description="The dead-letter topic; default: the naming's."
    )


class CloudSpec(_Spec):
    """The cloud bridge: the operator runs it for the line, producing every sample to Kafka or Azure Event Hubs.

    Name either `eventHubsNamespace` (port 9093, SASL_SSL, PLAIN with the user `$ConnectionString`
    and the send rule's connection string as the password) or `bootstrapServers` of any Kafka.
    """

    event_hubs_namespace: Annotated[str, Field(pattern=EVENT_HUBS_NAMESPACE_PATTERN)] | None = Field(
        default=None,
        description="The Event Hubs namespace (the cloud stack's `namespaceName`): the bridge produces to "
        "`<namespace>.servicebus.windows.net:9093`.",
    )
    bootstrap_servers: (
        Annotated[
            list[Annotated[str, Field(pattern=BOOTSTRAP_SERVER_PATTERN, max_length=259)]],
            Field(min_length=1, max_length=16),
        ]
        | None
    ) = Field(default=None, description="A Kafka cluster's bootstrap servers, each `HOST:PORT`.")
    security_protocol: CloudSecurityProtocol | None = Field(
        default=None,
        description="Default: `SASL_SSL` for Event Hubs or when `credentialsSecretRef` is set, else `PLAINTEXT`.",
    )
    sasl_mechanism: CloudSaslMechanism = Field(default="PLAIN", description="The SASL mechanism (SASL protocols).")
    username: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="The SASL user; Event Hubs' is `$ConnectionString` (its default there)."
    )
    credentials_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description="The Secret key holding the SASL password (for Event Hubs, the send rule's connection string: "
        "the cloud stack's `bridgeConnectionString`); mounted read-only in the bridge's pod.",
    )
    ca_secret_ref: SecretKeySelector | None = Field(
        default=None, description="The Secret key of a PEM CA bundle for Kafka's TLS; default: the image's CA store."
    )
    topics: CloudTopicsSpec = Field(default=CloudTopicsSpec(), description="Topic naming.")
    partitions: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None,
        description="Create missing topics with this many partitions (a plain Kafka); unset: they must exist "
        "(Event Hubs are made by the cloud stack).",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] | None = Field(
        default=None,
        description="The producer's compression; default `gzip` for Event Hubs (all it takes), else `lz4`.",
    )


class PlantLineSpec(_Spec):
    """The desired state of one production line."""

    site: PlaceName = Field(description="The ISA-95 site; the default Sparkplug group id.")
    area: PlaceName = Field(description="The ISA-95 area.")
    line: PlaceName = Field(description="The ISA-95 line; the default Sparkplug edge node id.")
    group_id: SparkplugId | None = Field(default=None, description="The Sparkplug group id; default: `site`.")
    edge_node_id: SparkplugId | None = Field(
        default=None, description="The Sparkplug edge node id (or its prefix, when grouped); default: `line`."
    )
    primary_host_id: SparkplugId | None = Field(
        default=None,
        description="The Sparkplug primary host application: edge nodes publish births only while its STATE "
        "is online, and the line gets a host certificate allowed to publish that STATE and commands.",
    )
    primary_host_offline: PrimaryHostOffline = Field(
        default="disconnect",
        description="What edge nodes do when the primary host's STATE goes offline: disconnect (Sparkplug 3.0:"
        " NDEATH, then a new session with the next bdSeq once the host is back online) or hold (keep the"
        " session and its bdSeq, keep data in the outbox, publish again with fresh births once the host is"
        " back; outside the specification). hold needs primaryHostId.",
    )
    uint32_field: Uint32Field = Field(
        default="int_value",
        description="Where UInt32 values travel: int_value, as the Sparkplug specification says, or"
        " long_value, for hosts that read UInt32 only from there (Eclipse Tahu JavaScript).",
    )
    machines: Annotated[list[MachineSpec], Field(min_length=1, max_length=MAX_MACHINES)] = Field(
        description="The line's machines, each a Sparkplug device."
    )
    connectors: ConnectorsSpec = Field(
        default=ConnectorsSpec(), description="How machines are grouped into connectors."
    )
    broker: BrokerSpec = Field(description="The line's (site) MQTT broker.")
    pki: PkiSpec = Field(default=PkiSpec(), description="Certificate validity, renewal and maintenance window.")
    kpi: KpiSpec = Field(default=KpiSpec(), description="Edge KPI settings.")
    dashboards: DashboardsSpec = Field(default=DashboardsSpec(), description="The line's dashboards.")
    cloud: CloudSpec | None = Field(
        default=None,
        description="Produce the line's samples to Kafka or Azure Event Hubs: the operator runs the cloud bridge, "
        "a Sparkplug host with the line's host identity.",
    )

    @property
    def sparkplug_group(self) -> str:
        return self.group_id or self.site

    @property
    def sparkplug_edge_node(self) -> str:
        return self.edge_node_id or self.line

    @model_validator(mode="after")
    def _cross_field(self) -> PlantLineSpec:
        problems = spec_problems(self)
        if problems:
            raise SpecProblems(problems)
        return self


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata the API reads; the API server's other fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = Field(
        description="The PlantLine's name; its Kubernetes children are named after it."
    )
    namespace: str | None = Field(default=None, description="The namespace of the PlantLine and its children.")
    generation: int | None = Field(default=None, description="Set by the API server: the spec's revision.")


class PlantLine(_Spec):
    """One production line: its machines, broker, certificates, KPIs and dashboards."""

    api_version: ApiVersion = Field(description="The API version.")
    kind: Kind = Field(description="The kind.")
    metadata: ObjectMeta = Field(description="Kubernetes metadata: the line's name (and namespace).")
    spec: PlantLineSpec = Field(description="The desired state of the line.")


ConditionType = Literal[
    "Ready", "CertificatesReady", "ConnectorsReady", "BrokerReady", "DashboardsReady", "CloudBridgeReady"
]
CONDITION_TYPES: tuple[ConditionType, ...] = get_args(ConditionType)


class Condition(_Spec):
    """One Kubernetes-style condition; `Ready` summarises the others."""

    type: ConditionType = Field(description="What the condition is about.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether it holds.")
    reason: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=1024)] = Field(
        description="Why, in one CamelCase word."
    )
    message: Annotated[str, Field(max_length=32768)] = Field(default="", description="Why, for people.")
    last_transition_time: datetime = Field(description="When `status` last changed.")
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The generation of the spec the condition was found for."
    )


class StoredCertificate(_Spec):
    """A certificate Secret and the serial last stored in it; kept so a lost Secret's certificate is revoked."""

    secret: Annotated[str, Field(min_length=1, max_length=253)] = Field(description="The Secret's name.")
    serial: Annotated[str, Field(pattern=r"^[0-9a-f]{1,40}$")] = Field(
        description="The serial number of the certificate it holds, in hexadecimal."
    )


class PlantLineStatus(_Spec):
    """What the operator observed; written through the status subresource."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The generation of the spec last reconciled."
    )
    machine_count: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Machines in that spec.")
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(
        default_factory=list,
        description="`Ready`, `CertificatesReady`, `ConnectorsReady`, `DashboardsReady`, `BrokerReady` (EMQX lines), "
        "`CloudBridgeReady` (lines with `cloud`).",
    )
    # One per identity: a connector and an OPC UA app per machine at most, plus broker, reader,
    # bridge and host.
    certificates: Annotated[list[StoredCertificate], Field(max_length=2 * MAX_MACHINES + 8)] = Field(
        default_factory=list, description="Every certificate Secret of the line and the serial it holds."
    )


# -- cross-field checks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a PlantLine is invalid, at a path in spec terms."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecProblems(ValueError):
    """Raised inside validation; `problems` keeps each cross-field problem with its own path."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


class PlantLineInvalid(Exception):
    """A PlantLine document is invalid; `problems` lists every problem found, by path."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


# The connectors' config speaks snake_case; its messages are translated to the API's names.
_CONNECTOR_WORDS = {
    "security_policy": "securityPolicy",
    "security_mode": "securityMode",
    "certificate_file": "certificate",
    "private_key_file": "private key",
    "sampling_interval_ms": "samplingInterval",
}
_LEADING_PATH = re.compile(r"^(?P<path>(tags\[\d+\]\.\w+|endpoint)): (?P<message>.*)$", re.DOTALL)


def _connector_words(message: str) -> str:
    for snake, camel in _CONNECTOR_WORDS.items():
        message = message.replace(snake, camel)
    return message


def _loc_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-"):
            out += f".{part}" if out else part
    return out


def _device_problems(machine: MachineSpec, tag_index: int, tag: TagSpec) -> list[tuple[str, str]]:
    """Return (relative path, message) for what the connector's Device says about one tag."""
    data = {
        "id": machine.id,
        "protocol": machine.protocol,
        "endpoint": machine.endpoint,
        "tags": [tag.model_dump(include={"signal", "address", "datatype"})],
    }
    try:
        Device.model_validate(data)
    except ValidationError as exc:
        found = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            where = _loc_path(tuple(error["loc"]))
            match = _LEADING_PATH.match(message)
            if match:
                where, message = match["path"], match["message"]
            where = where.replace("tags[0]", f"tags[{tag_index}]")
            found.append((where, _connector_words(message)))
        return found
    return []


def _machine_problems(machine: MachineSpec) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    seen: set[str] = set()
    for index, tag in enumerate(machine.tags):
        if tag.signal in seen:
            found[(f"tags[{index}].signal", f"{tag.signal!r} appears twice in this machine")] = None
        seen.add(tag.signal)
        for problem in _device_problems(machine, index, tag):
            found[problem] = None
    if machine.opcua is not None:
        if machine.protocol != "opcua":
            found[("opcua", f"OPC UA options on a {machine.protocol} machine")] = None
        elif (machine.opcua.security_policy == "None") != (machine.opcua.security_mode == "None"):
            found[("opcua", "securityPolicy and securityMode must both be None or both be set")] = None
        for problem in _server_trust_problems(machine.opcua):
            found[problem] = None
    if machine.reconnect.max_delay < machine.reconnect.initial_delay:
        found[("reconnect.maxDelay", "must be at least initialDelay")] = None
    return list(found)


def _server_trust_problems(opcua: OpcUaSpec) -> list[tuple[str, str]]:
    trust = opcua.server_trust
    found = []
    for index, pem in enumerate(trust.certificates):
        try:
            x509.load_pem_x509_certificate(pem.encode())
        except ValueError as exc:
            found.append((f"opcua.serverTrust.certificates[{index}]", f"not a PEM certificate: {exc}"))
    if opcua.secured and not (trust.line_ca or trust.certificates or trust.accept_unknown):
        found.append(("opcua.serverTrust", "trusts no server: keep lineCa, list certificates, or set acceptUnknown"))
    return found


def connector_groups(spec: PlantLineSpec) -> dict[str, list[MachineSpec]]:
    """Return the connector groups, by name, in sorted order, each with its machines in spec order."""
    groups: dict[str, list[MachineSpec]] = {}
    for machine in spec.machines:
        grouping = spec.connectors.grouping
        name = spec.line if grouping == "perLine" else machine.id if grouping == "perMachine" else machine.protocol
        groups.setdefault(name, []).append(machine)
    return dict(sorted(groups.items()))


# The identities of the line's roles, `<site>-<line>-<role>`; a connector group of that name would clash.
ROLE_IDENTITIES = ("broker", "reader", "bridge", "host")
CLOUD_BRIDGE = "cloud-bridge"  # the cloud bridge's Deployment is `<name>-cloud-bridge`, beside `<name>-<group>`


def identities(spec: PlantLineSpec) -> dict[str, str]:
    """Return every certificate identity of the line, mapped to the spec path that names it."""
    prefix = f"{spec.site}-{spec.line}"
    names = {f"{prefix}-broker": "spec.broker", f"{prefix}-reader": "spec.line"}
    if spec.primary_host_id is not None:
        names[f"{prefix}-host"] = "spec.primaryHostId"
    elif spec.cloud is not None:
        names[f"{prefix}-host"] = "spec.cloud"
    if spec.broker.bridge is not None:
        names[f"{prefix}-bridge"] = "spec.broker.bridge"
    for group in connector_groups(spec):
        names.setdefault(f"{prefix}-{group}", "spec.connectors")
    for index, machine in enumerate(spec.machines):
        if machine.opcua is not None and machine.opcua.secured:
            names[f"{prefix}-{machine.id}-ua"] = f"spec.machines[{index}].id"
    return names


def _role_clashes(spec: PlantLineSpec) -> list[Problem]:
    """Return a problem for each connector group named like a role, whose identity would be the role's."""
    if spec.connectors.grouping == "perLine":
        named = [("spec.line", spec.line)]
    elif spec.connectors.grouping == "perMachine":
        named = [(f"spec.machines[{i}].id", m.id) for i, m in enumerate(spec.machines)]
    else:
        return []  # groups are protocol names
    return [
        Problem(
            path,
            f"{name!r} is reserved with grouping {spec.connectors.grouping}: its connector's certificate "
            f"identity would be the line's {name} identity {spec.site}-{spec.line}-{name}",
        )
        for path, name in named
        if name in ROLE_IDENTITIES
    ]


def _pki_problems(spec: PlantLineSpec) -> list[Problem]:
    problems = []
    profiles = builtin_profiles()
    for name in spec.pki.validity_days:
        if name not in profiles:
            problems.append(
                Problem(f"spec.pki.validityDays.{name}", f"unknown profile; expected one of {', '.join(profiles)}")
            )
    if spec.pki.maintenance_window is not None:
        timezone = spec.kpi.shift_calendar.timezone if spec.kpi.shift_calendar else "UTC"
        try:
            parse_window(spec.pki.maintenance_window, timezone=timezone, field="spec.pki.maintenanceWindow")
        except InvalidInput as exc:
            path, _, message = str(exc).partition(": ")
            problems.append(Problem(path, message))
    for identity, path in identities(spec).items():
        try:
            validate_identity(identity)
        except InvalidInput:
            problems.append(Problem(path, f"makes the certificate identity {identity!r}, longer than 64 characters"))
    return problems


def spec_problems(spec: PlantLineSpec) -> list[Problem]:
    """Return every cross-field problem of a structurally valid spec (empty when it is valid)."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for index, machine in enumerate(spec.machines):
        if machine.id in first:
            problems.append(
                Problem(
                    f"spec.machines[{index}].id", f"{machine.id!r} is already the id of machines[{first[machine.id]}]"
                )
            )
        first.setdefault(machine.id, index)
        problems.extend(
            Problem(f"spec.machines[{index}].{where}", message) for where, message in _machine_problems(machine)
        )
    if spec.kpi.shift_calendar is not None:
        try:
            ZoneInfo(spec.kpi.shift_calendar.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(Problem("spec.kpi.shiftCalendar.timezone", "not an IANA time zone (e.g. Europe/Berlin)"))
    if spec.primary_host_offline == "hold" and spec.primary_host_id is None:
        problems.append(Problem("spec.primaryHostOffline", "hold applies only to a line with a primaryHostId"))
    problems.extend(_role_clashes(spec))
    problems.extend(_pki_problems(spec))
    if spec.cloud is not None and CLOUD_BRIDGE in connector_groups(spec):
        problems.append(
            Problem("spec.connectors", f"a connector group named {CLOUD_BRIDGE!r} clashes with the cloud bridge")
        )
    if spec.cloud is not None:
        problems.extend(Problem(f"spec.cloud{where}", message) for where, message in _cloud_problems(spec.cloud))
    return problems


def _cloud_problems(cloud: CloudSpec) -> list[tuple[str, str]]:
    """Return (path below spec.cloud, message) for each setting that cannot work with the others."""
    if (cloud.event_hubs_namespace is None) == (cloud.bootstrap_servers is None):
        return [("", "set exactly one of eventHubsNamespace and bootstrapServers")]
    if cloud.event_hubs_namespace is not None:
        found = [] if cloud.credentials_secret_ref is not None else [
            (".credentialsSecretRef", "Event Hubs needs the send rule's connection string (bridgeConnectionString)")
        ]  # fmt: skip
        if cloud.security_protocol not in (None, "SASL_SSL"):
            found.append((".securityProtocol", "Event Hubs' Kafka endpoint takes SASL_SSL only"))
        if cloud.sasl_mechanism != "PLAIN":
            found.append((".saslMechanism", "Event Hubs takes PLAIN with a connection string"))
        if cloud.partitions is not None:
            found.append((".partitions", "Event Hubs are made by the cloud stack, not by the bridge"))
        if cloud.compression not in (None, "none", "gzip"):
            found.append((".compression", "Event Hubs' Kafka endpoint takes gzip only"))
        return found
    sasl = (cloud.security_protocol or ("SASL_SSL" if cloud.credentials_secret_ref else "PLAINTEXT")).startswith(
        "SASL_"
    )
    if sasl and cloud.credentials_secret_ref is None:
        return [(".credentialsSecretRef", f"{cloud.security_protocol} needs the SASL password's Secret")]
    if not sasl and (cloud.credentials_secret_ref is not None or cloud.username is not None):
        return [(".securityProtocol", f"{cloud.security_protocol} does not use credentialsSecretRef or username")]
    return []


def _problems(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, SpecProblems):
            problems.extend(cause.problems)
            continue
        problems.append(Problem(_loc_path(tuple(item["loc"])), item["msg"].removeprefix("Value error, ")))
    return problems


def parse_plantline(data: Any) -> PlantLine:
    """Return the validated PlantLine from parsed YAML/JSON data, or raise PlantLineInvalid."""
    if not isinstance(data, dict):
        raise PlantLineInvalid([Problem("", "expected a mapping with apiVersion, kind, metadata and spec")])
    try:
        return PlantLine.model_validate(data)
    except ValidationError as exc:
        raise PlantLineInvalid(_problems(exc)) from None
