"""Kopf handlers: thin glue from Kubernetes events to the one reconcile pipeline.

`register(registry, options)` adds the handlers to a registry: create, update, resume and a resync
timer all run `reconcile.reconcile`; deletion runs `reconcile.finalize` behind the finalizer
`plantline.dev/finalizer`. Kopf keeps its progress in annotations under `plantline.dev`; the
status subresource is ours and is written on failure too. One lock per PlantLine keeps the
timer and a change handler from reconciling the same line at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from plantline.operator.api import GROUP, PLURAL, VERSION, PlantLine
from plantline.operator.emqx import Credentials, EmqxBroker
from plantline.operator.emqx_model import BridgeMaterial, BrokerError, BrokerUnauthorized, LineRef, Result
from plantline.operator.issuer import CaInvalid
from plantline.operator.model import FINALIZER, ConnectorSettings
from plantline.operator.reconcile import Broker, Context, Event, Outcome, finalize, reconcile, retry_delay
from plantline.operator.resources import ApiFailure, Cluster, KubeCluster, SecretAuthority, connect, secret_bytes
from plantline.operator.telemetry import CrlPublisher, OperatorMetrics


@dataclass(frozen=True, slots=True)
class Options:
    """How the operator runs (from `plantline operator run`'s flags)."""

    connector: ConnectorSettings
    ca_namespace: str = "plantline-system"
    ca_secret: str = "plantline-ca"
    resync_seconds: float = 60.0
    metrics: OperatorMetrics | None = None  # counted when given (`plantline operator run` serves them)
    emqx_url: str | None = None  # the EMQX REST API that `broker.kind: emqx` lines are reconciled in
    emqx_secret: tuple[str, str] = ("plantline-system", "plantline-emqx-api")  # namespace, name
    emqx_listener: str | None = None  # the listener made mutual TLS with the operator's CA, e.g. ssl:default
    crl_url: str | None = None  # the CRL Distribution Point put in every certificate
    crl: CrlPublisher | None = None  # where the CA's latest CRL is published for that URL


class SecretBroker:
    """EMQX with the API key read from a Secret (`api-key`, `api-secret`) at each call, so a rotated key is used."""

    def __init__(self, cluster: Cluster, url: str, secret: tuple[str, str], **options: Any) -> None:
        self._cluster = cluster
        self._url = url
        self._secret = secret
        self._options = options  # EmqxClient's

    def _broker(self) -> EmqxBroker:
        namespace, name = self._secret
        found = self._cluster.get("Secret", namespace, name)
        data = secret_bytes(found) if found is not None else {}
        key, secret = data.get("api-key", b"").decode().strip(), data.get("api-secret", b"").decode().strip()
        if not key or not secret:
            raise BrokerUnauthorized(f"the Secret {namespace}/{name} holds no api-key and api-secret for EMQX")
        return EmqxBroker(self._url, Credentials(key, secret), **self._options)

    def sync(self, line: PlantLine, ref: LineRef, material: BridgeMaterial | None, ca_pem: bytes) -> Result:
        return self._broker().sync(line, ref, material, ca_pem)

    def remove(self, ref: LineRef, line: PlantLine | None) -> Result:
        return self._broker().remove(ref, line)


class _Runtime:
    """The operator's clients and per-line locks, made at startup and kept in Kopf's memo."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.cluster = KubeCluster(connect())
        self.authority = SecretAuthority(self.cluster, options.ca_namespace, options.ca_secret)
        self.broker: Broker | None = (
            SecretBroker(self.cluster, options.emqx_url, options.emqx_secret, listener=options.emqx_listener)
            if options.emqx_url
            else None
        )
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def forget(self, uid: str) -> None:
        with self._guard:
            self._locks.pop(uid, None)

    def context(self) -> Context:
        return Context(
            self.cluster, self.authority, self.options.connector, datetime.now(UTC), self.broker, self.options.crl_url
        )

    def reconcile(self, body: kopf.Body, uid: str) -> Outcome:
        """Reconcile one line under its lock, and count it."""
        started = time.monotonic()
        with self.lock(uid):
            outcome = reconcile(body, self.context())
        metrics = self.options.metrics
        if metrics is not None:
            meta = body["metadata"]
            metrics.reconciled(
                namespace=str(meta.get("namespace")),
                name=str(meta.get("name")),
                result=outcome.result,
                seconds=time.monotonic() - started,
                failed_step=outcome.failed_step,
                certificates=outcome.certificates,
            )
            metrics.generation_seen(uid, int(meta.get("generation") or 0), now=time.time(), ready=outcome.ready)
            key = (str(meta.get("namespace")), str(meta.get("name")))
            if outcome.crl_pem is not None:
                metrics.pki.set_crl(key, outcome.crl_pem)
            if outcome.certificate_facts is not None:
                metrics.pki.set_certificates(key, outcome.certificate_facts)
        if outcome.crl_pem is not None and self.options.crl is not None:
            self.options.crl.set(outcome.crl_pem)
        return outcome


def _post(body: kopf.Body, events: list[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])


def _finish(outcome: Outcome, *, body: kopf.Body, patch: kopf.Patch, retry: int) -> None:
    """Write the status, post the events, and tell Kopf whether to come back."""
    patch.status.update(outcome.status)
    _post(body, outcome.events)
    if outcome.invalid is not None:
        raise kopf.PermanentError(f"invalid PlantLine: {outcome.invalid}")
    if outcome.failure is not None:
        raise kopf.TemporaryError(outcome.failure, delay=retry_delay(outcome, retry))
    if outcome.retry_after is not None:
        raise kopf.TemporaryError("connectors not available yet", delay=retry_delay(outcome, retry))


def register(registry: kopf.OperatorRegistry, options: Options) -> None:
    """Add the PlantLine handlers, configured by `options`, to `registry`."""
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    def configure(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.scanning.disabled = True  # no cluster-wide CRD/namespace watch: least privilege
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        # Reconciles mostly wait on the apiserver: more threads than Kopf's CPU-based default.
        settings.execution.max_workers = 16
        memo["runtime"] = _Runtime(options)

    @kopf.on.login(registry=registry)
    def login(*, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        """Log Kopf in with the same credentials as the operator's own client ($KUBECONFIG read now)."""
        config = connect().configuration
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
        scheme, _space, token = (header or "").rpartition(" ")
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            scheme=scheme or None,
            token=token or None,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
            trust_env=settings.networking.trust_env,
        )

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, registry=registry)
    def reconcile_line(*, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, uid: str, retry: int, **_: Any) -> None:
        runtime: _Runtime = memo["runtime"]
        _finish(runtime.reconcile(body, uid), body=body, patch=patch, retry=retry)

    @kopf.timer(*resource, registry=registry, interval=options.resync_seconds, initial_delay=options.resync_seconds)
    def resync(*, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, uid: str, **kwargs: Any) -> None:
        """Repair drift (a child deleted or edited by hand) and renew certificates that came due."""
        if body["metadata"].get("deletionTimestamp"):
            return
        runtime: _Runtime = memo["runtime"]
        _finish(runtime.reconcile(body, uid), body=body, patch=patch, retry=int(kwargs.get("retry", 0)))

    @kopf.on.delete(*resource, registry=registry)
    def release(*, body: kopf.Body, memo: kopf.Memo, uid: str, **_: Any) -> None:
        """Revoke the line's certificates, publish the CRL, remove its EMQX objects; the children go by GC."""
        runtime: _Runtime = memo["runtime"]
        try:
            with runtime.lock(uid):
                events = finalize(body, runtime.context())
        except (ApiFailure, CaInvalid) as exc:
            raise kopf.TemporaryError(f"revoking the line's certificates: {exc}", delay=5.0) from None
        except BrokerError as exc:
            raise kopf.TemporaryError(f"removing the line's objects from EMQX: {exc}", delay=5.0) from None
        _post(body, events)
        if runtime.options.crl is not None:  # the line's certificates were just revoked
            runtime.options.crl.set(runtime.authority.load(datetime.now(UTC)).crl_pem)
        runtime.forget(uid)
        if runtime.options.metrics is not None:
            runtime.options.metrics.forget(uid)
            meta = body["metadata"]
            runtime.options.metrics.pki.forget((str(meta.get("namespace")), str(meta.get("name"))))


__all__ = ["Options", "SecretBroker", "register"]
