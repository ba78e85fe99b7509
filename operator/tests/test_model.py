"""The pure model: a PlantLine in, its Kubernetes children out, checked as plain dicts."""

from __future__ import annotations

from base64 import b64decode
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from plantline.connectors.addressing.endpoints import PlcProtocol
from plantline.connectors.config import ConnectorConfig, load_config, parse_config
from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.model import (
    CERTIFICATE_HASH_ANNOTATION,
    CONFIG_FILE,
    CONFIG_HASH_ANNOTATION,
    CONNECTOR_LABEL,
    DATA_DIR,
    METRICS_PORT,
    TLS_DIR,
    CertificateMaterial,
    ConnectorSettings,
    Endpoint,
    Owner,
    certificate_secret,
    claim_name,
    claim_size,
    config_map,
    connector_claims,
    connector_configs,
    connector_deployments,
    endpoint_of,
    network_policy,
    secret_name,
    service_account,
    service_account_name,
    trust_config_map,
)
from plantline.operator.render import render_certificate_requests, render_connector_configs

from .certificates import self_signed_pem
from .recording import UID, demo_body

SETTINGS = ConnectorSettings(
    image="registry.example/plantline/connector:0.1.0", cpu_request="75m", memory_request="96Mi", memory_limit="300Mi"
)
DESIGN_LABELS = {
    "app.kubernetes.io/name": "plantline",
    "app.kubernetes.io/instance": "site1-line1",
    "app.kubernetes.io/part-of": "plantline",
    "app.kubernetes.io/managed-by": "plantline-operator",
    "plantline.dev/line": "site1-line1",
}
SECURED_UA = {"securityPolicy": "Basic256Sha256", "securityMode": "SignAndEncrypt"}


PLC_PEM = self_signed_pem()

Certificates = dict[str, CertificateMaterial]


def _body(grouping: str | None = None, *, secured_filler: bool = False) -> dict[str, Any]:
    body = demo_body(grouping=grouping)
    if secured_filler:
        body["spec"]["machines"][0]["opcua"] = {**SECURED_UA, "serverTrust": {"certificates": [PLC_PEM]}}
    return body


def _materials(line: PlantLine, **changed: bytes) -> Certificates:
    """Return stand-in PEMs for every certificate of the line (the model only hashes and encodes them)."""
    return {
        r.identity: CertificateMaterial(changed.get(r.identity, f"cert of {r.identity}".encode()), b"key", b"ca")
        for r in render_certificate_requests(line)
    }


def _deployments(
    body: dict[str, Any], *, certificates: Certificates | None = None, configs: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Return the line's Deployments by connector group."""
    line, owner = parse_plantline(body), Owner.of(body)
    found = connector_deployments(
        owner,
        line,
        SETTINGS,
        configs if configs is not None else connector_configs(line),
        certificates if certificates is not None else _materials(line),
    )
    return {d["metadata"]["labels"][CONNECTOR_LABEL]: d for d in found}


def _children(body: dict[str, Any]) -> list[dict[str, Any]]:
    line, owner = parse_plantline(body), Owner.of(body)
    certificates = _materials(line)
    configs = connector_configs(line)
    return [
        *(certificate_secret(owner, line, r, certificates[r.identity]) for r in render_certificate_requests(line)),
        service_account(owner),
        config_map(owner, configs),
        trust_config_map(owner, line, b"ca bundle", b"crl"),
        network_policy(owner, line),
        *connector_claims(owner, line, SETTINGS),
        *connector_deployments(owner, line, SETTINGS, configs, certificates),
    ]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(deployment)["containers"]
    assert isinstance(container, dict)
    return container


def _loaded_configs(body: dict[str, Any]) -> dict[str, ConnectorConfig]:
    """Return each group's config as the connector loads it from the ConfigMap."""
    data = config_map(Owner.of(body), connector_configs(parse_plantline(body)))["data"]
    return {key.removesuffix(".yaml"): parse_config(yaml.safe_load(text), source=key) for key, text in data.items()}


# -- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouping", ["perLine", "perMachine"])
def test_every_child_carries_the_design_labels_and_a_controller_reference(grouping: str) -> None:
    body = _body(grouping, secured_filler=True)
    children = _children(body)
    assert {c["kind"] for c in children} == {
        "Secret",
        "ServiceAccount",
        "ConfigMap",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Deployment",
    }
    for child in children:
        meta = child["metadata"]
        where = f"{child['kind']} {meta['name']}"
        assert meta["namespace"] == "plantline", where
        assert meta["labels"].items() >= DESIGN_LABELS.items(), where
        assert meta["labels"]["app.kubernetes.io/component"], where
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "plantline.dev/v1alpha1",
                "kind": "PlantLine",
                "name": "site1-line1",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], where
    names = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert len(names) == len(set(names)), "two children share a kind and name"


