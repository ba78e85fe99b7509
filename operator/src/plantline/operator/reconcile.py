"""The reconcile pipeline: one PlantLine's desired state made true, by level, in named steps.

The same `reconcile` runs on create, update, resume and the resync timer; it reads what exists,
applies what should exist (server-side apply is idempotent), deletes what should not, and returns
the status to write with the events worth telling. It never imports Kopf: the handlers translate
an `Outcome` into Kopf's status patch and errors.

Steps, in order: `certificates` (issue, renew, revoke and delete), `config` (connector configs),
`trust` (CA bundle and CRL for the broker and the connectors' OPC UA server checks, and the OPC
UA server certificates trusted as they are), `connectors` (ServiceAccount, NetworkPolicy, per
connector group a PersistentVolumeClaim and a Deployment, which mounts what the steps before
made), `cloud` (the cloud bridge's ConfigMap, NetworkPolicy and Deployment, with `spec.cloud`), `dashboards`
(Grafana dashboards, alert rules), `broker` (the line's objects in EMQX, for `broker.kind:
emqx`), `prune` (children no longer wanted), then the status. A broker that fails
does not stop the steps after it: `BrokerReady` says why, and the line is reconciled again soon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, Protocol

from plantline.operator.api import GROUP, PlantLine, PlantLineInvalid, SecretKeySelector, parse_plantline
from plantline.operator.cloud_model import (
    bridge_config_map,
    bridge_config_text,
    bridge_deployment,
    bridge_name,
    bridge_network_policy,
    bridge_pod_monitor,
)
from plantline.operator.emqx_model import BridgeMaterial, BrokerError, LineRef, Result
from plantline.operator.issuer import CaInvalid, CaState, issue, not_after_of, policy, serial_of, stored_facts
from plantline.operator.model import (
    IDENTITY_ANNOTATION,
    PAUSE_ANNOTATION,
    CertificateFact,
    CertificateMaterial,
    ConnectorSettings,
    Owner,
    certificate_secret,
    config_map,
    connector_claims,
    connector_configs,
    connector_deployments,
    connector_pod_monitor,
    dashboard_config_maps,
    digest,
    network_policy,
    prometheus_rule,
    rules_config_map,
    secret_name,
    selector,
    service_account,
    trust_config_map,
)
from plantline.operator.render import (
    CertificateRequest,
    bridge_identity,
    certificate_dependants,
    host_identity,
    render_certificate_requests,
)
from plantline.operator.resources import CHILD_KINDS, ApiFailure, Authority, Cluster, secret_bytes
from plantline.operator.roles import line_grants
from plantline.pki.errors import PkiError
from plantline.pki.renewal import Action, Decision, decide

SUPERSEDES_ANNOTATION = f"{GROUP}/supersedes"
NOT_READY_RETRY_S = 3.0  # the longest wait between checks while connectors become available
NOT_READY_FIRST_S = 0.5  # the first check: a Deployment on a healthy cluster takes well under 1 s
FAILURE_RETRY_S = 10.0

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to post on the PlantLine."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class Broker(Protocol):
    """The core broker's management API (EMQX): make a line's objects true, or remove them."""

    def sync(self, line: PlantLine, ref: LineRef, material: BridgeMaterial | None, ca_pem: bytes) -> Result: ...

    def remove(self, ref: LineRef, line: PlantLine | None) -> Result: ...


@dataclass(frozen=True, slots=True)
class Context:
    """What one reconcile talks to, and the time it believes it is; `broker` None: no EMQX is managed."""

    cluster: Cluster
    authority: Authority
    settings: ConnectorSettings
    now: datetime
    broker: Broker | None = None
    crl_url: str | None = None  # the CRL Distribution Point put in every certificate issued


@dataclass
class Outcome:
    """What a reconcile found: the status to write, events, and whether to come back soon."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # not ready yet, or a step failed: reconcile again
    invalid: str | None = None  # the spec can never work as it is: every problem with its path
    failure: str | None = None  # a step failed (the message names it)
    failed_step: str | None = None
    certificates: dict[str, int] = field(default_factory=dict)  # issued, renewed, revoked: counts of this reconcile
    crl_pem: bytes | None = None  # the CA's CRL as this reconcile published it
    # identity -> its certificate's expiry, role and machines, once the reconcile has them all
    certificate_facts: dict[str, CertificateFact] | None = None

    @property
    def ready(self) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True" for c in self.status.get("conditions", []))

    @property
    def result(self) -> str:
        """Return the outcome in one word: ready, progressing, failed, invalid or paused."""
        if self.invalid is not None:
            return "invalid"
        if self.failure is not None:
            return "failed"
        if self.ready:
            return "ready"
        paused = any(c.get("reason") == "ReconciliationPaused" for c in self.status.get("conditions", []))
        return "paused" if paused else "progressing"


