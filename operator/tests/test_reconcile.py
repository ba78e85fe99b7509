"""The reconcile pipeline against a recording cluster and an in-memory CA, at fixed times.

Each test drives `reconcile` the way Kopf does: the PlantLine body as the apiserver returns it,
the previous status written back into it, and `now` moved by hand (no sleeping).
"""

from __future__ import annotations

from base64 import b64decode
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plantline.operator.api import PlantLineStatus
from plantline.operator.issuer import new_ca
from plantline.operator.model import (
    CERTIFICATE_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    PAUSE_ANNOTATION,
    ConnectorSettings,
    Owner,
    secret_name,
)
from plantline.operator.reconcile import (
    FAILURE_RETRY_S,
    SUPERSEDES_ANNOTATION,
    Context,
    Outcome,
    finalize,
    parse,
    reconcile,
    secret_names,
)
from plantline.operator.resources import ApiFailure
from plantline.pki.keys import KeySpec

from .recording import MemoryAuthority, RecordingCluster, demo_body

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday
CLIENT_VALIDITY = timedelta(days=90)  # spec.pki.validityDays.mqtt-client of the demo
RENEW_BEFORE = timedelta(days=30)  # spec.pki.renewBefore of the demo
DUE = NOW + CLIENT_VALIDITY - RENEW_BEFORE + timedelta(days=1)  # 2027-01-18 12:00 UTC, a Monday
SETTINGS = ConnectorSettings(image="registry.example/plantline/connector:0.1.0")
NAMESPACE = "plantline"
PALLETIZER = {
    "id": "palletizer",
    "protocol": "s7",
    "endpoint": "s7://10.0.0.9",
    "tags": [{"signal": "state.run", "address": "DB1.DBX0.0", "datatype": "bool"}],
}


def _run(body: dict[str, Any], cluster: RecordingCluster, authority: MemoryAuthority, now: datetime = NOW) -> Outcome:
    """Reconcile `body` at `now` and write the status back into it, as Kopf's patch would."""
    outcome = reconcile(body, Context(cluster, authority, SETTINGS, now))
    PlantLineStatus.model_validate(outcome.status)  # the status is our API: it must fit its own model
    body["status"] = outcome.status
    return outcome


def _without_window(body: dict[str, Any]) -> dict[str, Any]:
    del body["spec"]["pki"]["maintenanceWindow"]
    return body


def _conditions(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in outcome.status["conditions"]}


def _reason(outcome: Outcome, type_: str) -> tuple[str, str]:
    condition = _conditions(outcome)[type_]
    return condition["status"], condition["reason"]


def _secrets(cluster: RecordingCluster) -> dict[str, dict[str, bytes]]:
    """Return the certificate Secrets' decoded data, by identity."""
    return {
        s["metadata"]["annotations"]["plantline.dev/identity"]: {k: b64decode(v) for k, v in s["data"].items()}
        for s in cluster.stored("Secret").values()
    }


def _certificate(cluster: RecordingCluster, identity: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_secrets(cluster)[identity]["tls.crt"])


def _serials(cluster: RecordingCluster) -> dict[str, int]:
    return {identity: _certificate(cluster, identity).serial_number for identity in _secrets(cluster)}


def _template_annotations(cluster: RecordingCluster, annotation: str) -> dict[str, str]:
    return {
        name: d["spec"]["template"]["metadata"]["annotations"][annotation]
        for name, d in cluster.stored("Deployment").items()
    }


def _generations(cluster: RecordingCluster) -> dict[str, int]:
    return {name: d["metadata"]["generation"] for name, d in cluster.stored("Deployment").items()}


def _events(outcome: Outcome, reason: str) -> list[str]:
    return [e.message for e in outcome.events if e.reason == reason]


