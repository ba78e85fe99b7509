"""The operator's Prometheus metrics, and the certificate facts of a CA, made from `metric_names`.

`OperatorMetrics` counts reconciles by outcome, failed steps, certificates issued, renewed and
revoked, and times reconciles and a spec change's way to Ready; `PkiMetrics` holds the gauges of
each identity's certificate expiry and of the CRL, per line (namespace and name), which the
operator sets from each reconcile of a line and `plantline up --monitoring` from its local CA.
`serve` exposes a registry on /metrics and, given a `CrlPublisher`, the CA's current CRL on
/crl.der (the CRL Distribution Point of `--crl-url`). The names, help texts and labels are
`plantline.connectors.metric_names`', which the dashboards read too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from plantline.connectors import metric_names as names
from plantline.connectors.metric_names import MetricDefinition
from plantline.operator.model import CertificateFact


def _described(metric: MetricDefinition) -> tuple[str, str, tuple[str, ...]]:
    """Return what a collector is made from: the family's name, the help text and the labels."""
    return metric.family, metric.help, metric.labels


def crl_times(crl_pem: bytes) -> tuple[datetime, datetime | None]:
    """Return when a PEM CRL was issued and when it stops being valid."""
    crl = x509.load_pem_x509_crl(crl_pem)
    return crl.last_update_utc, crl.next_update_utc


LineKey = tuple[str, str]  # a PlantLine's namespace and name


@dataclass(frozen=True)
class PkiMetrics:
    """The certificate facts of the lines of one CA: each identity's expiry, and the CRL's times, per line."""

    registry: CollectorRegistry
    not_after: Gauge
    crl_last_update: Gauge
    crl_next_update: Gauge
    _identities: dict[LineKey, set[tuple[str, str, str]]] = field(default_factory=dict)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> PkiMetrics:
        r = registry if registry is not None else CollectorRegistry()
        return cls(
            r,
            Gauge(*_described(names.PKI_CERTIFICATE_NOT_AFTER), registry=r),
            Gauge(*_described(names.PKI_CRL_LAST_UPDATE), registry=r),
            Gauge(*_described(names.PKI_CRL_NEXT_UPDATE), registry=r),
        )

    def set_crl(self, line: LineKey, crl_pem: bytes) -> None:
        """Set the CRL's times as the line's brokers have them."""
        last, next_ = crl_times(crl_pem)
        self.crl_last_update.labels(*line).set(last.timestamp())
        if next_ is not None:
            self.crl_next_update.labels(*line).set(next_.timestamp())

    def set_certificates(self, line: LineKey, facts: Mapping[str, CertificateFact]) -> None:
        """Set the line's identities' expiry; the line's identities no longer listed are dropped."""
        wanted = {(identity, f.role, ",".join(f.machines)): f for identity, f in facts.items()}
        for gone in self._identities.get(line, set()) - set(wanted):
            self.not_after.remove(*line, *gone)
        for key, fact in wanted.items():
            self.not_after.labels(*line, *key).set(fact.not_after.timestamp())
        self._identities[line] = set(wanted)

    def forget(self, line: LineKey) -> None:
        """Drop every series of a line that is gone."""
        self.set_certificates(line, {})
        del self._identities[line]
        for gauge in (self.crl_last_update, self.crl_next_update):
            with contextlib.suppress(KeyError):
                gauge.remove(*line)


@dataclass
class OperatorMetrics:
    """The operator's metrics in their own registry, with its CA's `PkiMetrics`."""

    registry: CollectorRegistry
    reconciles: Counter
    errors: Counter
    duration: Histogram
    time_to_ready: Histogram
    certificates: dict[str, Counter]  # issued, renewed, revoked
    pki: PkiMetrics
    # uid -> (generation, when it was first reconciled; None once it was found Ready)
    _first_seen: dict[str, tuple[int, float | None]] = field(default_factory=dict)

    @classmethod
    def create(cls) -> OperatorMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            reconciles=Counter(*_described(names.OPERATOR_RECONCILES), registry=r),
            errors=Counter(*_described(names.OPERATOR_RECONCILE_ERRORS), registry=r),
            duration=Histogram(
                *_described(names.OPERATOR_RECONCILE_DURATION),
                buckets=names.OPERATOR_RECONCILE_DURATION.buckets,
                registry=r,
            ),
            time_to_ready=Histogram(
                *_described(names.OPERATOR_TIME_TO_READY), buckets=names.OPERATOR_TIME_TO_READY.buckets, registry=r
            ),
            certificates={
                kind: Counter(*_described(metric), registry=r)
                for kind, metric in (
                    ("issued", names.OPERATOR_CERTIFICATES_ISSUED),
                    ("renewed", names.OPERATOR_CERTIFICATES_RENEWED),
                    ("revoked", names.OPERATOR_CERTIFICATES_REVOKED),
                )
            },
            pki=PkiMetrics.create(r),
        )

    def reconciled(
        self,
        *,
        namespace: str,
        name: str,
        result: str,
        seconds: float,
        failed_step: str | None,
        certificates: Mapping[str, int],
    ) -> None:
        """Count one reconcile of a PlantLine: its outcome, duration, failed step and certificates."""
        self.reconciles.labels(namespace, name, result).inc()
        self.duration.observe(seconds)
        if failed_step is not None:
            self.errors.labels(namespace, name, failed_step).inc()
        for kind, count in certificates.items():
            if count:
                self.certificates[kind].labels(namespace, name).inc(count)

    def generation_seen(self, uid: str, generation: int, *, now: float, ready: bool) -> None:
        """Time a generation of a PlantLine from its first reconcile to the first that finds it Ready."""
        seen = self._first_seen.get(uid)
        if seen is None or seen[0] != generation:
            seen = (generation, now)
        if ready and seen[1] is not None:
            self.time_to_ready.observe(max(0.0, now - seen[1]))
            seen = (generation, None)  # observed once per generation
        self._first_seen[uid] = seen

    def forget(self, uid: str) -> None:
        self._first_seen.pop(uid, None)


CRL_PATH = "/crl.der"


class CrlPublisher:
    """The CA's latest CRL, as the operator last published it, for its CRL Distribution Point."""

    def __init__(self) -> None:
        self._der: bytes | None = None
        self._lock = threading.Lock()

    def set(self, crl_pem: bytes) -> None:
        der = x509.load_pem_x509_crl(crl_pem).public_bytes(Encoding.DER)
        with self._lock:
            self._der = der

    @property
    def der(self) -> bytes | None:
        with self._lock:
            return self._der


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_: Any) -> None:
        """Say nothing per request: the operator logs its own work, not every scrape."""


StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def wsgi_app(
    registry: CollectorRegistry, crl: CrlPublisher | None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """Return the operator's HTTP endpoint: the CRL at /crl.der (with a publisher), metrics elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if crl is None or environ.get("PATH_INFO") != CRL_PATH:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        der = crl.der
        if der is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no CRL published yet\n"]
        start_response("200 OK", [("Content-Type", "application/pkix-crl"), ("Content-Length", str(len(der)))])
        return [der]

    return app


def serve(registry: CollectorRegistry, address: str, port: int, *, crl: CrlPublisher | None = None) -> WSGIServer:
    """Serve `registry` on http://address:port/metrics (and the CRL on /crl.der) from a daemon thread."""
    server = make_server(address, port, wsgi_app(registry, crl), server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="plantline-http").start()
    return server