@dataclass
class _State:
    line: PlantLine
    owner: Owner
    certificates: dict[str, CertificateMaterial] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    applied: set[tuple[str, str]] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    conditions: dict[str, tuple[ConditionStatus, str, str]] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)  # secret -> serial, from the last status
    serials: dict[str, int] = field(default_factory=dict)  # secret -> serial it holds after this reconcile
    counts: dict[str, int] = field(default_factory=lambda: {"issued": 0, "renewed": 0, "revoked": 0})
    crl_pem: bytes | None = None
    broker_failure: str | None = None
    previous: set[str] = field(default_factory=set)  # the condition types of the status before
    dropped: set[str] = field(default_factory=set)  # conditions that no longer apply to the line


def plain(value: Any) -> Any:
    """Return `value` with every mapping and sequence as plain dicts and lists (Kopf gives views)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _apply(state: _State, ctx: Context, desired: dict[str, Any]) -> None:
    kind, name = desired["kind"], desired["metadata"]["name"]
    ctx.cluster.apply(kind, state.owner.namespace, name, desired)
    state.applied.add((kind, name))


# -- steps ----------------------------------------------------------------------------------------


def _renewal(
    state: _State, ctx: Context, ca: CaState, request: CertificateRequest, stored: Mapping[str, Any] | None
) -> Decision:
    if stored is None:
        return decide(ctx.now, None, policy(state.line.spec, request))
    data = secret_bytes(stored)
    facts = stored_facts(ca, request, data.get("tls.crt", b""), data.get("tls.key", b""))
    if facts is None:
        return Decision(Action.CREATE, "the stored certificate or key is unreadable or does not match")
    if not facts.fits_request:
        return Decision(Action.REPLACE_KEY, "the identity or its subject alternative names changed")
    return decide(ctx.now, facts.facts, policy(state.line.spec, request))


def step_certificates(state: _State, ctx: Context) -> None:
    """Issue missing certificates, renew due ones, revoke and delete those no longer wanted."""
    ca = ctx.authority.load(ctx.now)
    namespace = state.owner.namespace
    stored = {
        s["metadata"]["name"]: s for s in ctx.cluster.list("Secret", namespace, selector(state.owner, "certificate"))
    }
    postponed: list[str] = []
    superseded: list[tuple[int, str]] = []
    for request in render_certificate_requests(state.line):
        existing = stored.get(secret_name(state.owner, state.line, request.identity))
        decision = _renewal(state, ctx, ca, request, existing)
        annotations: dict[str, str] = {}
        if decision.action.needs_work or existing is None:
            old = secret_bytes(existing) if existing is not None else {}
            reuse = old.get("tls.key") if decision.action is Action.RENEW else None
            new = issue(ca, request, ctx.now, key_pem=reuse, crl_url=ctx.crl_url)
            material = CertificateMaterial(new.certificate_pem, new.key_pem, ca.certificate_pem)
            old_serial = serial_of(old.get("tls.crt", b""))
            if old_serial is not None:
                annotations[SUPERSEDES_ANNOTATION] = f"{old_serial:x}"
            state.counts["renewed" if existing is not None else "issued"] += 1
            state.events.append(
                Event(
                    "Normal",
                    "CertificateIssued",
                    f"{request.identity}: serial {new.serial:x}, valid until {new.not_after:%Y-%m-%dT%H:%M:%SZ} "
                    f"({decision.action.value}: {decision.reason})",
                )
            )
        else:
            data = secret_bytes(existing)
            material = CertificateMaterial(data["tls.crt"], data["tls.key"], ca.certificate_pem)
            previous = (existing["metadata"].get("annotations") or {}).get(SUPERSEDES_ANNOTATION)
            if previous:
                annotations[SUPERSEDES_ANNOTATION] = previous
            if decision.action is Action.POSTPONED:
                when = f" until {decision.retry_at.astimezone(UTC):%Y-%m-%dT%H:%MZ}" if decision.retry_at else ""
                postponed.append(f"{request.identity}{when}")
        secret = certificate_secret(state.owner, state.line, request, material)
        secret["metadata"]["annotations"].update(annotations)
        _apply(state, ctx, secret)
        state.certificates[request.identity] = material
        current = serial_of(material.certificate)
        if current is not None:
            state.serials[secret["metadata"]["name"]] = current
        if SUPERSEDES_ANNOTATION in annotations:
            superseded.append((int(annotations[SUPERSEDES_ANNOTATION], 16), "superseded"))
    # A renewed certificate's predecessor is revoked once its successor is stored: one valid
    # certificate per identity. The serial rides in the new Secret, so a crash here loses nothing.
    fresh = [s for s in superseded if s[0] not in ca.revoked_serials]
    if fresh:
        state.counts["revoked"] += len(ctx.authority.revoke(fresh, ctx.now))
    _drop_unwanted_certificates(state, ctx, stored)
    _revoke_lost_certificates(state, ctx, ca, stored)
    message = f"{len(state.certificates)} certificates valid"
    issued = state.counts["issued"] + state.counts["renewed"]
    if issued:
        message += f", {issued} issued now"
    if postponed:
        state.conditions["CertificatesReady"] = (
            "True",
            "RenewalPostponed",
            f"{message}; renewal waits for the maintenance window: {', '.join(postponed)}",
        )
    else:
        state.conditions["CertificatesReady"] = ("True", "CertificatesValid", message)


def _drop_unwanted_certificates(state: _State, ctx: Context, stored: Mapping[str, Mapping[str, Any]]) -> None:
    """Revoke, then delete, the Secrets of identities the line no longer has."""
    for name, secret in sorted(stored.items()):
        if ("Secret", name) in state.applied:
            continue
        identity = (secret["metadata"].get("annotations") or {}).get(IDENTITY_ANNOTATION, name)
        serials = _secret_serials(secret)
        if serials:
            revoked = ctx.authority.revoke([(s, "cessation-of-operation") for s in serials], ctx.now)
            state.counts["revoked"] += len(revoked)
        ctx.cluster.apply("Secret", state.owner.namespace, name, None)
        listed = ", ".join(f"{s:x}" for s in serials) or "none"
        state.events.append(Event("Normal", "CertificateRevoked", f"{identity}: serials {listed} revoked"))


def _revoke_lost_certificates(
    state: _State, ctx: Context, ca: CaState, stored: Mapping[str, Mapping[str, Any]]
) -> None:
    """Revoke the serials the status recorded that no Secret holds any more (deleted by hand)."""
    held = {serial for secret in stored.values() for serial in _secret_serials(secret)}
    held.update(state.serials.values())
    lost = sorted(
        (name, serial)
        for name, serial in state.recorded.items()
        if serial not in held and serial not in ca.revoked_serials
    )
    if not lost:
        return
    state.counts["revoked"] += len(ctx.authority.revoke([(serial, "superseded") for _, serial in lost], ctx.now))
    for name, serial in lost:
        state.events.append(
            Event("Warning", "CertificateRevoked", f"{name}: serial {serial:x} revoked: its Secret was deleted")
        )


def recorded_serials(body: Mapping[str, Any]) -> dict[str, int]:
    """Return the certificate serials the line's status records, by Secret name."""
    entries = (body.get("status") or {}).get("certificates") or []
    return {str(e["secret"]): int(str(e["serial"]), 16) for e in entries}


