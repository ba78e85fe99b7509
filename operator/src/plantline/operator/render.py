"""Pure renderers: one PlantLine in, the files and requests that make it run out (no I/O here).

Topology: machines are grouped into connectors (`spec.connectors.grouping`). With `perLine` (the
default) one connector is the line's edge node `<edgeNodeId>`; otherwise each connector is an edge
node `<edgeNodeId>-<group>`. Each publishes under `spBv1.0/<groupId>/...` with the client
certificate `<site>-<line>-<group>`. Two connector processes never share an edge node id, since
each owns its own bdSeq and NDEATH will.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plantline.connectors.addressing.mqtt import SPARKPLUG_NAMESPACE as NAMESPACE
from plantline.connectors.config import (
    DEFAULT_METRICS_PORT,
    BrokerEndpoint,
    ConnectorConfig,
    Deadband,
    Device,
    KpiSettings,
    OpcUaOptions,
    OutboxSettings,
    ReconnectSettings,
    SparkplugIdentity,
    Tag,
    TlsFiles,
)
from plantline.dashboards import ConnectorView, LineView, MachineView
from plantline.dashboards.broker import SYS_TOPICS
from plantline.operator.api import MachineSpec, PlantLine, PlantLineSpec
from plantline.operator.roles import (
    ConnectorTopology,
    Grant,
    bridge_identity,
    broker_identity,
    host_identity,
    line_grants,
    reader_identity,
    topology,
)
from plantline.pki.profiles import builtin_profiles

TRUST_BUNDLE = "ca.crt"
CRL = "crl.pem"
# What the connectors trust OPC UA servers by: the CAs that issue the line's OPC UA certificates
# (for `plantline up`, its RSA OPC UA CA and the root above it) and their CRLs.
OPCUA_TRUST_BUNDLE = "opcua-ca.pem"
OPCUA_CRL = "opcua-crl.pem"


def _prefix(spec: PlantLineSpec) -> str:
    return f"{spec.site}-{spec.line}"


def opcua_identity(spec: PlantLineSpec, machine: MachineSpec) -> str:
    return f"{_prefix(spec)}-{machine.id}-ua"


def opcua_application_uri(spec: PlantLineSpec, machine: MachineSpec) -> str:
    """Return the connector's ApplicationUri towards `machine`: its `applicationUri`, else the line's convention."""
    if machine.opcua is not None and machine.opcua.application_uri is not None:
        return machine.opcua.application_uri
    return f"urn:plantline:{spec.site}:{spec.line}:{machine.id}"


def opcua_server_certificates_file(spec: PlantLineSpec, machine: MachineSpec) -> str:
    """Return the name of the file (in the TLS directory) of the server certificates `machine` trusts as they are."""
    return f"{opcua_identity(spec, machine)}-servers.pem"


def render_opcua_server_certificates(line: PlantLine) -> dict[str, str]:
    """Return each secured machine's explicitly trusted server certificates, as a PEM bundle by file name."""
    spec = line.spec
    return {
        opcua_server_certificates_file(spec, machine): "".join(
            pem.strip() + "\n" for pem in machine.opcua.server_trust.certificates
        )
        for machine in spec.machines
        if machine.opcua is not None and machine.opcua.secured and machine.opcua.server_trust.certificates
    }


def _secured(machine: MachineSpec) -> bool:
    return machine.opcua is not None and machine.opcua.secured


# -- certificate requests -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """One certificate the line needs from the CA (no key material: the applier makes the key)."""

    identity: str
    profile: str
    sans: tuple[str, ...] = ()
    validity_days: int | None = None  # None: the profile's
    renew_before_days: int | None = None  # None: the profile's
    # What the identity is in the line: connector | broker | reader | host | bridge | opcua-application.
    role: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "profile": self.profile,
            "sans": list(self.sans),
            "validityDays": self.validity_days,
            "renewBeforeDays": self.renew_before_days,
            "role": self.role,
        }