def _public_key(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _crl_serials(cluster: RecordingCluster) -> set[int]:
    trust = cluster.stored("ConfigMap")["site1-line1-trust"]
    return {entry.serial_number for entry in x509.load_pem_x509_crl(trust["data"]["crl.pem"].encode())}


def _edit(body: dict[str, Any]) -> dict[str, Any]:
    """Return `body` as it is after a spec edit: the apiserver bumped its generation."""
    body["metadata"]["generation"] += 1
    return body


# -- creating and settling --------------------------------------------------------------------------


def test_first_reconcile_creates_every_child_and_waits_for_the_connectors(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    outcome = _run(body, cluster, authority)
    line, owner = parse(body), Owner.of(body)
    assert {(c.kind, c.name) for c in cluster.applied()} == {
        *(("Secret", name) for name in secret_names(line, owner)),
        ("ConfigMap", "site1-line1-connectors"),
        ("ConfigMap", "site1-line1-trust"),
        ("ServiceAccount", "site1-line1-connector"),
        ("NetworkPolicy", "site1-line1-connectors"),
        ("PersistentVolumeClaim", "site1-line1-line1-data"),
        ("Deployment", "site1-line1-line1"),
        *(("ConfigMap", f"site1-line1-dashboard-{kind}") for kind in ("oee", "edge", "broker", "core")),
        ("ConfigMap", "site1-line1-rules"),
    }
    assert set(secret_names(line, owner)) == {
        "site1-line1-line1-tls",
        "site1-line1-broker-tls",
        "site1-line1-reader-tls",
    }
    assert {c.namespace for c in cluster.calls} == {NAMESPACE}
    assert cluster.deleted() == []
    kinds = [c.kind for c in cluster.calls]
    assert max(i for i, k in enumerate(kinds) if k == "Secret") < kinds.index("Deployment")  # mounts exist first
    assert kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")
    trust_at = next(i for i, c in enumerate(cluster.calls) if (c.kind, c.name) == ("ConfigMap", "site1-line1-trust"))
    assert trust_at < kinds.index("Deployment")  # the connectors mount OPC UA trust files from it
    for identity in _secrets(cluster):
        certificate = _certificate(cluster, identity)
        certificate.verify_directly_issued_by(authority.ca.signer.certificate)
        assert certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == identity
        assert _secrets(cluster)[identity]["ca.crt"] == authority.data["ca.crt"]
    assert len(_events(outcome, "CertificateIssued")) == 3
    trust = cluster.stored("ConfigMap")["site1-line1-trust"]["data"]
    assert trust == {"ca.crt": authority.data["ca.crt"].decode(), "crl.pem": authority.data["crl.pem"].decode()}
    assert outcome.retry_after is not None
    assert outcome.retry_after > 0
    assert (outcome.invalid, outcome.failure) == (None, None)
    assert _reason(outcome, "ConnectorsReady") == ("False", "DeploymentsProgressing")
    assert _reason(outcome, "CertificatesReady") == ("True", "CertificatesValid")
    assert _reason(outcome, "Ready") == ("False", "DeploymentsProgressing")
    assert "site1-line1-line1" in _conditions(outcome)["ConnectorsReady"]["message"]


def test_ready_once_the_deployments_are_available(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body(generation=3)
    _run(body, cluster, authority)
    cluster.make_available()
    outcome = _run(body, cluster, authority, NOW + timedelta(minutes=1))
    assert outcome.retry_after is None
    assert _reason(outcome, "Ready") == ("True", "Reconciled")
    assert _reason(outcome, "ConnectorsReady") == ("True", "DeploymentsAvailable")
    assert outcome.status["observedGeneration"] == 3
    assert outcome.status["machineCount"] == 3
    assert {c["observedGeneration"] for c in outcome.status["conditions"]} == {3}
    assert outcome.status["conditions"][0]["type"] == "Ready"


def test_a_deployment_from_an_older_generation_is_not_available(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    _run(body, cluster, authority)
    cluster.make_available()
    deployment = cluster.objects[("Deployment", NAMESPACE, "site1-line1-line1")]
    deployment["metadata"]["generation"] += 1  # a spec change the controller has not seen yet
    outcome = _run(body, cluster, authority, NOW + timedelta(minutes=1))
    assert _reason(outcome, "ConnectorsReady") == ("False", "DeploymentsProgressing")


def test_second_reconcile_changes_nothing(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body()
    _run(body, cluster, authority)
    cluster.make_available()
    first = {(c.kind, c.name): c.desired for c in cluster.calls}
    serials, generations, crl = _serials(cluster), _generations(cluster), authority.data["crl.pem"]
    calls = len(cluster.calls)
    outcome = _run(body, cluster, authority, NOW + timedelta(hours=1))
    second = {(c.kind, c.name): c.desired for c in cluster.calls[calls:]}
    # The same desired objects (server-side apply changes nothing), and the volume claim, which
    # exists, is not applied again.
    assert second == {key: desired for key, desired in first.items() if key[0] != "PersistentVolumeClaim"}
    assert _serials(cluster) == serials
    assert _generations(cluster) == generations  # no pod rolled
    assert _events(outcome, "CertificateIssued") == []
    assert authority.revoke_calls == []
    assert authority.data["crl.pem"] == crl
    assert _reason(outcome, "Ready") == ("True", "Reconciled")


def test_a_child_deleted_by_hand_comes_back(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body()
    _run(body, cluster, authority)
    serials = _serials(cluster)
    del cluster.objects[("Deployment", NAMESPACE, "site1-line1-line1")]
    del cluster.objects[("NetworkPolicy", NAMESPACE, "site1-line1-connectors")]
    _run(body, cluster, authority, NOW + timedelta(minutes=5))
    assert ("Deployment", NAMESPACE, "site1-line1-line1") in cluster.objects
    assert ("NetworkPolicy", NAMESPACE, "site1-line1-connectors") in cluster.objects
    assert _serials(cluster) == serials


def test_each_group_gets_a_volume_claim_created_once_and_kept(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body(grouping="perMachine")
    _run(body, cluster, authority)
    claims = cluster.stored("PersistentVolumeClaim")
    assert set(claims) == {f"site1-line1-{m}-data" for m in ("capper", "filler", "labeler")}
    assert {c["spec"]["resources"]["requests"]["storage"] for c in claims.values()} == {"384Mi"}
    # The operator's StorageClass setting changes: the bound claims (and the outboxes on them) stay
    # as they are; a claim deleted by hand comes back with the new class.
    del cluster.objects[("PersistentVolumeClaim", NAMESPACE, "site1-line1-filler-data")]
    calls = len(cluster.calls)
    settings = ConnectorSettings(image=SETTINGS.image, storage_class="local-nvme")
    reconcile(body, Context(cluster, authority, settings, NOW + timedelta(minutes=5)))
    touched = [(c.kind, c.name) for c in cluster.calls[calls:] if c.kind == "PersistentVolumeClaim"]
    assert touched == [("PersistentVolumeClaim", "site1-line1-filler-data")]
    stored = cluster.stored("PersistentVolumeClaim")
    assert stored["site1-line1-filler-data"]["spec"]["storageClassName"] == "local-nvme"
    assert "storageClassName" not in stored["site1-line1-capper-data"]["spec"]
    assert cluster.deleted() == []


def test_the_status_records_each_secret_s_serial(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body()
    outcome = _run(body, cluster, authority)
    recorded = {e["secret"]: int(e["serial"], 16) for e in outcome.status["certificates"]}
    assert recorded == {f"{identity}-tls": serial for identity, serial in _serials(cluster).items()}
    assert set(recorded) == {"site1-line1-broker-tls", "site1-line1-line1-tls", "site1-line1-reader-tls"}


def test_a_certificate_secret_deleted_by_hand_is_reissued_and_its_certificate_revoked(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    # Whoever deleted the Secret may have kept its key: the certificate must not stay valid.
    body = demo_body()
    _run(body, cluster, authority)
    before = _serials(cluster)
    del cluster.objects[("Secret", NAMESPACE, "site1-line1-line1-tls")]
    outcome = _run(body, cluster, authority, NOW + timedelta(minutes=5))
    after = _serials(cluster)
    lost = before["site1-line1-line1"]
    assert after["site1-line1-line1"] != lost
    assert {i: s for i, s in after.items() if i != "site1-line1-line1"} == {
        i: s for i, s in before.items() if i != "site1-line1-line1"
    }
    entry = authority.entry(lost)
    assert entry is not None
    assert entry.reason == "superseded"
    assert authority.ca.revoked_serials == {lost}
    assert _crl_serials(cluster) == {lost}
    assert [(e.type, e.message) for e in outcome.events if e.reason == "CertificateRevoked"] == [
        ("Warning", f"site1-line1-line1-tls: serial {lost:x} revoked: its Secret was deleted")
    ]
    assert {e["secret"]: int(e["serial"], 16) for e in outcome.status["certificates"]}[
        "site1-line1-line1-tls"
    ] == after["site1-line1-line1"]
    _run(body, cluster, authority, NOW + timedelta(minutes=10))
    assert authority.ca.revoked_serials == {lost}  # nothing more to revoke


def test_a_failed_certificates_step_keeps_the_recorded_serials(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    first = _run(body, cluster, authority)
    recorded = first.status["certificates"]
    failed = _run(body, FailingCluster("Secret"), authority, NOW + timedelta(minutes=5))
    assert failed.failure is not None
    assert failed.status["certificates"] == recorded


# -- certificates over time -------------------------------------------------------------------------


def test_due_certificates_are_renewed_with_their_key_and_the_old_serials_revoked(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = _without_window(demo_body())
    _run(body, cluster, authority)
    cluster.make_available()
    before = {identity: _certificate(cluster, identity) for identity in _secrets(cluster)}
    hashes = _template_annotations(cluster, CERTIFICATE_HASH_ANNOTATION)
    configs = _template_annotations(cluster, CONFIG_HASH_ANNOTATION)
    _run(body, cluster, authority, DUE - timedelta(days=2))
    assert _serials(cluster) == {i: c.serial_number for i, c in before.items()}, "renewed before it was due"

    outcome = _run(body, cluster, authority, DUE)
    after = {identity: _certificate(cluster, identity) for identity in _secrets(cluster)}
    renewed = {i for i in after if after[i].serial_number != before[i].serial_number}
    assert renewed == {"site1-line1-line1", "site1-line1-reader"}  # mqtt-client: 90 days; the broker's: 365
    for identity in renewed:
        old, new = before[identity], after[identity]
        assert _public_key(new) == _public_key(old)  # RENEW keeps the key
        assert new.not_valid_after_utc == DUE + CLIENT_VALIDITY
        new.verify_directly_issued_by(authority.ca.signer.certificate)
        entry = authority.entry(old.serial_number)
        assert entry is not None
        assert (entry.reason, entry.revoked_at) == ("superseded", DUE)
        secret = cluster.stored("Secret")[secret_name(Owner.of(body), parse(body), identity)]
        assert secret["metadata"]["annotations"][SUPERSEDES_ANNOTATION] == f"{old.serial_number:x}"
        assert authority.entry(new.serial_number) is None
    assert len(_events(outcome, "CertificateIssued")) == 2
    assert all("RENEW" in message for message in _events(outcome, "CertificateIssued"))
    assert _template_annotations(cluster, CERTIFICATE_HASH_ANNOTATION) != hashes  # the pod rolls
    assert _template_annotations(cluster, CONFIG_HASH_ANNOTATION) == configs
    assert _reason(outcome, "ConnectorsReady") == ("False", "DeploymentsProgressing")  # until the rollout ends


def test_renewal_waits_for_the_maintenance_window(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body()  # maintenanceWindow: sat 02:00-06:00 in Europe/Berlin
    _run(body, cluster, authority)
    cluster.make_available()
    serials = _serials(cluster)
    certificates_since = _conditions(_run(body, cluster, authority))["CertificatesReady"]["lastTransitionTime"]

    outcome = _run(body, cluster, authority, DUE)  # a Monday noon: the window is closed
    assert _serials(cluster) == serials
    assert _reason(outcome, "CertificatesReady") == ("True", "RenewalPostponed")
    message = _conditions(outcome)["CertificatesReady"]["message"]
    assert "site1-line1-line1" in message
    assert "site1-line1-reader" in message
    assert "site1-line1-broker" not in message
    assert _conditions(outcome)["CertificatesReady"]["lastTransitionTime"] == certificates_since  # still True
    assert _events(outcome, "CertificateIssued") == []
    assert authority.revoke_calls == []
    assert _reason(outcome, "Ready") == ("True", "Reconciled")

    inside = datetime(2027, 1, 23, 1, 30, tzinfo=UTC)  # Saturday 02:30 in Berlin (CET)
    outcome = _run(body, cluster, authority, inside)
    renewed = {i for i, s in _serials(cluster).items() if s != serials[i]}
    assert renewed == {"site1-line1-line1", "site1-line1-reader"}
    assert _reason(outcome, "CertificatesReady") == ("True", "CertificatesValid")
    for identity in renewed:
        entry = authority.entry(serials[identity])
        assert entry is not None
        assert entry.reason == "superseded"


def test_postponed_renewal_names_the_window_opening_in_utc(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    _run(body, cluster, authority)
    outcome = _run(body, cluster, authority, DUE)
    # The next opening is Saturday 2027-01-23 02:00 in Berlin, which is 01:00 UTC.
    message = _conditions(outcome)["CertificatesReady"]["message"]
    assert "site1-line1-line1 until 2027-01-23T01:00Z" in message, message


def test_a_changed_broker_host_replaces_the_broker_certificate_and_key(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    _run(body, cluster, authority)
    old = _certificate(cluster, "site1-line1-broker")
    body["spec"]["broker"]["host"] = "broker.site1.local"
    outcome = _run(_edit(body), cluster, authority, NOW + timedelta(hours=1))  # the window is closed: no matter
    new = _certificate(cluster, "site1-line1-broker")
    assert new.serial_number != old.serial_number
    assert _public_key(new) != _public_key(old)  # REPLACE_KEY
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["broker.site1.local"]
    entry = authority.entry(old.serial_number)
    assert entry is not None
    assert entry.reason == "superseded"
    assert [m for m in _events(outcome, "CertificateIssued") if m.startswith("site1-line1-broker:")]


def test_a_revoked_certificate_is_replaced_with_a_new_key(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()  # the maintenance window is closed now: a revoked certificate must not wait for it
    _run(body, cluster, authority)
    old = _certificate(cluster, "site1-line1-line1")
    authority.revoke([(old.serial_number, "key-compromise")], NOW + timedelta(hours=1))
    outcome = _run(body, cluster, authority, NOW + timedelta(hours=2))
    new = _certificate(cluster, "site1-line1-line1")
    assert new.serial_number != old.serial_number
    assert _public_key(new) != _public_key(old)  # the compromised key is not reused
    entry = authority.entry(old.serial_number)
    assert entry is not None
    assert entry.reason == "key-compromise"  # not overwritten by "superseded"
    assert [m for m in _events(outcome, "CertificateIssued") if "REPLACE_KEY" in m]


def _ec_ca_pems() -> tuple[bytes, bytes]:
    """Return a second CA (EC: quick to make) named like the operator's, as after a rotation."""
    return new_ca(NOW, key_spec=KeySpec.EC_P256)


def test_a_rotated_ca_reissues_every_certificate_and_publishes_the_new_bundle(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = _without_window(demo_body())
    _run(body, cluster, authority)
    before = {identity: _certificate(cluster, identity) for identity in _secrets(cluster)}
    hashes = _template_annotations(cluster, CERTIFICATE_HASH_ANNOTATION)
    rotated = MemoryAuthority(*_ec_ca_pems())
    _run(body, cluster, rotated, NOW + timedelta(days=1))
    for identity, old in before.items():
        new = _certificate(cluster, identity)
        assert new.serial_number != old.serial_number, identity
        new.verify_directly_issued_by(rotated.ca.signer.certificate)
        assert _public_key(new) == _public_key(old)  # a rotation renews; the keys were never exposed
        assert _secrets(cluster)[identity]["ca.crt"] == rotated.data["ca.crt"]
    assert cluster.stored("ConfigMap")["site1-line1-trust"]["data"]["ca.crt"] == rotated.data["ca.crt"].decode()
    assert _template_annotations(cluster, CERTIFICATE_HASH_ANNOTATION) != hashes


def test_a_certificate_secret_without_its_identity_annotation_is_kept(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    # E.g. restored from a backup that dropped annotations, or written by an older operator.
    body = demo_body()
    _run(body, cluster, authority)
    cluster.make_available()
    key = ("Secret", NAMESPACE, "site1-line1-line1-tls")
    del cluster.objects[key]["metadata"]["annotations"]["plantline.dev/identity"]
    _run(body, cluster, authority, NOW + timedelta(minutes=1))
    assert key in cluster.objects, f"deleted in the same reconcile that applied it: {cluster.deleted()}"
    for deployment in cluster.stored("Deployment").values():
        tls = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
        for source in tls["projected"]["sources"]:
            assert ("Secret", NAMESPACE, source["secret"]["name"]) in cluster.objects


@pytest.mark.parametrize(
    "revoked_json",
    [
        b"{not json",
        b'[{"serial": "1f", "revokedAt": "2026-11-01T00:00:00+00:00", "reason": "lost-in-the-mail"}]',
    ],
    ids=["not-json", "unknown-reason"],
)
def test_a_damaged_ca_secret_is_a_failure_that_names_it(
    cluster: RecordingCluster, authority: MemoryAuthority, revoked_json: bytes
) -> None:
    authority.data["revoked.json"] = revoked_json
    outcome = _run(demo_body(), cluster, authority)
    assert outcome.failure is not None
    assert "revoked.json" in outcome.failure
    assert _reason(outcome, "CertificatesReady") == ("False", "IssuanceFailed")
    assert cluster.calls == []


# -- spec changes ------------------------------------------------------------------------------------


def test_adding_a_machine_adds_its_deployment_and_secret(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body(grouping="perMachine")
    _run(body, cluster, authority)
    cluster.make_available()
    serials, configs = _serials(cluster), _template_annotations(cluster, CONFIG_HASH_ANNOTATION)
    calls = len(cluster.calls)
    body["spec"]["machines"].append(PALLETIZER)
    outcome = _run(_edit(body), cluster, authority, NOW + timedelta(hours=1))
    new_applies = {(c.kind, c.name) for c in cluster.calls[calls:] if c.desired is not None}
    assert ("Deployment", "site1-line1-palletizer") in new_applies
    assert ("Secret", "site1-line1-palletizer-tls") in new_applies
    assert set(cluster.stored("Deployment")) == {
        f"site1-line1-{m}" for m in ("capper", "filler", "labeler", "palletizer")
    }
    assert _serials(cluster).items() >= serials.items()
    assert set(_serials(cluster)) - set(serials) == {"site1-line1-palletizer"}
    assert {k: v for k, v in _template_annotations(cluster, CONFIG_HASH_ANNOTATION).items() if k in configs} == configs
    assert "palletizer.yaml" in cluster.stored("ConfigMap")["site1-line1-connectors"]["data"]
    assert cluster.deleted() == []
    assert outcome.status["machineCount"] == 4
    assert outcome.status["observedGeneration"] == 2
    assert _reason(outcome, "ConnectorsReady") == ("False", "DeploymentsProgressing")
    assert _conditions(outcome)["ConnectorsReady"]["message"].endswith("waiting for site1-line1-palletizer")


def test_removing_a_machine_deletes_its_deployment_and_secret_and_revokes_it(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body(grouping="perMachine")
    _run(body, cluster, authority)
    cluster.make_available()
    serials = _serials(cluster)
    body["spec"]["machines"] = [m for m in body["spec"]["machines"] if m["id"] != "labeler"]
    outcome = _run(_edit(body), cluster, authority, NOW + timedelta(hours=1))
    assert set(cluster.deleted()) == {
        ("Secret", "site1-line1-labeler-tls"),
        ("Deployment", "site1-line1-labeler"),
        ("PersistentVolumeClaim", "site1-line1-labeler-data"),
    }
    assert ("Deployment", NAMESPACE, "site1-line1-labeler") not in cluster.objects
    assert "site1-line1-labeler" not in _serials(cluster)
    entry = authority.entry(serials["site1-line1-labeler"])
    assert entry is not None
    assert entry.reason == "cessation-of-operation"
    assert authority.ca.revoked_serials == {serials["site1-line1-labeler"]}
    assert "labeler.yaml" not in cluster.stored("ConfigMap")["site1-line1-connectors"]["data"]
    assert len(_events(outcome, "CertificateRevoked")) == 1
    assert _events(outcome, "Removed") == [
        "Deployment site1-line1-labeler is no longer part of the line",
        "PersistentVolumeClaim site1-line1-labeler-data is no longer part of the line",
    ]
    assert _reason(outcome, "Ready") == ("True", "Reconciled")
    assert outcome.status["machineCount"] == 2


def test_a_primary_host_gets_a_certificate_secret_no_connector_mounts_and_loses_it_when_unset(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    body["spec"]["primaryHostId"] = "scada"
    _run(body, cluster, authority)
    secret = cluster.stored("Secret")["site1-line1-host-tls"]
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"] == {
        "plantline.dev/identity": "site1-line1-host",
        "plantline.dev/profile": "mqtt-client",
    }
    host = _certificate(cluster, "site1-line1-host")
    host.verify_directly_issued_by(authority.ca.signer.certificate)
    assert host.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "site1-line1-host"
    assert "site1-line1-host-tls" in {c["secret"] for c in body["status"]["certificates"]}
    mounted = {
        source["secret"]["name"]
        for deployment in cluster.stored("Deployment").values()
        for volume in deployment["spec"]["template"]["spec"]["volumes"]
        for source in volume.get("projected", {}).get("sources", [])
    }
    assert mounted == {"site1-line1-line1-tls"}  # the host's key is for the host application only
    cluster.make_available()
    serial = host.serial_number
    del body["spec"]["primaryHostId"]
    _run(_edit(body), cluster, authority, NOW + timedelta(hours=1))
    assert cluster.deleted() == [("Secret", "site1-line1-host-tls")]
    entry = authority.entry(serial)
    assert entry is not None
    assert entry.reason == "cessation-of-operation"
    assert serial in _crl_serials(cluster)


def test_changing_one_tag_address_rolls_only_that_group(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body(grouping="perMachine")
    _run(body, cluster, authority)
    cluster.make_available()
    configs = _template_annotations(cluster, CONFIG_HASH_ANNOTATION)
    certificates = _template_annotations(cluster, CERTIFICATE_HASH_ANNOTATION)
    generations = _generations(cluster)
    body["spec"]["machines"][1]["tags"][0]["address"] = "DB11.DBX0.0"  # a capper tag
    outcome = _run(_edit(body), cluster, authority, NOW + timedelta(hours=1))
    now_configs = _template_annotations(cluster, CONFIG_HASH_ANNOTATION)
    assert {name for name in configs if configs[name] != now_configs[name]} == {"site1-line1-capper"}
    assert _template_annotations(cluster, CERTIFICATE_HASH_ANNOTATION) == certificates
    assert {n for n, g in _generations(cluster).items() if g != generations[n]} == {"site1-line1-capper"}
    assert _conditions(outcome)["ConnectorsReady"]["message"].endswith("waiting for site1-line1-capper")


# -- pause, invalid specs and failures ------------------------------------------------------------------


def test_pause_annotation_stops_every_write(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body(grouping="perMachine")
    first = _run(body, cluster, authority)
    calls, ca_data = len(cluster.calls), dict(authority.data)
    body["metadata"]["annotations"][PAUSE_ANNOTATION] = "true"
    body["spec"]["machines"] = body["spec"]["machines"][:1]  # would delete two Deployments if not paused
    outcome = _run(_edit(body), cluster, authority, DUE)
    assert len(cluster.calls) == calls
    assert authority.data == ca_data
    assert authority.revoke_calls == []
    assert outcome.events == []
    assert _reason(outcome, "Ready") == ("False", "ReconciliationPaused")
    assert (outcome.invalid, outcome.failure, outcome.retry_after) == (None, None, None)
    carried = ("status", "reason", "message", "lastTransitionTime")
    for type_ in ("CertificatesReady", "ConnectorsReady"):
        assert {k: _conditions(outcome)[type_][k] for k in carried} == {
            k: _conditions(first)[type_][k] for k in carried
        }
    assert outcome.status["machineCount"] == 3  # carried forward: nothing was reconciled


def test_pause_before_the_first_reconcile_creates_nothing(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    body["metadata"]["annotations"][PAUSE_ANNOTATION] = "true"
    outcome = _run(body, cluster, authority)
    assert cluster.calls == []
    assert _reason(outcome, "Ready") == ("False", "ReconciliationPaused")


@pytest.mark.parametrize(
    ("keys", "value"),
    [
        (("pki", "maintenanceWindow"), "someday 02:00-06:00"),
        (("pki", "validityDays"), {"mqtt-clinet": 90}),
        (("kpi", "shiftCalendar", "timezone"), "Mars/Olympus"),
    ],
    ids=["maintenance-window", "unknown-profile", "time-zone"],
)
def test_invalid_spec_names_the_field_and_touches_nothing(
    cluster: RecordingCluster, authority: MemoryAuthority, keys: tuple[str, ...], value: Any
) -> None:
    body = demo_body()
    parent = body["spec"]
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = value
    path = ".".join(["spec", *keys, *(value if isinstance(value, dict) else {})])
    ca_data = dict(authority.data)
    outcome = _run(body, cluster, authority)
    assert outcome.invalid is not None
    assert f"{path}: " in outcome.invalid
    assert outcome.retry_after is None
    assert cluster.calls == []
    assert authority.data == ca_data
    assert _reason(outcome, "Ready") == ("False", "InvalidSpec")
    assert path in _conditions(outcome)["Ready"]["message"]
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "InvalidSpec")]


class FailingCluster(RecordingCluster):
    """A recording cluster whose apiserver refuses every write of one kind."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    def apply(self, kind: str, namespace: str, name: str, desired: Mapping[str, Any] | None) -> None:
        if kind == self.refused:
            path = f"/api/v1/namespaces/{namespace}/{kind.lower()}s/{name}"
            raise ApiFailure(403, "PATCH", path, f'{kind.lower()}s "{name}" is forbidden')
        super().apply(kind, namespace, name, desired)


@pytest.mark.parametrize(
    ("refused", "step", "condition"),
    [
        ("Secret", "certificates", ("CertificatesReady", "False", "IssuanceFailed")),
        ("ConfigMap", "config", ("ConnectorsReady", "False", "ApplyFailed")),
        ("Deployment", "connectors", ("ConnectorsReady", "False", "ApplyFailed")),
    ],
)
def test_an_apiserver_failure_is_a_failure_with_a_false_condition(
    authority: MemoryAuthority, refused: str, step: str, condition: tuple[str, str, str]
) -> None:
    cluster = FailingCluster(refused)
    body = demo_body()
    outcome = _run(body, cluster, authority)
    assert outcome.failure is not None
    assert outcome.failure.startswith(f"step {step}: PATCH ")
    assert "HTTP 403" in outcome.failure
    assert outcome.retry_after == FAILURE_RETRY_S
    assert outcome.invalid is None
    type_, status, reason = condition
    assert _reason(outcome, type_) == (status, reason)
    assert _reason(outcome, "Ready") == ("False", reason)
    assert [e.reason for e in outcome.events if e.type == "Warning"] == ["ReconcileFailed"]
    assert cluster.deleted() == []  # nothing is pruned after a failed step
    assert outcome.status["machineCount"] == 3


def test_the_published_crl_lists_what_this_reconcile_revoked(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    # The broker reads its CRL from the trust ConfigMap: a reconcile that revokes a serial and
    # reports Ready must publish a CRL listing it, not the one it loaded before revoking.
    body = _without_window(demo_body(grouping="perMachine"))
    _run(body, cluster, authority)
    first = _serials(cluster)
    body["spec"]["machines"] = [m for m in body["spec"]["machines"] if m["id"] != "labeler"]
    _run(_edit(body), cluster, authority, NOW + timedelta(hours=1))
    removed = {first["site1-line1-labeler"]}
    assert authority.ca.revoked_serials == removed
    assert _crl_serials(cluster) == removed, "the trust ConfigMap still has the CRL from before the removal"
    _run(body, cluster, authority, DUE)  # renews capper, filler and reader (mqtt-client, 90 days)
    renewed = {first[i] for i, serial in _serials(cluster).items() if serial != first[i]}
    assert len(renewed) == 3
    assert _crl_serials(cluster) == removed | renewed, "the trust ConfigMap misses the superseded serials"


# -- status --------------------------------------------------------------------------------------------


def test_status_keeps_last_transition_time_while_a_condition_holds(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    t0, t1, t2 = NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    _run(body, cluster, authority, t0)
    held = _run(body, cluster, authority, t1)
    assert {t: c["lastTransitionTime"] for t, c in _conditions(held).items()} == {
        "Ready": "2026-11-18T12:00:00Z",
        "CertificatesReady": "2026-11-18T12:00:00Z",
        "ConnectorsReady": "2026-11-18T12:00:00Z",
        "DashboardsReady": "2026-11-18T12:00:00Z",
    }
    cluster.make_available()
    ready = _run(body, cluster, authority, t2)
    assert {t: (c["status"], c["lastTransitionTime"]) for t, c in _conditions(ready).items()} == {
        "Ready": ("True", "2026-11-18T14:00:00Z"),
        "CertificatesReady": ("True", "2026-11-18T12:00:00Z"),
        "ConnectorsReady": ("True", "2026-11-18T14:00:00Z"),
        "DashboardsReady": ("True", "2026-11-18T12:00:00Z"),
    }


def test_status_carries_conditions_it_did_not_compute(cluster: RecordingCluster, authority: MemoryAuthority) -> None:
    body = demo_body()
    body["metadata"]["annotations"][PAUSE_ANNOTATION] = "true"  # a paused reconcile computes none below Ready
    body["status"] = {
        "machineCount": 3,
        "conditions": [
            {
                "type": "BrokerReady",
                "status": "True",
                "reason": "BrokerRunning",
                "message": "set by an earlier version",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
            }
        ],
    }
    outcome = reconcile(body, Context(cluster, authority, SETTINGS, NOW))
    broker = _conditions(outcome)["BrokerReady"]
    assert (broker["status"], broker["reason"], broker["lastTransitionTime"]) == (
        "True",
        "BrokerRunning",
        "2026-11-01T00:00:00Z",
    )


# -- deletion -------------------------------------------------------------------------------------------


def test_finalize_revokes_every_current_and_superseded_serial(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = _without_window(demo_body())
    _run(body, cluster, authority)
    first = _serials(cluster)
    _run(body, cluster, authority, DUE)  # renews the two client certificates
    current = _serials(cluster)
    superseded = {first[i] for i in current if current[i] != first[i]}
    assert len(superseded) == 2
    calls = len(cluster.calls)
    events = finalize(body, Context(cluster, authority, SETTINGS, DUE + timedelta(days=1)))
    assert authority.ca.revoked_serials == set(current.values()) | superseded
    for serial in current.values():
        entry = authority.entry(serial)
        assert entry is not None
        assert entry.reason == "cessation-of-operation"
    for serial in superseded:
        entry = authority.entry(serial)
        assert entry is not None
        assert entry.reason == "superseded"  # revoked at renewal; not listed twice
    crl = x509.load_pem_x509_crl(authority.data["crl.pem"])
    assert sorted(e.serial_number for e in crl) == sorted(set(current.values()) | superseded)
    assert len(cluster.calls) == calls  # the children go by garbage collection
    assert [(e.reason, e.message.split(" (")[0]) for e in events] == [
        ("CertificatesRevoked", "5 certificates of the line revoked")
    ]
    assert "(3 newly)" in events[0].message


def test_finalize_revokes_a_recorded_serial_whose_secret_is_already_gone(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    body = demo_body()
    _run(body, cluster, authority)
    serials = _serials(cluster)
    del cluster.objects[("Secret", NAMESPACE, "site1-line1-broker-tls")]
    finalize(body, Context(cluster, authority, SETTINGS, NOW + timedelta(days=1)))
    assert authority.ca.revoked_serials == set(serials.values())


def test_finalize_of_a_line_without_certificates_revokes_nothing(
    cluster: RecordingCluster, authority: MemoryAuthority
) -> None:
    assert finalize(demo_body(), Context(cluster, authority, SETTINGS, NOW)) == []
    assert authority.revoke_calls == []