def _secret_serials(secret: Mapping[str, Any]) -> list[int]:
    serials = []
    current = serial_of(secret_bytes(secret).get("tls.crt", b""))
    if current is not None:
        serials.append(current)
    previous = (secret["metadata"].get("annotations") or {}).get(SUPERSEDES_ANNOTATION)
    if previous:
        serials.append(int(previous, 16))
    return serials


def step_config(state: _State, ctx: Context) -> None:
    """Render each connector's configuration into the line's ConfigMap."""
    state.configs = connector_configs(state.line)
    _apply(state, ctx, config_map(state.owner, state.configs))


def step_connectors(state: _State, ctx: Context) -> None:
    """Apply the connectors' ServiceAccount, NetworkPolicy, and per group a volume and a Deployment."""
    _apply(state, ctx, service_account(state.owner))
    _apply(state, ctx, network_policy(state.owner, state.line))
    _apply_claims(state, ctx)
    for desired in connector_deployments(state.owner, state.line, ctx.settings, state.configs, state.certificates):
        _apply(state, ctx, desired)


def _apply_claims(state: _State, ctx: Context) -> None:
    """Create each group's volume claim once; an existing one is kept as it is.

    A bound claim's class and size cannot change, so a later change of the StorageClass setting
    or the outbox bound applies to new claims only, and the outbox on an existing one stays.
    """
    kind = "PersistentVolumeClaim"
    existing = {c["metadata"]["name"] for c in ctx.cluster.list(kind, state.owner.namespace, selector(state.owner))}
    for desired in connector_claims(state.owner, state.line, ctx.settings):
        name = desired["metadata"]["name"]
        if name in existing:
            state.applied.add((kind, name))
        else:
            _apply(state, ctx, desired)