def _san(host: str) -> str:
    is_ip = host.replace(".", "").isdigit() or ":" in host
    return f"ip:{host}" if is_ip else f"dns:{host}"


def render_certificate_requests(line: PlantLine, *, historian: bool = False) -> list[CertificateRequest]:
    """Return every certificate the line needs: connectors, broker, reader, host, bridge, OPC UA apps.

    The host identity is issued for the primary host (`primaryHostId`), for the cloud bridge
    (`cloud`) and, with `historian`, for the historian: Sparkplug host applications whether or not
    they are the primary one.
    """
    spec = line.spec

    def request(identity: str, profile: str, role: str, sans: tuple[str, ...] = ()) -> CertificateRequest:
        return CertificateRequest(
            identity=identity,
            profile=profile,
            sans=sans,
            validity_days=spec.pki.validity_days.get(profile),
            renew_before_days=spec.pki.renew_before,
            role=role,
        )

    requests = [request(c.identity, "mqtt-client", "connector") for c in topology(spec)]
    requests.append(request(broker_identity(spec), "mqtt-server", "broker", (_san(spec.broker.host),)))
    requests.append(request(reader_identity(spec), "mqtt-client", "reader"))
    if spec.primary_host_id is not None or historian or spec.cloud is not None:
        requests.append(request(host_identity(spec), "mqtt-client", "host"))
    if spec.broker.bridge is not None:
        requests.append(request(bridge_identity(spec), "mqtt-client", "bridge"))
    for machine in spec.machines:
        if _secured(machine):
            uri = f"uri:{opcua_application_uri(spec, machine)}"
            requests.append(request(opcua_identity(spec, machine), "opcua-application", "opcua-application", (uri,)))
    return requests


def certificate_dependants(line: PlantLine) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Return, per identity the line may hold a certificate for, its role and the machines that depend on it.

    A connector's certificate serves its group's machines, an OPC UA application's its machine;
    the broker's, the reader's, the host's and the bridge's the whole line.
    """
    spec = line.spec
    every = tuple(machine.id for machine in spec.machines)
    found = {c.identity: ("connector", tuple(m.id for m in c.machines)) for c in topology(spec)}
    for machine in spec.machines:
        if _secured(machine):
            found[opcua_identity(spec, machine)] = ("opcua-application", (machine.id,))
    for request in render_certificate_requests(line, historian=True):
        found.setdefault(request.identity, (request.role or "line", every))
    return found


def line_key(line: PlantLine) -> tuple[str, str]:
    """Return the line's namespace and name, as its series' `namespace` and `plantline` labels carry them."""
    return line.metadata.namespace or "default", line.metadata.name


# -- connector configs ----------------------------------------------------------------------------


def host_tls_files(spec: PlantLineSpec, tls_dir: Path) -> dict[str, str]:
    """Return the TLS files of the line's host identity (the historian's and the cloud bridge's), as config data."""
    host = host_identity(spec)
    return {
        "ca_file": str(tls_dir / TRUST_BUNDLE),
        "cert_file": str(tls_dir / f"{host}.crt"),
        "key_file": str(tls_dir / f"{host}.key"),
    }


def machine_kpi_settings(machine: MachineSpec) -> KpiSettings:
    """Return how a machine's KPIs are computed, at the edge and in the historian alike."""
    return KpiSettings(ideal_cycle_s=machine.ideal_cycle_time)


def _opcua_options(spec: PlantLineSpec, machine: MachineSpec, tls_dir: Path) -> OpcUaOptions:
    if machine.opcua is None:
        return OpcUaOptions()
    options = machine.opcua
    secured: dict[str, Any] = {}
    if options.secured:
        identity, trust = opcua_identity(spec, machine), options.server_trust
        secured = {
            "certificate_file": tls_dir / f"{identity}.crt",
            "private_key_file": tls_dir / f"{identity}.key",
            "application_uri": opcua_application_uri(spec, machine),
            "accept_unknown_server": trust.accept_unknown,
        }
        if trust.line_ca:
            secured |= {"trusted_ca_file": tls_dir / OPCUA_TRUST_BUNDLE, "crl_file": tls_dir / OPCUA_CRL}
        if trust.certificates:
            secured["server_certificate_file"] = tls_dir / opcua_server_certificates_file(spec, machine)
    return OpcUaOptions(
        security_policy=options.security_policy,
        security_mode=options.security_mode,
        publishing_interval_ms=max(10, round(options.publishing_interval * 1000)),
        queue_size=options.queue_size,
        **secured,
    )


