"""Appliers: the only place the operator writes to Kubernetes.

`KubeCluster.apply(kind, namespace, name, desired)` is one idempotent applier per kind:
`desired` is server-side applied with the field manager `plantline-operator` (conflicts forced,
since the operator owns these objects), `None` deletes. `SecretAuthority` keeps the operator's CA
in a Secret and changes it only by compare-and-swap on its resourceVersion, so two reconciles
revoking at once never lose a serial.

Errors carry the HTTP status and the apiserver's message, never a request body (which may hold
key material).
"""

from __future__ import annotations

import json
import os
import random
import time
from base64 import b64decode, b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from plantline.operator.issuer import CaState, ca_data, crl_is_fresh, load_ca, load_signer, new_ca, with_revoked
from plantline.operator.model import FIELD_MANAGER, MANAGED_BY
from plantline.pki.x509build import Signer

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read
CAS_ATTEMPTS = 16
CAS_FIRST_BACKOFF_S = 0.02
CAS_MAX_BACKOFF_S = 1.0


@dataclass(frozen=True, slots=True)
class Kind:
    """Where the API serves one kind of object."""

    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{base}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{path}/{quote(name)}" if name else path


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("v1", "Secret", "secrets"),
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        Kind("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules"),
        Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
    )
}
# The kinds the operator creates per line, in the order they are pruned (dependents first). Listing
# a kind whose API is not served finds nothing (404), so PrometheusRule and PodMonitor are pruned
# only where they exist.
CHILD_KINDS = (
    "Deployment",
    "PersistentVolumeClaim",
    "NetworkPolicy",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "PrometheusRule",
    "PodMonitor",
)