def step_trust(state: _State, ctx: Context) -> None:
    """Publish the CA bundle and the current CRL, and the OPC UA server certificates trusted as they are."""
    ca = ctx.authority.load(ctx.now)  # again: this reconcile may have revoked since the first load
    state.crl_pem = ca.crl_pem
    _apply(state, ctx, trust_config_map(state.owner, state.line, ca.certificate_pem, ca.crl_pem))


def step_dashboards(state: _State, ctx: Context) -> None:
    """Apply the line's dashboards (ConfigMaps for Grafana's sidecar) and rules (PrometheusRule or ConfigMap).

    Where the prometheus-operator's PodMonitor is served, a PodMonitor scrapes the line's connectors
    with the target labels the dashboards select on. With `spec.dashboards.enabled: false` nothing
    is applied, and the prune step deletes them.
    """
    if not state.line.spec.dashboards.enabled:
        state.conditions["DashboardsReady"] = ("True", "DashboardsDisabled", "spec.dashboards.enabled is false")
        return
    boards = dashboard_config_maps(state.owner, state.line)
    for desired in boards:
        _apply(state, ctx, desired)
    if ctx.cluster.serves("PrometheusRule"):
        _apply(state, ctx, prometheus_rule(state.owner, state.line))
        reason, where = "PrometheusRuleApplied", "a PrometheusRule"
    else:
        _apply(state, ctx, rules_config_map(state.owner, state.line))
        reason, where = "RulesInConfigMap", "a ConfigMap (the PrometheusRule CRD is not installed)"
    message = f"{len(boards)} dashboards in ConfigMaps for Grafana's sidecar; the alert rules in {where}"
    if ctx.cluster.serves("PodMonitor"):
        _apply(state, ctx, connector_pod_monitor(state.owner, state.line))
        message += "; the connectors scraped through a PodMonitor"
        if state.line.spec.cloud is not None:
            _apply(state, ctx, bridge_pod_monitor(state.owner, state.line))
            message += ", the cloud bridge through another"
    state.conditions["DashboardsReady"] = ("True", reason, message)