def _ms(seconds: float) -> int:
    return max(10, round(seconds * 1000))


def _device(spec: PlantLineSpec, machine: MachineSpec, tls_dir: Path) -> Device:
    return Device(
        id=machine.id,
        protocol=machine.protocol,
        endpoint=machine.endpoint,
        sampling_interval_ms=_ms(machine.sampling_interval),
        reconnect=ReconnectSettings(
            initial_delay_s=machine.reconnect.initial_delay, max_delay_s=machine.reconnect.max_delay
        ),
        opcua=_opcua_options(spec, machine, tls_dir),
        kpi=machine_kpi_settings(machine),
        tags=[
            Tag(
                signal=t.signal,
                address=t.address,
                datatype=t.datatype,
                scale=t.scale,
                offset=t.offset,
                unit=t.unit,
                deadband=Deadband(kind=t.deadband.kind, value=t.deadband.value) if t.deadband else None,
                sampling_interval_ms=_ms(t.sampling_interval) if t.sampling_interval is not None else None,
            )
            for t in machine.tags
        ],
    )


def render_connector_configs(
    line: PlantLine,
    *,
    tls_dir: Path,
    data_dir: Path,
    metrics_base_port: int = DEFAULT_METRICS_PORT,
    metrics_address: str = "127.0.0.1",
) -> dict[str, ConnectorConfig]:
    """Return one validated ConnectorConfig per connector group, keyed by group name.

    TLS files are `<tls_dir>/ca.crt` and `<tls_dir>/<identity>.{crt,key}`; each connector keeps
    its outbox and state under `<data_dir>/<group>/`; metrics ports count up from
    `metrics_base_port` in group order.
    """
    spec = line.spec
    configs: dict[str, ConnectorConfig] = {}
    for index, connector in enumerate(topology(spec)):
        tls = TlsFiles(
            ca_file=tls_dir / TRUST_BUNDLE,
            cert_file=tls_dir / f"{connector.identity}.crt",
            key_file=tls_dir / f"{connector.identity}.key",
        )
        configs[connector.group] = ConnectorConfig(
            sparkplug=SparkplugIdentity(
                group_id=spec.sparkplug_group,
                edge_node_id=connector.edge_node_id,
                primary_host_id=spec.primary_host_id,
                primary_host_offline=spec.primary_host_offline,
                uint32_field=spec.uint32_field,
            ),
            brokers=[BrokerEndpoint(host=spec.broker.host, port=spec.broker.port, tls=tls)],
            outbox=OutboxSettings(directory=data_dir / connector.group / "outbox"),
            state_directory=data_dir / connector.group / "state",
            metrics_port=metrics_base_port + index,
            metrics_address=metrics_address,
            shifts=spec.kpi.shift_calendar,
            devices=[_device(spec, machine, tls_dir) for machine in connector.machines],
        )
    return configs


def connector_config_data(config: ConnectorConfig) -> dict[str, Any]:
    """Return a connector config as YAML-ready data (paths as strings, every default spelled out)."""
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    return data


# -- mosquitto --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker finds its files on its host."""

    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path
    acl_file: Path
    persistence_dir: Path

    @classmethod
    def under(cls, spec: PlantLineSpec, *, tls_dir: Path, broker_dir: Path) -> BrokerFiles:
        """Return the conventional layout: TLS files in `tls_dir`, ACL and persistence in `broker_dir`."""
        identity = broker_identity(spec)
        return cls(
            cafile=tls_dir / TRUST_BUNDLE,
            certfile=tls_dir / f"{identity}.crt",
            keyfile=tls_dir / f"{identity}.key",
            crlfile=tls_dir / CRL,
            acl_file=broker_dir / "acl",
            persistence_dir=broker_dir / "data",
        )