def test_pods_carry_the_design_labels_and_only_their_own_selector_picks_them() -> None:
    deployments = _deployments(_body("perMachine"))
    for group, deployment in deployments.items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pod_labels.items() >= DESIGN_LABELS.items()
        assert pod_labels[CONNECTOR_LABEL] == group
        assert pod_labels["app.kubernetes.io/component"] == "connector"
        # The apiserver rejects a Deployment whose selector misses its own pods; one that picks
        # another group's pods would count them as its own.
        for other, candidate in deployments.items():
            picks = deployment["spec"]["selector"]["matchLabels"].items() <= (
                candidate["spec"]["template"]["metadata"]["labels"].items()
            )
            assert picks == (group == other), f"{group}'s selector and {other}'s pods"


# -- the connector Deployment ----------------------------------------------------------------------


def test_one_replica_with_recreate_so_an_edge_node_never_runs_twice() -> None:
    for deployment in _deployments(_body("perMachine")).values():
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    (deployment,) = _deployments(_body()).values()
    pod = _pod(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert "hostNetwork" not in pod
    security = _container(deployment)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not security.get("privileged", False)


def test_probes_ask_healthz_and_readyz_on_the_metrics_port_the_config_serves() -> None:
    body = _body("perMachine")
    configs = _loaded_configs(body)
    for group, deployment in _deployments(body).items():
        container = _container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": METRICS_PORT}
        assert configs[group].metrics_port == METRICS_PORT
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports[get["port"]] == configs[group].metrics_port


def test_resources_come_from_the_operator_settings() -> None:
    (deployment,) = _deployments(_body()).values()
    container = _container(deployment)
    assert container["image"] == SETTINGS.image
    assert container["resources"] == {
        "requests": {"cpu": "75m", "memory": "96Mi"},
        "limits": {"memory": "300Mi"},
    }


def test_the_config_is_mounted_where_the_command_reads_it() -> None:
    body = _body("perMachine")
    data = config_map(Owner.of(body), connector_configs(parse_plantline(body)))["data"]
    for group, deployment in _deployments(body).items():
        container = _container(deployment)
        assert container["args"][container["args"].index("--config") + 1] == str(CONFIG_FILE)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(CONFIG_FILE))
        volume = next(v for v in _pod(deployment)["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == "site1-line1-connectors"
        assert volume["configMap"]["items"] == [{"key": f"{group}.yaml", "path": mount["subPath"]}]
        assert f"{group}.yaml" in data


def test_every_directory_the_connector_writes_is_a_writable_volume() -> None:
    # readOnlyRootFilesystem: the outbox and the bdSeq state must live on mounted volumes.
    body = _body("perMachine")
    configs = _loaded_configs(body)
    for group, deployment in _deployments(body).items():
        mounts = {
            PurePosixPath(m["mountPath"]): m for m in _container(deployment)["volumeMounts"] if not m.get("readOnly")
        }
        volumes = {v["name"]: v for v in _pod(deployment)["volumes"]}
        for directory in (configs[group].outbox.directory, configs[group].state_directory, Path("/tmp")):
            path = PurePosixPath(directory)
            mount = next((m for p, m in mounts.items() if path == p or p in path.parents), None)
            assert mount is not None, f"{group}: {path} is on the read-only root filesystem"
            assert "emptyDir" in volumes[mount["name"]] or "persistentVolumeClaim" in volumes[mount["name"]]
        assert configs[group].outbox.directory.is_relative_to(DATA_DIR)


def test_the_outbox_and_the_session_state_live_on_the_group_s_own_claim() -> None:
    # A rescheduled pod finds the outbox and bdSeq where its predecessor left them.
    body = _body("perMachine")
    configs = _loaded_configs(body)
    owner = Owner.of(body)
    for group, deployment in _deployments(body).items():
        (mount,) = (m for m in _container(deployment)["volumeMounts"] if m["mountPath"] == str(DATA_DIR))
        volume = next(v for v in _pod(deployment)["volumes"] if v["name"] == mount["name"])
        assert volume == {"name": mount["name"], "persistentVolumeClaim": {"claimName": claim_name(owner, group)}}
        for directory in (configs[group].outbox.directory, configs[group].state_directory):
            assert directory.is_relative_to(DATA_DIR)
    assert _pod(deployment)["securityContext"]["fsGroup"] == 65532  # the volume is the connector's to write


@pytest.mark.parametrize("grouping", ["perLine", "perMachine"])
def test_one_claim_per_group_sized_from_its_outbox_bound(grouping: str) -> None:
    body = _body(grouping)
    line, owner = parse_plantline(body), Owner.of(body)
    claims = {c["metadata"]["labels"][CONNECTOR_LABEL]: c for c in connector_claims(owner, line, SETTINGS)}
    assert set(claims) == set(_deployments(body))
    bound = next(iter(_loaded_configs(body).values())).outbox.max_bytes
    for group, claim in claims.items():
        assert claim["metadata"]["name"] == f"site1-line1-{group}-data"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one pod at a time: Recreate
        assert claim["spec"]["resources"]["requests"]["storage"] == claim_size(bound)
        assert "storageClassName" not in claim["spec"]  # the cluster's default class


def test_the_claim_size_holds_the_outbox_bound_with_headroom() -> None:
    assert claim_size(256 << 20) == "384Mi"  # 256 MiB, a quarter more, 64 MiB
    assert claim_size(1 << 20) == "66Mi"  # rounded up to whole MiB
    assert claim_size((1 << 30) + 1) == "1345Mi"


def test_the_storage_class_comes_from_the_operator_settings() -> None:
    body = _body()
    line, owner = parse_plantline(body), Owner.of(body)
    settings = ConnectorSettings(image="x", storage_class="local-nvme")
    (claim,) = connector_claims(owner, line, settings)
    assert claim["spec"]["storageClassName"] == "local-nvme"


def _tls_items(deployment: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Return the TLS volume's files: file name -> (Secret or ConfigMap name, its key)."""
    volume = next(v for v in _pod(deployment)["volumes"] if v["name"] == "tls")
    items: dict[str, tuple[str, str]] = {}
    for source in volume["projected"]["sources"]:
        (origin,) = source.values()
        for item in origin["items"]:
            assert item["path"] not in items, f"two sources write {item['path']}"
            items[item["path"]] = (origin["name"], item["key"])
    return items


@pytest.mark.parametrize(
    ("grouping", "secured_filler"), [("perLine", False), ("perMachine", False), ("perMachine", True)]
)
def test_tls_volume_provides_every_file_the_connector_config_names(grouping: str, secured_filler: bool) -> None:
    body = _body(grouping, secured_filler=secured_filler)
    line, owner = parse_plantline(body), Owner.of(body)
    children = _children(body)
    secrets = {s["metadata"]["name"]: s for s in children if s["kind"] == "Secret" and s["type"] == "kubernetes.io/tls"}
    trust = next(c for c in children if c["metadata"]["name"] == "site1-line1-trust")
    secrets[trust["metadata"]["name"]] = trust  # a source of files like the Secrets
    configs = _loaded_configs(body)
    opcua_files = 0
    for group, deployment in _deployments(body).items():
        mount = next(m for m in _container(deployment)["volumeMounts"] if m["name"] == "tls")
        assert PurePosixPath(mount["mountPath"]) == PurePosixPath(TLS_DIR)
        assert mount["readOnly"] is True
        items = _tls_items(deployment)
        (broker,) = configs[group].brokers
        assert broker.tls is not None
        own = secret_name(owner, line, f"site1-line1-{group}")
        wanted: list[tuple[Path, str, str]] = [
            (broker.tls.ca_file, own, "ca.crt"),
            (broker.tls.cert_file, own, "tls.crt"),
            (broker.tls.key_file, own, "tls.key"),
        ]
        for device in configs[group].devices:
            ua = secret_name(owner, line, f"site1-line1-{device.id}-ua")
            if device.opcua.certificate_file is not None:
                wanted.append((device.opcua.certificate_file, ua, "tls.crt"))
            if device.opcua.private_key_file is not None:
                wanted.append((device.opcua.private_key_file, ua, "tls.key"))
            # The operator's CA issues the OPC UA certificates too: servers are checked against it.
            if device.opcua.trusted_ca_file is not None and device.opcua.crl_file is not None:
                wanted.append((device.opcua.trusted_ca_file, "site1-line1-trust", "ca.crt"))
                wanted.append((device.opcua.crl_file, "site1-line1-trust", "crl.pem"))
            if device.opcua.server_certificate_file is not None:
                name = device.opcua.server_certificate_file.name
                wanted.append((device.opcua.server_certificate_file, "site1-line1-trust", name))
        for path, secret, key in wanted:
            assert PurePosixPath(path).parent == PurePosixPath(TLS_DIR), path
            assert items.get(path.name) == (secret, key), f"{group}: {path} is not {secret}/{key}"
            assert key in secrets[secret]["data"]
        opcua_files += len(wanted) - 3
    assert opcua_files == (5 if secured_filler else 0)


def test_secret_holds_the_certificate_key_and_ca_of_its_identity() -> None:
    body = _body()
    line, owner = parse_plantline(body), Owner.of(body)
    request = render_certificate_requests(line)[0]
    secret = certificate_secret(
        owner, line, request, CertificateMaterial(b"-----CERT-----\n", b"-----KEY-----\n", b"-----CA-----\n")
    )
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "site1-line1-line1-tls"
    assert secret["metadata"]["annotations"] == {
        "plantline.dev/identity": "site1-line1-line1",
        "plantline.dev/profile": "mqtt-client",
    }
    assert {k: b64decode(v) for k, v in secret["data"].items()} == {
        "tls.crt": b"-----CERT-----\n",
        "tls.key": b"-----KEY-----\n",
        "ca.crt": b"-----CA-----\n",
    }


def test_connectors_run_as_their_own_service_account_without_a_token() -> None:
    body = _body("perMachine")
    account = service_account(Owner.of(body))
    assert account["automountServiceAccountToken"] is False
    for deployment in _deployments(body).values():
        assert (
            _pod(deployment)["serviceAccountName"]
            == account["metadata"]["name"]
            == service_account_name(Owner.of(body))
        )


def test_trust_config_map_publishes_the_ca_bundle_the_crl_and_the_trusted_server_certificates() -> None:
    body = _body()
    trust = trust_config_map(Owner.of(body), parse_plantline(body), b"CA PEM\n", b"CRL PEM\n")
    assert trust["metadata"]["name"] == "site1-line1-trust"
    assert trust["data"] == {"ca.crt": "CA PEM\n", "crl.pem": "CRL PEM\n"}
    secured = _body(secured_filler=True)
    trust = trust_config_map(Owner.of(secured), parse_plantline(secured), b"CA PEM\n", b"CRL PEM\n")
    assert trust["data"]["site1-line1-filler-ua-servers.pem"] == PLC_PEM.strip() + "\n"


# -- hashes in the pod template ---------------------------------------------------------------------


def _hashes(deployments: dict[str, dict[str, Any]], annotation: str) -> dict[str, str]:
    return {g: d["spec"]["template"]["metadata"]["annotations"][annotation] for g, d in deployments.items()}


def test_hashes_are_stable_for_the_same_input() -> None:
    body = _body("perMachine")
    first, second = _deployments(body), _deployments(body)
    assert first == second
    assert len(set(_hashes(first, CONFIG_HASH_ANNOTATION).values())) == 3


def test_config_hash_changes_only_for_the_group_whose_config_changed() -> None:
    before = _deployments(_body("perMachine"))
    body = _body("perMachine")
    body["spec"]["machines"][1]["tags"][0]["address"] = "DB11.DBX0.0"  # a capper tag
    after = _deployments(body)
    old, new = _hashes(before, CONFIG_HASH_ANNOTATION), _hashes(after, CONFIG_HASH_ANNOTATION)
    assert {g for g in old if old[g] != new[g]} == {"capper"}
    assert _hashes(before, CERTIFICATE_HASH_ANNOTATION) == _hashes(after, CERTIFICATE_HASH_ANNOTATION)


@pytest.mark.parametrize(
    ("identity", "rolled"),
    [
        ("site1-line1-filler", {"filler"}),
        ("site1-line1-filler-ua", {"filler"}),  # the OPC UA application certificate is mounted too
        ("site1-line1-broker", set()),  # connectors do not mount the broker's certificate
        ("site1-line1-reader", set()),
    ],
)
def test_certificate_hash_changes_only_for_the_group_whose_certificates_changed(
    identity: str, rolled: set[str]
) -> None:
    body = _body("perMachine", secured_filler=True)
    line = parse_plantline(body)
    before = _deployments(body, certificates=_materials(line))
    after = _deployments(body, certificates=_materials(line, **{identity: b"renewed"}))
    old, new = _hashes(before, CERTIFICATE_HASH_ANNOTATION), _hashes(after, CERTIFICATE_HASH_ANNOTATION)
    assert {g for g in old if old[g] != new[g]} == rolled
    assert _hashes(before, CONFIG_HASH_ANNOTATION) == _hashes(after, CONFIG_HASH_ANNOTATION)


# -- NetworkPolicy ----------------------------------------------------------------------------------

DNS_RULE = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def _sorted_rules(rules: list[dict[str, Any]]) -> list[str]:
    return sorted(yaml.safe_dump(r, sort_keys=True) for r in rules)


def _network_body(broker_host: str) -> dict[str, Any]:
    body = _body("perMachine")
    machines = body["spec"]["machines"]
    machines[0]["endpoint"] = "opc.tcp://10.0.0.5:4841/plantline/sim"
    machines[1]["endpoint"] = "s7://10.0.0.6?rack=0&slot=1"  # no port: ISO-on-TCP's 102
    machines[2]["endpoint"] = "cip://labeler.plant.local"  # a DNS name, EtherNet/IP's 44818
    body["spec"]["broker"] = {"kind": "mosquitto", "host": broker_host, "port": 8884}
    return body


@pytest.mark.parametrize(
    ("broker_host", "broker_rule"),
    [
        ("10.0.1.1", {"to": [{"ipBlock": {"cidr": "10.0.1.1/32"}}], "ports": [{"protocol": "TCP", "port": 8884}]}),
        ("broker.site1.local", {"ports": [{"protocol": "TCP", "port": 8884}]}),
    ],
)
def test_network_policy_allows_egress_only_to_the_plcs_the_broker_and_dns(
    broker_host: str, broker_rule: dict[str, Any]
) -> None:
    body = _network_body(broker_host)
    policy = network_policy(Owner.of(body), parse_plantline(body))
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert _sorted_rules(policy["spec"]["egress"]) == _sorted_rules(
        [
            {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 4841}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.6/32"}}], "ports": [{"protocol": "TCP", "port": 102}]},
            {"ports": [{"protocol": "TCP", "port": 44818}]},
            broker_rule,
            DNS_RULE,
        ]
    )


def test_network_policy_admits_only_the_metrics_port() -> None:
    body = _body("perMachine")
    policy = network_policy(Owner.of(body), parse_plantline(body))
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": METRICS_PORT}]}]


def test_network_policy_selects_every_connector_pod_and_nothing_else() -> None:
    body = _body("perMachine")
    chosen = network_policy(Owner.of(body), parse_plantline(body))["spec"]["podSelector"]["matchLabels"]
    for deployment in _deployments(body).values():
        assert chosen.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert chosen["app.kubernetes.io/component"] == "connector"


def test_network_policy_dedupes_a_shared_endpoint_and_uses_128_bits_for_ipv6() -> None:
    body = _body("perMachine")
    body["spec"]["machines"][0]["endpoint"] = "opc.tcp://[fd00::5]:4840/sim"
    body["spec"]["machines"][1]["endpoint"] = "s7://10.0.0.6:102"
    body["spec"]["machines"][2]["endpoint"] = "cip://10.0.0.6:102"  # odd, but the same host and port
    body["spec"]["broker"] = {"host": "fd00::1"}
    egress = network_policy(Owner.of(body), parse_plantline(body))["spec"]["egress"]
    assert _sorted_rules(egress) == _sorted_rules(
        [
            {"to": [{"ipBlock": {"cidr": "fd00::5/128"}}], "ports": [{"protocol": "TCP", "port": 4840}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.6/32"}}], "ports": [{"protocol": "TCP", "port": 102}]},
            {"to": [{"ipBlock": {"cidr": "fd00::1/128"}}], "ports": [{"protocol": "TCP", "port": 8883}]},
            DNS_RULE,
        ]
    )


@pytest.mark.parametrize(
    ("protocol", "endpoint", "expected"),
    [
        ("opcua", "opc.tcp://plc1.local/ua", Endpoint("plc1.local", 4840)),
        ("s7", "s7://10.0.0.6?rack=0&slot=2", Endpoint("10.0.0.6", 102)),
        ("cip", "cip://10.0.0.7:2222", Endpoint("10.0.0.7", 2222)),
    ],
)
def test_endpoint_of_uses_the_protocol_default_port(protocol: PlcProtocol, endpoint: str, expected: Endpoint) -> None:
    assert endpoint_of(protocol, endpoint) == expected


# -- grouping and the connector config ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("grouping", "deployments"),
    [
        ("perLine", {"site1-line1-line1"}),
        ("perMachine", {"site1-line1-capper", "site1-line1-filler", "site1-line1-labeler"}),
        ("perProtocol", {"site1-line1-cip", "site1-line1-opcua", "site1-line1-s7"}),
    ],
)
def test_one_deployment_per_connector_group(grouping: str, deployments: set[str]) -> None:
    body = _body(grouping)
    found = {d["metadata"]["name"] for d in _deployments(body).values()}
    assert found == deployments
    configs = _loaded_configs(body)
    assert {f"site1-line1-{group}" for group in configs} == deployments


def test_per_machine_makes_one_edge_node_per_machine() -> None:
    configs = _loaded_configs(_body("perMachine"))
    assert {g: [d.id for d in c.devices] for g, c in configs.items()} == {
        "capper": ["capper"],
        "filler": ["filler"],
        "labeler": ["labeler"],
    }
    assert {c.sparkplug.edge_node_id for c in configs.values()} == {"line1-capper", "line1-filler", "line1-labeler"}


@pytest.mark.parametrize("grouping", ["perLine", "perMachine", "perProtocol"])
def test_config_map_yaml_loads_back_as_the_rendered_connector_config(grouping: str, tmp_path: Path) -> None:
    body = _body(grouping)
    rendered = render_connector_configs(
        parse_plantline(body),
        tls_dir=TLS_DIR,
        data_dir=DATA_DIR,
        metrics_address="0.0.0.0",  # noqa: S104 - what the pod listens on
    )
    data = config_map(Owner.of(body), connector_configs(parse_plantline(body)))["data"]
    assert set(data) == {f"{group}.yaml" for group in rendered}
    for group in rendered:
        # The file the pod sees, read by the connector's own loader.
        (tmp_path / "connector.yaml").write_text(data[f"{group}.yaml"])
        config = load_config(tmp_path / "connector.yaml")
        assert config.metrics_port == 9400  # every pod has its own address: one port for all
        assert config.metrics_address == "0.0.0.0"  # noqa: S104 - probes and Prometheus come from outside
        assert config == rendered[group].model_copy(update={"metrics_port": 9400})


def test_config_map_key_per_group_and_nothing_else() -> None:
    body = _body("perProtocol")
    cm = config_map(Owner.of(body), connector_configs(parse_plantline(body)))
    assert cm["metadata"]["name"] == "site1-line1-connectors"
    assert sorted(cm["data"]) == ["cip.yaml", "opcua.yaml", "s7.yaml"]