def _secret_value(ctx: Context, namespace: str, ref: SecretKeySelector) -> bytes | None:
    """Return the value of one key of a user's Secret, None when the Secret or the key is absent."""
    secret = ctx.cluster.get("Secret", namespace, ref.name)
    return None if secret is None else secret_bytes(secret).get(ref.key)


def step_cloud(state: _State, ctx: Context) -> None:
    """Run the line's cloud bridge (`spec.cloud`): its ConfigMap, NetworkPolicy and Deployment; without it, nothing.

    The credentials Secret is the user's: it is read only to hash it into the pod template (a
    rotated connection string restarts the bridge) and to say in the condition when it is missing.
    """
    cloud = state.line.spec.cloud
    if cloud is None:
        state.dropped.add("CloudBridgeReady")
        return
    text = bridge_config_text(state.line, cloud)
    _apply(state, ctx, bridge_config_map(state.owner, text))
    missing, values = [], []
    for field_name, ref in (
        ("credentialsSecretRef", cloud.credentials_secret_ref),
        ("caSecretRef", cloud.ca_secret_ref),
    ):
        if ref is None:
            continue
        value = _secret_value(ctx, state.owner.namespace, ref)
        values.append(value or b"")
        if value is None:
            missing.append(f"spec.cloud.{field_name}: Secret {ref.name} has no key {ref.key}")
    certificate = state.certificates[host_identity(state.line.spec)].certificate
    hashes = {"config": digest([text.encode()]), "certificate": digest([certificate]), "credentials": digest(values)}
    _apply(state, ctx, bridge_network_policy(state.owner, state.line, cloud))
    _apply(state, ctx, bridge_deployment(state.owner, state.line, cloud, ctx.settings, hashes))
    if missing:
        state.conditions["CloudBridgeReady"] = ("False", "CredentialsMissing", "; ".join(missing))


def _cloud_condition(state: _State, ctx: Context) -> None:
    """Set CloudBridgeReady from the bridge Deployment, unless step_cloud already found it cannot start."""
    if state.line.spec.cloud is None or "CloudBridgeReady" in state.conditions:
        return
    name = bridge_name(state.owner.name)
    found = ctx.cluster.get("Deployment", state.owner.namespace, name)
    endpoint = state.line.spec.cloud.event_hubs_namespace or ",".join(state.line.spec.cloud.bootstrap_servers or ())
    if found is not None and _available(found):
        state.conditions["CloudBridgeReady"] = ("True", "DeploymentAvailable", f"the bridge to {endpoint} is available")
    else:
        state.conditions["CloudBridgeReady"] = (
            "False", "DeploymentProgressing", f"waiting for Deployment {name} (the bridge to {endpoint})",
        )  # fmt: skip


def _line_ref(owner: Owner) -> LineRef:
    return LineRef(owner.namespace, owner.name)


def step_broker(state: _State, ctx: Context) -> None:
    """Make the line's objects in EMQX true (`broker.kind: emqx`), or remove them when the kind changed."""
    line, ref = state.line, _line_ref(state.owner)
    if line.spec.broker.kind != "emqx":
        if "BrokerReady" in state.previous and ctx.broker is not None:
            _broker_call(state, partial(ctx.broker.remove, ref, line))
        if state.broker_failure is None:
            state.dropped.add("BrokerReady")
        return
    if ctx.broker is None:
        message = "the operator manages no EMQX: run it with --emqx URL and --emqx-credentials-secret"
        state.conditions["BrokerReady"] = ("False", "BrokerNotConfigured", message)
        return
    bridge = state.certificates.get(bridge_identity(line.spec))
    material = BridgeMaterial(bridge.certificate, bridge.key, bridge.ca) if bridge is not None else None
    ca_pem = ctx.authority.load(ctx.now).certificate_pem
    result = _broker_call(state, partial(ctx.broker.sync, line, ref, material, ca_pem))
    if result is not None:
        what = f"the authorization rules of {len(line_grants(line.spec))} identities and the line's default deny"
        if line.spec.broker.bridge is not None:
            what += ", its bridge connector and actions"
        state.conditions["BrokerReady"] = ("True", "Reconciled", f"EMQX holds {what}; {result.summary()}")


