"""Test doubles of the operator's own protocols: a recording `Cluster` and an in-memory `Authority`.

`RecordingCluster` stands in for the apiserver behind `resources.Cluster`: `apply` stores or
deletes whole objects keyed by (kind, namespace, name) and records every call, `list` filters by
labels, `serves` answers for the built-in kinds and the custom ones it was given (a CRD
installed), and `make_available` plays the deployment controller. `MemoryAuthority` keeps the
operator's CA the way `resources.SecretAuthority` keeps it in its Secret (the same `issuer`
functions, the same data keys), without the compare-and-swap. `demo_body` is the PlantLine of
`examples/demo-line.yaml` as the apiserver returns it. Nothing here opens a socket or sleeps.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from plantline.operator.issuer import CaState, ca_data, crl_is_fresh, load_ca, new_ca, with_revoked
from plantline.pki.x509build import RevokedEntry

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-line.yaml"
UID = "6f1c2a4e-0d1b-4c55-9a77-3b2f8e1d9c01"

Key = tuple[str, str, str]  # kind, namespace, name


def demo_body(*, grouping: str | None = None, generation: int = 1) -> dict[str, Any]:
    """Return the demo PlantLine as a Kubernetes object: server metadata added, no status yet."""
    body: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    body["metadata"] |= {
        "uid": UID,
        "generation": generation,
        "resourceVersion": "4711",
        "creationTimestamp": "2026-11-18T11:00:00Z",
        "finalizers": ["plantline.dev/finalizer"],
        "annotations": {"plantline.dev/last-handled-configuration": "{}"},
    }
    if grouping is not None:
        body["spec"]["connectors"] = {"grouping": grouping}
    return body


@dataclass(frozen=True, slots=True)
class Call:
    """One `apply` call as the pipeline made it (`desired` None: a delete)."""

    kind: str
    namespace: str
    name: str
    desired: dict[str, Any] | None


class RecordingCluster:
    """An in-memory `Cluster`: whole-object applies, label-filtered lists, every apply recorded.

    Like the apiserver, it keeps an object's status across applies and bumps
    `metadata.generation` only when the `spec` changes.
    """

    def __init__(self, *, served: tuple[str, ...] = ()) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.calls: builtins.list[Call] = []
        self._version = 0
        self.served = set(served)  # custom kinds whose CRD is installed, e.g. "PrometheusRule"

    def serves(self, kind: str) -> bool:
        return kind in self.served or kind in ("Secret", "ConfigMap", "ServiceAccount", "Deployment", "NetworkPolicy")

    def apply(self, kind: str, namespace: str, name: str, desired: Mapping[str, Any] | None) -> None:
        if not self.serves(kind):
            raise ValueError(f"apply {kind} {name}: the apiserver serves no {kind}")  # as the apiserver's 404
        self.calls.append(Call(kind, namespace, name, copy.deepcopy(dict(desired)) if desired is not None else None))
        key = (kind, namespace, name)
        if desired is None:
            self.objects.pop(key, None)
            return
        meta = desired.get("metadata") or {}
        if (desired.get("kind"), meta.get("namespace"), meta.get("name")) != key:
            raise ValueError(f"apply {key} with a body naming {desired.get('kind')} {meta.get('name')}")
        stored = copy.deepcopy(dict(desired))
        current = self.objects.get(key)
        generation = 1
        if current is not None:
            generation = current["metadata"]["generation"] + (current.get("spec") != stored.get("spec"))
            if "status" in current:
                stored["status"] = current["status"]
        self._version += 1
        stored["metadata"] |= {"generation": generation, "resourceVersion": str(self._version)}
        self.objects[key] = stored

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def make_available(self, *names: str) -> None:
        """Set the named Deployments' status (all, if none named) as the deployment controller does."""
        for (kind, _namespace, name), obj in self.objects.items():
            if kind != "Deployment" or (names and name not in names):
                continue
            replicas = obj["spec"].get("replicas", 1)
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }

    def stored(self, kind: str) -> dict[str, dict[str, Any]]:
        """Return the stored objects of one kind, by name."""
        return {name: obj for (k, _ns, name), obj in sorted(self.objects.items()) if k == kind}

    def applied(self, kind: str | None = None) -> builtins.list[Call]:
        """Return the recorded applies (not deletes), of one kind if given."""
        return [c for c in self.calls if c.desired is not None and kind in (None, c.kind)]

    def deleted(self) -> builtins.list[tuple[str, str]]:
        """Return (kind, name) of every recorded delete, in order."""
        return [(c.kind, c.name) for c in self.calls if c.desired is None]

    def list(self, kind: str, namespace: str, labels: Mapping[str, str]) -> builtins.list[dict[str, Any]]:
        found = []
        for (k, ns, _name), obj in sorted(self.objects.items()):
            have = obj["metadata"].get("labels") or {}
            if k == kind and ns == namespace and all(have.get(key) == value for key, value in labels.items()):
                found.append(copy.deepcopy(obj))
        return found


class MemoryAuthority:
    """An in-memory `Authority`: the CA Secret's data in a dict, changed through `issuer` only."""

    def __init__(self, certificate_pem: bytes, key_pem: bytes) -> None:
        self.data: dict[str, bytes] = {"ca.crt": certificate_pem, "ca.key": key_pem}
        self.revoke_calls: list[list[tuple[int, str]]] = []
        # Parsed once per content, as SecretAuthority parses once per resourceVersion (RSA loads are slow).
        self._parsed: tuple[tuple[tuple[str, bytes], ...], CaState] | None = None

    @classmethod
    def new(cls, now: datetime) -> MemoryAuthority:
        return cls(*new_ca(now))

    @property
    def ca(self) -> CaState:
        content = tuple(sorted(self.data.items()))
        if self._parsed is None or self._parsed[0] != content:
            self._parsed = (content, load_ca(self.data, where="MemoryAuthority"))
        return self._parsed[1]

    def entry(self, serial: int) -> RevokedEntry | None:
        """Return the revocation of `serial`, if it is revoked."""
        return next((e for e in self.ca.revoked if e.serial == serial), None)

    def _store(self, ca: CaState) -> None:
        self.data = ca_data(ca, self.data["ca.key"])

    def load(self, now: datetime) -> CaState:
        ca = self.ca
        if not crl_is_fresh(ca, now):
            ca, _added = with_revoked(ca, (), now)
            self._store(ca)
        return ca

    def revoke(self, serials: Sequence[tuple[int, str]], now: datetime) -> list[int]:
        self.revoke_calls.append(list(serials))
        ca = self.ca
        if not {s for s, _ in serials} - ca.revoked_serials and crl_is_fresh(ca, now):
            return []
        changed, added = with_revoked(ca, serials, now)
        self._store(changed)
        return added