def broker_listen_address(spec: PlantLineSpec) -> str:
    """Return the address the broker binds: `listenAddress`, else `host` when it is an IP address, else all.

    A DNS name is not bound: on the broker's own machine it may resolve elsewhere than for its
    clients (Debian maps the host's own name to 127.0.1.1), so the broker listens on every interface.
    """
    if spec.broker.listen_address is not None:
        return spec.broker.listen_address
    try:
        return str(ipaddress.ip_address(spec.broker.host))
    except ValueError:
        return "0.0.0.0"  # noqa: S104 - a broker named by DNS serves every interface of its machine


def render_mosquitto_conf(
    line: PlantLine,
    *,
    files: BrokerFiles,
    listen_address: str | None = None,
    port: int | None = None,
    run_as: str | None = None,
) -> str:
    """Return mosquitto.conf: one mutual-TLS listener, ACL from the topology, optional bridge.

    The listener binds `listen_address`, by default the line's (`broker_listen_address`).
    """
    spec = line.spec
    address = listen_address if listen_address is not None else broker_listen_address(spec)
    lines = [
        f"# Rendered by plantline-operator for PlantLine {spec.site}/{spec.area}/{spec.line}; do not edit.",
        *([f"user {run_as}"] if run_as else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {files.acl_file}",
        "persistence true",
        f"persistence_location {files.persistence_dir}/",
        f"autosave_interval {spec.broker.autosave_seconds}",
        # Bound each client's queue by bytes, not by mosquitto's default of 1000 messages, which a
        # bridge passes within a minute of WAN outage. Not `max_queued_messages 0` ("no limit"):
        # mosquitto 2.0 mishandles it (eclipse-mosquitto/mosquitto#1956, #2879; here it cut a
        # client's connection), so the count limit is set out of reach instead.
        "max_queued_messages 100000000",
        f"max_queued_bytes {spec.broker.queue_limit_mib * 1024 * 1024}",
        "log_dest stderr",
        "connection_messages true",
        "set_tcp_nodelay true",
        "",
        f"listener {port if port is not None else spec.broker.port} {address}",
        f"cafile {files.cafile}",
        f"certfile {files.certfile}",
        f"keyfile {files.keyfile}",
        f"crlfile {files.crlfile}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
    ]
    if spec.broker.bridge is not None:
        lines += ["", *render_bridge(line, tls_dir=files.cafile.parent).splitlines()]
    return "\n".join(lines) + "\n"


def render_bridge(line: PlantLine, *, tls_dir: Path) -> str:
    """Return the mosquitto bridge section to the core broker (empty when no bridge is set)."""
    spec = line.spec
    bridge = spec.broker.bridge
    if bridge is None:
        return ""
    group = spec.sparkplug_group
    identity = bridge_identity(spec)
    prefixes = f' "" {bridge.remote_prefix}' if bridge.remote_prefix else ""
    lines = [
        f"connection {identity}",
        f"address {bridge.host}:{bridge.port}",
        f"remote_clientid {identity}",
        f"bridge_cafile {tls_dir / TRUST_BUNDLE}",
        f"bridge_certfile {tls_dir / f'{identity}.crt'}",
        f"bridge_keyfile {tls_dir / f'{identity}.key'}",
        "bridge_insecure false",
        "bridge_protocol_version mqttv311",
        "try_private true",
        # Keep the bridge's session on both sides: QoS 1 messages queued during a WAN outage survive.
        "cleansession false",
        "local_cleansession false",
        # The bridge's state (1 connected, 0 not) on $SYS/broker/connection/<name>/state, for the
        # broker exporter and the bridge-down alert; on this broker only, not the core's.
        "notifications true",
        "notifications_local_only true",
        "restart_timeout 2 60",
    ]
    for connector in topology(spec):
        node = connector.edge_node_id
        lines.append(f"topic {NAMESPACE}/{group}/+/{node}/# out 1{prefixes}")
    for connector in topology(spec):
        node = connector.edge_node_id
        lines.append(f"topic {NAMESPACE}/{group}/NCMD/{node} in 1{prefixes}")
        lines.append(f"topic {NAMESPACE}/{group}/DCMD/{node}/+ in 1{prefixes}")
    if spec.primary_host_id is not None:
        lines.append(f"topic {NAMESPACE}/STATE/{spec.primary_host_id} in 1{prefixes}")
    return "\n".join(lines) + "\n"


_MOSQUITTO_ACCESS = {"publish": "write", "subscribe": "read", "all": "readwrite"}


def render_acl(line: PlantLine, *, historian: bool = False) -> str:
    """Return the mosquitto acl_file text: the line's role model (`roles.line_grants`), one user per identity.

    With an acl_file, mosquitto denies whatever no line grants; `topic` lines below `user X` apply
    to X only, and no `pattern` lines are used, so no rule applies to every client. The host
    identity is granted its rights when the line has a primary host or, with `historian`, a historian.
    """
    spec = line.spec
    out = [f"# Rendered by plantline-operator for PlantLine {spec.site}/{spec.area}/{spec.line}; do not edit."]
    for grant in line_grants(spec, historian=historian):
        out += ["", *_mosquitto_user(grant)]
        if grant.role == "analytics":
            # The broker exporter connects as the reader and reads the broker's own $SYS counters.
            out.append(f"topic read {SYS_TOPICS}")
    return "\n".join(out) + "\n"


def _mosquitto_user(grant: Grant) -> list[str]:
    return [f"user {grant.identity}", *(f"topic {_MOSQUITTO_ACCESS[r.action]} {r.topic}" for r in grant.rules)]


# -- dashboards -----------------------------------------------------------------------------------


def line_view(line: PlantLine, *, runbook_base: str | None = None, cloud_bridge: bool | None = None) -> LineView:
    """Return the line as the dashboards and rules see it (plain data; the dashboards import no operator).

    `cloud_bridge`: the line runs the cloud bridge to Kafka (its dashboard, alerts and SLO are made);
    None: as the operator runs it, when the line has `spec.cloud`.
    """
    spec = line.spec
    renew_before = spec.pki.renew_before or builtin_profiles()["mqtt-client"].renew_before_days
    view = LineView(
        namespace=line_key(line)[0],
        name=line_key(line)[1],
        site=spec.site,
        area=spec.area,
        line=spec.line,
        machines=tuple(MachineView(m.id, m.protocol, tuple(t.signal for t in m.tags)) for m in spec.machines),
        connectors=tuple(ConnectorView(c.group, tuple(m.id for m in c.machines)) for c in topology(spec)),
        bridge=bridge_identity(spec) if spec.broker.bridge is not None else None,
        cloud_bridge=spec.cloud is not None if cloud_bridge is None else cloud_bridge,
        renew_before_days=float(renew_before),
        maintenance_window=spec.pki.maintenance_window is not None,
    )
    return view if runbook_base is None else replace(view, runbook_base=runbook_base)


# The identities and the topology live with the role model; they are re-exported for the renderers' callers.
__all__ = [
    "CRL",
    "TRUST_BUNDLE",
    "BrokerFiles",
    "CertificateRequest",
    "ConnectorTopology",
    "bridge_identity",
    "broker_identity",
    "broker_listen_address",
    "connector_config_data",
    "host_identity",
    "line_view",
    "opcua_application_uri",
    "opcua_identity",
    "reader_identity",
    "render_acl",
    "render_bridge",
    "render_certificate_requests",
    "render_connector_configs",
    "render_mosquitto_conf",
    "topology",
]