def _broker_call(state: _State, call: Callable[[], Result]) -> Result | None:
    try:
        result = call()
    except BrokerError as exc:
        state.broker_failure = f"step broker: {exc}"
        state.conditions["BrokerReady"] = ("False", exc.reason, str(exc))
        return None
    if result.changes:
        state.events.append(Event("Normal", "BrokerReconciled", f"EMQX: {result.summary()}"))
    return result


def step_prune(state: _State, ctx: Context) -> None:
    """Delete the line's children that no step wanted (a removed machine's Deployment, ...)."""
    for kind in CHILD_KINDS:
        for item in ctx.cluster.list(kind, state.owner.namespace, selector(state.owner)):
            name = item["metadata"]["name"]
            if (kind, name) not in state.applied:
                ctx.cluster.apply(kind, state.owner.namespace, name, None)
                state.events.append(Event("Normal", "Removed", f"{kind} {name} is no longer part of the line"))


STEPS: tuple[tuple[str, Callable[[_State, Context], None]], ...] = (
    ("certificates", step_certificates),
    ("config", step_config),
    ("trust", step_trust),
    ("connectors", step_connectors),
    ("cloud", step_cloud),
    ("dashboards", step_dashboards),
    ("broker", step_broker),
    ("prune", step_prune),
)


# -- status ---------------------------------------------------------------------------------------


def _available(deployment: Mapping[str, Any]) -> bool:
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    available = any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions", []))
    return (
        status.get("observedGeneration", 0) >= meta.get("generation", 1)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted  # no old pod left over from a rollout
        and available
    )


def _connectors_condition(state: _State, ctx: Context) -> None:
    bridge = bridge_name(state.owner.name)
    wanted = sorted(name for kind, name in state.applied if kind == "Deployment" and name != bridge)
    found = {
        d["metadata"]["name"]: d
        for d in ctx.cluster.list("Deployment", state.owner.namespace, selector(state.owner, "connector"))
    }
    waiting = [name for name in wanted if name not in found or not _available(found[name])]
    ready = len(wanted) - len(waiting)
    if waiting:
        state.conditions["ConnectorsReady"] = (
            "False",
            "DeploymentsProgressing",
            f"{ready}/{len(wanted)} connectors available; waiting for {', '.join(waiting)}",
        )
    else:
        state.conditions["ConnectorsReady"] = (
            "True",
            "DeploymentsAvailable",
            f"{ready}/{len(wanted)} connectors available",
        )


def _condition(
    previous: Mapping[str, Mapping[str, Any]],
    type_: str,
    value: tuple[ConditionStatus, str, str],
    now: datetime,
    generation: int,
) -> dict[str, Any]:
    status, reason, message = value
    before = previous.get(type_)
    changed = before is None or before.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            now.strftime("%Y-%m-%dT%H:%M:%SZ") if changed or before is None else before["lastTransitionTime"]
        ),
        "observedGeneration": generation,
    }