class ApiFailure(Exception):
    """The apiserver refused a request; `status` is the HTTP status."""

    def __init__(self, status: int, method: str, path: str, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class Cluster(Protocol):
    """What the reconcile pipeline needs from Kubernetes (a recording fake stands in for tests)."""

    def apply(self, kind: str, namespace: str, name: str, desired: Mapping[str, Any] | None) -> None: ...

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, kind: str, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def serves(self, kind: str) -> bool:
        """Return whether the apiserver serves `kind` (e.g. whether a CRD of it is installed)."""
        ...


class Authority(Protocol):
    """The operator's CA: read it, and revoke serials (publishing a new CRL)."""

    def load(self, now: datetime) -> CaState: ...

    def revoke(self, serials: Sequence[tuple[int, str]], now: datetime) -> list[int]: ...


def connect(kubeconfig: Path | None = None) -> k8s_client.ApiClient:
    """Return an API client from `kubeconfig`, $KUBECONFIG, ~/.kube/config or the pod's account."""
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = k8s_client.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return k8s_client.ApiClient(configuration)
    api: k8s_client.ApiClient = k8s_config.new_client_from_config(config_file=str(path) if path else None)  # type: ignore[no-untyped-call]
    return api


class KubeCluster:
    """The Cluster protocol over the Kubernetes REST API."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        self._api = api

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """Return the decoded answer, None on 404; raise ApiFailure on any other error."""
        _method, url, headers, payload, _post = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(method, url, headers, payload, _request_timeout=REQUEST_TIMEOUT)
            raw = response.read()  # type: ignore[no-untyped-call]
            status = response.status
        except k8s_client.ApiException as exc:
            raw, status = (exc.body or "").encode() if isinstance(exc.body, str) else (exc.body or b""), exc.status
        if status == 404:
            return None
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw.decode(errors="replace")[:500]}
        if status >= 400:
            raise ApiFailure(status, method, path, str(decoded.get("message", decoded))[:2000])
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def apply(self, kind: str, namespace: str, name: str, desired: Mapping[str, Any] | None) -> None:
        where = KINDS[kind]
        if desired is None:
            self.request(
                "DELETE",
                where.path(namespace, name),
                body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
            )
            return
        self.request(
            "PATCH",
            where.path(namespace, name),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=desired,
            content_type="application/apply-patch+yaml",
        )

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", KINDS[kind].path(namespace, name))

    def serves(self, kind: str) -> bool:
        where = KINDS[kind]
        base = "/api/v1" if where.api_version == "v1" else f"/apis/{where.api_version}"
        listing = self.request("GET", base) or {}  # discovery: readable by every authenticated user
        return any(resource.get("name") == where.plural for resource in listing.get("resources", []))

    def list(self, kind: str, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        answer = self.request("GET", KINDS[kind].path(namespace), query=[("labelSelector", selector)]) or {}
        items: list[dict[str, Any]] = answer.get("items", [])
        return items


def secret_bytes(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """Return a Secret's data decoded from base64."""
    return {key: b64decode(value) for key, value in (secret.get("data") or {}).items()}


class SecretAuthority:
    """The operator's CA in the Secret `namespace/name`, created on first use if absent.

    Every change is a compare-and-swap on the Secret's resourceVersion, retried on conflict after a
    jittered back-off. The public half (CA certificate and CRL) is published in the ConfigMap
    `<name>-trust` beside it, for brokers outside any line.
    """

    def __init__(self, cluster: KubeCluster, namespace: str, name: str) -> None:
        self._cluster = cluster
        self.namespace = namespace
        self.name = name
        # Parsed once: the CA by the Secret's resourceVersion, and its key by the key material, as
        # a revocation changes the version but not the key (loading an RSA key costs tens of ms).
        self._parsed: tuple[str, CaState] | None = None
        self._signer: tuple[bytes, Signer] | None = None

    @property
    def where(self) -> str:
        return f"Secret {self.namespace}/{self.name}"

    def _read(self, now: datetime) -> tuple[CaState, dict[str, bytes], str]:
        path = KINDS["Secret"].path(self.namespace, self.name)
        secret = self._cluster.request("GET", path)
        if secret is None:
            certificate, key = new_ca(now)
            created = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "labels": {"app.kubernetes.io/part-of": "plantline", "app.kubernetes.io/managed-by": MANAGED_BY},
                },
                "type": "Opaque",
                "data": {"ca.crt": b64encode(certificate).decode(), "ca.key": b64encode(key).decode()},
            }
            try:
                self._cluster.request("POST", KINDS["Secret"].path(self.namespace), body=created)
            except ApiFailure as exc:
                if exc.status != 409:  # 409: another operator created it first; read theirs
                    raise
            secret = self._cluster.request("GET", path)
            if secret is None:
                raise ApiFailure(404, "GET", path, "the CA Secret vanished right after it was created")
        data = secret_bytes(secret)
        version = str(secret["metadata"]["resourceVersion"])
        parsed = self._parsed
        if parsed is None or parsed[0] != version:
            material = data.get("ca.crt", b"") + b"\0" + data.get("ca.key", b"")
            known = self._signer
            if known is None or known[0] != material:
                known = (material, load_signer(data, where=self.where))
                self._signer = known
            parsed = (version, load_ca(data, where=self.where, signer=known[1]))
            self._parsed = parsed
        return parsed[1], data, version

    def _swap(self, data: dict[str, bytes], version: str) -> bool:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": version},
            "type": "Opaque",
            "data": {key: b64encode(value).decode() for key, value in data.items()},
        }
        try:
            self._cluster.request("PUT", KINDS["Secret"].path(self.namespace, self.name), body=body)
        except ApiFailure as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _publish(self, ca: CaState) -> None:
        self._cluster.apply(
            "ConfigMap",
            self.namespace,
            f"{self.name}-trust",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{self.name}-trust",
                    "namespace": self.namespace,
                    "labels": {"app.kubernetes.io/part-of": "plantline", "app.kubernetes.io/managed-by": MANAGED_BY},
                },
                "data": {"ca.crt": ca.certificate_pem.decode(), "crl.pem": ca.crl_pem.decode()},
            },
        )

    def _change(
        self, serials: Sequence[tuple[int, str]], now: datetime, *, only_if_stale: bool
    ) -> tuple[CaState, list[int]]:
        for _attempt in range(CAS_ATTEMPTS):
            ca, data, version = self._read(now)
            if only_if_stale and crl_is_fresh(ca, now):
                return ca, []
            if not only_if_stale and not {s for s, _ in serials} - ca.revoked_serials and crl_is_fresh(ca, now):
                return ca, []
            changed, added = with_revoked(ca, serials, now)
            if self._swap(ca_data(changed, data["ca.key"]), version):
                self._publish(changed)
                return changed, added
            # Lost the race: back off with jitter, so concurrent writers stop colliding in step.
            time.sleep(random.uniform(0, min(CAS_MAX_BACKOFF_S, CAS_FIRST_BACKOFF_S * 2**_attempt)))  # noqa: S311
        raise ApiFailure(409, "PUT", self.where, f"the CA Secret kept changing under {CAS_ATTEMPTS} attempts")

    def load(self, now: datetime) -> CaState:
        """Return the CA, creating it if absent and refreshing a CRL past half its life."""
        ca, _added = self._change((), now, only_if_stale=True)
        return ca

    def revoke(self, serials: Sequence[tuple[int, str]], now: datetime) -> list[int]:
        """Revoke (serial, reason) pairs; return the serials that were not revoked before."""
        _ca, added = self._change(serials, now, only_if_stale=False)
        return added


__all__ = [
    "CHILD_KINDS",
    "KINDS",
    "ApiFailure",
    "Authority",
    "Cluster",
    "KubeCluster",
    "SecretAuthority",
    "connect",
    "secret_bytes",
]