def _status(
    body: Mapping[str, Any],
    conditions: Mapping[str, tuple[ConditionStatus, str, str]],
    now: datetime,
    *,
    machines: int | None,
    certificates: Mapping[str, int] | None = None,
    dropped: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Return the full status: the given conditions, the others carried forward, Ready summarising.

    `certificates` (Secret name -> serial) replaces the recorded ones; None carries them forward.
    """
    generation = int(body["metadata"].get("generation", 0))
    previous = {c["type"]: c for c in (body.get("status") or {}).get("conditions", [])}
    merged: dict[str, tuple[ConditionStatus, str, str]] = {
        type_: (c["status"], c["reason"], c.get("message", "")) for type_, c in previous.items() if type_ not in dropped
    }
    merged.update(conditions)
    if "Ready" not in conditions:
        below = [(t, v) for t, v in sorted(merged.items()) if t != "Ready"]
        failing = [(t, v) for t, v in below if v[0] != "True"]
        if failing:
            type_, (_, reason, message) = failing[0]
            merged["Ready"] = ("False", reason, f"{type_}: {message}")
        else:
            merged["Ready"] = ("True", "Reconciled", "every certificate is valid and every connector is available")
    order = ["Ready", *sorted(t for t in merged if t != "Ready")]

    def observed(type_: str) -> int:
        # A condition carried forward keeps the generation it was found for.
        if type_ == "Ready" or type_ in conditions:
            return generation
        return int(previous[type_].get("observedGeneration", generation))

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [_condition(previous, t, merged[t], now, observed(t)) for t in order],
    }
    if machines is not None:
        status["machineCount"] = machines
    elif "machineCount" in (body.get("status") or {}):
        status["machineCount"] = body["status"]["machineCount"]
    serials = recorded_serials(body) if certificates is None else certificates
    if serials or "certificates" in (body.get("status") or {}):
        status["certificates"] = [{"secret": name, "serial": f"{serials[name]:x}"} for name in sorted(serials)]
    return status


def paused(body: Mapping[str, Any]) -> bool:
    value = (body["metadata"].get("annotations") or {}).get(PAUSE_ANNOTATION, "")
    return str(value).lower() in ("true", "yes", "1")


def parse(body: Mapping[str, Any]) -> PlantLine:
    """Return the validated PlantLine of a Kubernetes object (raise PlantLineInvalid)."""
    return parse_plantline(
        {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": plain(body["metadata"]),
            "spec": plain(body.get("spec")),
        }
    )


def reconcile(body: Mapping[str, Any], ctx: Context) -> Outcome:
    """Make one PlantLine's children match its spec; return the status and events."""
    if paused(body):
        message = f"reconciliation paused by the annotation {PAUSE_ANNOTATION}; remove it to resume"
        return Outcome(
            status=_status(body, {"Ready": ("False", "ReconciliationPaused", message)}, ctx.now, machines=None)
        )
    try:
        line = parse(body)
    except PlantLineInvalid as exc:
        message = "; ".join(map(str, exc.problems))
        return Outcome(
            status=_status(body, {"Ready": ("False", "InvalidSpec", message)}, ctx.now, machines=None),
            events=[Event("Warning", "InvalidSpec", message)],
            invalid=message,
        )
    previous = {str(c["type"]) for c in (body.get("status") or {}).get("conditions", [])}
    state = _State(line=line, owner=Owner.of(body), recorded=recorded_serials(body), previous=previous)
    for name, step in STEPS:
        try:
            step(state, ctx)
        except (ApiFailure, CaInvalid, PkiError) as exc:
            message = f"step {name}: {exc}"
            if name == "certificates":
                state.conditions["CertificatesReady"] = ("False", "IssuanceFailed", message)
            elif name == "dashboards":
                state.conditions["DashboardsReady"] = ("False", "ApplyFailed", message)
            elif name == "cloud":
                state.conditions["CloudBridgeReady"] = ("False", "ApplyFailed", message)
            else:
                state.conditions["ConnectorsReady"] = ("False", "ApplyFailed", message)
            # A half-done certificates step keeps every earlier record: a replaced serial is still
            # in its successor's Secret, and a removed identity's in its own until it is deleted.
            serials = {**state.recorded, **state.serials} if name == "certificates" else state.serials
            return Outcome(
                status=_status(body, state.conditions, ctx.now, machines=len(line.spec.machines), certificates=serials),
                events=[*state.events, Event("Warning", "ReconcileFailed", message)],
                retry_after=FAILURE_RETRY_S,
                failure=message,
                failed_step=name,
                certificates=state.counts,
            )
    _connectors_condition(state, ctx)
    _cloud_condition(state, ctx)
    status = _status(
        body, state.conditions, ctx.now, machines=len(line.spec.machines), certificates=state.serials,
        dropped=state.dropped,
    )  # fmt: skip
    ready = all(
        state.conditions[t][0] == "True" for t in ("ConnectorsReady", "CloudBridgeReady") if t in state.conditions
    )
    failure = state.broker_failure
    return Outcome(
        status=status,
        events=[*state.events, *([Event("Warning", "ReconcileFailed", failure)] if failure else [])],
        retry_after=FAILURE_RETRY_S if failure else None if ready else NOT_READY_RETRY_S,
        failure=failure,
        failed_step="broker" if failure else None,
        certificates=state.counts,
        crl_pem=state.crl_pem,
        certificate_facts=_certificate_facts(state),
    )


def _certificate_facts(state: _State) -> dict[str, CertificateFact]:
    dependants = certificate_dependants(state.line)
    facts = {}
    for identity, material in state.certificates.items():
        not_after = not_after_of(material.certificate)
        if not_after is not None:
            role, machines = dependants.get(identity, ("line", ()))
            facts[identity] = CertificateFact(not_after, role, machines)
    return facts


def retry_delay(outcome: Outcome, retries: int) -> float:
    """Return how long to wait before the next reconcile of a line that is not done.

    Waiting for connectors backs off from 0.5 s, doubling up to 3 s, so a line is Ready soon
    after its Deployments are, and a slow one costs a reconcile every 3 s.
    """
    base = outcome.retry_after or NOT_READY_RETRY_S
    if outcome.failure is not None:
        return base
    return min(base, NOT_READY_FIRST_S * 2.0 ** max(0, retries))


def finalize(body: Mapping[str, Any], ctx: Context) -> list[Event]:
    """Revoke every certificate of a line being deleted (current, superseded, recorded), remove its EMQX objects.

    Raises BrokerError when EMQX cannot be cleaned: the finalizer stays and the deletion is retried.
    """
    owner = Owner.of(body)
    serials: list[int] = []
    for secret in ctx.cluster.list("Secret", owner.namespace, selector(owner, "certificate")):
        serials.extend(_secret_serials(secret))
    serials.extend(s for s in recorded_serials(body).values() if s not in serials)
    events = []
    if serials:
        added = ctx.authority.revoke([(s, "cessation-of-operation") for s in serials], ctx.now)
        message = f"{len(serials)} certificates of the line revoked ({len(added)} newly); the CRL is republished"
        events.append(Event("Normal", "CertificatesRevoked", message))
    if ctx.broker is not None and _on_emqx(body):
        try:
            line: PlantLine | None = parse(body)
        except PlantLineInvalid:
            line = None  # its users are still recognised by their owner rule
        result = ctx.broker.remove(_line_ref(owner), line)
        if result.changes:
            events.append(Event("Normal", "BrokerReconciled", f"EMQX: {result.summary()}"))
    return events


def _on_emqx(body: Mapping[str, Any]) -> bool:
    """Return whether the line is, or was last reported, on EMQX."""
    kind = ((body.get("spec") or {}).get("broker") or {}).get("kind")
    conditions = (body.get("status") or {}).get("conditions") or []
    return kind == "emqx" or any(c.get("type") == "BrokerReady" for c in conditions)


def secret_names(line: PlantLine, owner: Owner) -> list[str]:
    """Return the names of every certificate Secret the line should have (for tests and docs)."""
    return [secret_name(owner, line, r.identity) for r in render_certificate_requests(line)]


__all__ = [
    "STEPS",
    "Broker",
    "Context",
    "Event",
    "Outcome",
    "finalize",
    "parse",
    "paused",
    "plain",
    "reconcile",
    "retry_delay",
    "secret_names",
]
