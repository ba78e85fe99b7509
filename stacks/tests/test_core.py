"""The core stack under Pulumi's mocks: every resource's inputs, the secrets, the outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack_mocks import Recorded, Recorder, Settled, is_secret, plain_strings, reveal, run_program

from plantline.operator import model as operator_model
from plantline.stacks.core import program
from plantline.stacks.core.args import POSTGRES_IMAGE, TIMESCALEDB_IMAGE


@pytest.fixture
def recorder() -> Recorder:
    """Fresh mocks for one test."""
    return Recorder()


REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "operator" / "deploy"
SECRETS = {
    "tlsKey": "-----BEGIN EC PRIVATE KEY-----broker-key",
    "emqxApiSecret": "emqx-api-secret-value",
    "grafanaAdminPassword": "grafana-admin-password",
    "postgresPassword": "postgres-password-value",
}
PLAIN = {"tlsCert": "-----BEGIN CERTIFICATE-----server", "caBundle": "-----BEGIN CERTIFICATE-----ca"}
NS = "plantline-system"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def deploy(recorder: Recorder, **config: Any) -> dict[str, Settled]:
    settings = {**PLAIN, **SECRETS, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}}
    return run_program(
        recorder,
        lambda: program.outputs(program.main(DEPLOY)),
        project="plantline-core",
        config=settings,
        secret_keys=list(SECRETS),
    )


@pytest.fixture
def core(recorder: Recorder) -> Recorder:
    deploy(recorder)
    return recorder


def pod_spec(resource: Recorded) -> dict[str, Any]:
    spec: dict[str, Any] = resource.inputs["spec"]["template"]["spec"]
    return spec


def container(resource: Recorded, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in pod_spec(resource)["containers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def env(container_: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_.get("env", [])}


def test_every_pod_meets_the_restricted_pod_security_standard(core: Recorder) -> None:
    workloads = core.of_type(DEPLOYMENT) + core.of_type(STATEFULSET)
    assert sorted(w.name for w in workloads) == [
        "emqx",
        "grafana",
        "plantline-system/plantline-operator",
        "postgres",
        "prometheus",
    ]
    for workload in workloads:
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, workload.name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, workload.name
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (workload.name, c["name"])
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, (workload.name, c["name"])
        assert not any("hostPath" in v for v in pod.get("volumes", [])), workload.name


def test_everything_lands_in_the_operators_namespace_labelled_part_of_plantline(core: Recorder) -> None:
    for resource in core.resources:
        if not resource.typ.startswith("kubernetes:"):
            continue
        meta = resource.inputs["metadata"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "plantline", resource.name
        cluster_wide = resource.typ.split(":")[-1] in {
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        }
        assert meta.get("namespace") == (None if cluster_wide else NS), resource.name


def test_the_operator_is_operator_deploy_with_the_stacks_overlay(core: Recorder) -> None:
    expected = []
    for name in ("namespace.yaml", "rbac.yaml", "operator.yaml"):
        expected += [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    crd = yaml.safe_load((REPO / "operator" / "crds" / "plantline.dev_plantlines.yaml").read_text())
    for document in [crd, *expected]:
        kind, meta = document["kind"], document["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
        (found,) = [r for r in core.resources if r.typ.endswith(f":{kind}") and r.name == name]
        if kind != "Deployment":
            assert {k: v for k, v in found.inputs.items() if k not in ("apiVersion", "kind")} == {
                k: v for k, v in document.items() if k not in ("apiVersion", "kind")
            }, name
    operator = core.one(DEPLOYMENT, "plantline-system/plantline-operator")
    main = container(operator, "operator")
    assert main["image"] == "plantline-operator:0.1.0"
    assert env(main)["PLANTLINE_CONNECTOR_IMAGE"] == "plantline-connectors:0.1.0"
    assert main["args"][:3] == ["operator", "run", "--ca-secret=plantline-system/plantline-ca"]
    assert "--emqx=http://emqx-dashboard.plantline-system.svc:18083" in main["args"]
    assert "--emqx-credentials-secret=plantline-system/plantline-emqx-api" in main["args"]
    assert "--emqx-listener=ssl:default" in main["args"]
    assert "--crl-url=http://plantline-operator.plantline-system:9402/crl.der" in main["args"]


def test_images_and_scheduling_come_from_the_config(recorder: Recorder) -> None:
    kwok = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
    deploy(
        recorder,
        operatorImage="registry.example:5000/plantline-operator:1.2.3",
        connectorImage="registry.example:5000/plantline-connectors:1.2.3",
        nodeSelector={"type": "kwok"},
        tolerations=kwok,
    )
    main = container(recorder.one(DEPLOYMENT, "plantline-system/plantline-operator"), "operator")
    assert main["image"] == "registry.example:5000/plantline-operator:1.2.3"
    assert env(main)["PLANTLINE_CONNECTOR_IMAGE"] == "registry.example:5000/plantline-connectors:1.2.3"
    for workload in recorder.of_type(DEPLOYMENT) + recorder.of_type(STATEFULSET):
        assert pod_spec(workload)["nodeSelector"] == {"type": "kwok"}, workload.name
        assert pod_spec(workload)["tolerations"] == kwok, workload.name


def test_the_operator_may_run_on_other_nodes_than_the_rest(recorder: Recorder) -> None:
    deploy(recorder, nodeSelector={"type": "kwok"}, operatorNodeSelector={"kubernetes.io/hostname": "node-0"})
    operator = recorder.one(DEPLOYMENT, "plantline-system/plantline-operator")
    assert pod_spec(operator)["nodeSelector"] == {"kubernetes.io/hostname": "node-0"}
    assert pod_spec(recorder.one(STATEFULSET, "emqx"))["nodeSelector"] == {"type": "kwok"}


def test_emqx_listens_on_mutual_tls_only_with_crl_checks(core: Recorder) -> None:
    emqx = core.one(STATEFULSET, "emqx")
    settings = env(container(emqx, "emqx"))
    assert settings["EMQX_LISTENERS__TCP__DEFAULT__ENABLE"] == "false"
    assert settings["EMQX_LISTENERS__WS__DEFAULT__ENABLE"] == "false"
    assert settings["EMQX_LISTENERS__SSL__DEFAULT__BIND"] == "0.0.0.0:8883"
    assert settings["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__VERIFY"] == "verify_peer"
    assert settings["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__FAIL_IF_NO_PEER_CERT"] == "true"
    assert settings["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__ENABLE_CRL_CHECK"] == "true"
    assert settings["EMQX_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CACERTFILE"] == "/opt/emqx/etc/certs/ca.crt"
    tls = core.one(SECRET, "emqx-tls")
    assert tls.inputs["type"] == "kubernetes.io/tls"
    assert is_secret(tls.inputs["stringData"])
    assert reveal(tls.inputs["stringData"]) == {
        "tls.crt": PLAIN["tlsCert"],
        "tls.key": SECRETS["tlsKey"],
        "ca.crt": PLAIN["caBundle"],
    }
    volumes = {v["name"]: v for v in pod_spec(emqx)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "emqx-tls"


def test_the_api_is_internal_and_its_key_reaches_emqx_and_the_operator_as_secrets(core: Recorder) -> None:
    services = {s.name: s.inputs["spec"] for s in core.of_type(SERVICE)}
    assert services["emqx-dashboard"]["type"] == "ClusterIP"
    assert [p["port"] for p in services["emqx-dashboard"]["ports"]] == [18083]
    assert [p["port"] for p in services["emqx"]["ports"]] == [8883]  # no plain MQTT, no API
    assert services["emqx-headless"]["clusterIP"] == "None"
    bootstrap = core.one(SECRET, "emqx-api-bootstrap").inputs["stringData"]
    assert is_secret(bootstrap)
    assert reveal(bootstrap) == {"bootstrap": f"plantline:{SECRETS['emqxApiSecret']}:administrator\n"}
    operator_copy = core.one(SECRET, "plantline-emqx-api").inputs["stringData"]
    assert is_secret(operator_copy)
    assert reveal(operator_copy) == {"api-key": "plantline", "api-secret": SECRETS["emqxApiSecret"]}
    assert env(container(core.one(STATEFULSET, "emqx"), "emqx"))["EMQX_API_KEY__BOOTSTRAP_FILE"] == (
        "/opt/emqx/etc/api-keys/bootstrap"
    )


def test_emqx_replicas_cluster_through_kubernetes_discovery(recorder: Recorder) -> None:
    deploy(recorder, brokerReplicas="3", brokerServiceType="LoadBalancer", brokerStorage="5Gi")
    emqx = recorder.one(STATEFULSET, "emqx")
    assert emqx.inputs["spec"]["replicas"] == 3
    assert emqx.inputs["spec"]["serviceName"] == "emqx-headless"
    settings = env(container(emqx, "emqx"))
    assert settings["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "k8s"
    assert settings["EMQX_CLUSTER__K8S__SERVICE_NAME"] == "emqx-headless"
    assert settings["EMQX_HOST"] == "$(POD_NAME).emqx-headless.plantline-system.svc.cluster.local"
    assert emqx.inputs["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {"requests": {"storage": "5Gi"}}
    assert recorder.one(SERVICE, "emqx").inputs["spec"]["type"] == "LoadBalancer"
    assert recorder.one(SERVICE, "emqx-dashboard").inputs["spec"]["type"] == "ClusterIP"
    role = recorder.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "emqx").inputs
    assert role["rules"] == [{"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]}]


def test_one_broker_needs_no_discovery(core: Recorder) -> None:
    emqx = core.one(STATEFULSET, "emqx")
    assert emqx.inputs["spec"]["replicas"] == 1
    assert env(container(emqx, "emqx"))["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "manual"


def test_the_sidecars_load_what_the_operator_labels(core: Recorder) -> None:
    grafana = env(container(core.one(DEPLOYMENT, "grafana"), "sidecar"))
    assert (grafana["LABEL"], grafana["LABEL_VALUE"]) == (operator_model.GRAFANA_DASHBOARD_LABEL, "1")
    assert grafana["FOLDER_ANNOTATION"] == operator_model.GRAFANA_FOLDER_ANNOTATION
    assert grafana["NAMESPACE"] == "ALL"
    prometheus = core.one(DEPLOYMENT, "prometheus")
    rules = env(container(prometheus, "sidecar"))
    assert (rules["LABEL"], rules["LABEL_VALUE"]) == (operator_model.COMPONENT_LABEL, "rules")
    assert rules["REQ_URL"] == "http://localhost:9090/-/reload"
    assert rules["FOLDER"] == "/etc/prometheus/rules"
    assert "--web.enable-lifecycle" in container(prometheus, "prometheus")["args"]
    config = yaml.safe_load(
        core.one("kubernetes:core/v1:ConfigMap", "prometheus-config").inputs["data"]["prometheus.yml"]
    )
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"plantline-pods", "emqx"}
    for account in ("plantline-grafana", "plantline-prometheus"):
        rules_ = core.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", account).inputs["rules"]
        assert all(set(r["verbs"]) == {"get", "list", "watch"} for r in rules_), account


def test_the_operators_rules_config_map_carries_the_label_prometheus_loads() -> None:
    from plantline.operator.api import PlantLine

    line = PlantLine.model_validate(yaml.safe_load((REPO / "examples" / "demo-line.yaml").read_text()))
    rendered = operator_model.rules_config_map(operator_model.Owner("plant", "demo", "uid"), line)
    assert rendered["metadata"]["labels"][operator_model.COMPONENT_LABEL] == "rules"


def test_grafana_reads_its_admin_password_from_a_secret(core: Recorder) -> None:
    admin = core.one(SECRET, "grafana-admin").inputs["stringData"]
    assert is_secret(admin)
    assert reveal(admin)["admin-password"] == SECRETS["grafanaAdminPassword"]
    settings = env(container(core.one(DEPLOYMENT, "grafana"), "grafana"))
    assert settings["GF_SECURITY_ADMIN_PASSWORD"] == {
        "secretKeyRef": {"name": "grafana-admin", "key": "admin-password"}
    }


@pytest.mark.parametrize(("config", "image"), [({}, POSTGRES_IMAGE), ({"timescaledb": "true"}, TIMESCALEDB_IMAGE)])
def test_postgresql_keeps_its_data_in_a_claim_and_its_credentials_in_a_secret(
    recorder: Recorder, config: dict[str, str], image: str
) -> None:
    deploy(recorder, postgresStorage="20Gi", storageClass="fast", **config)
    database = recorder.one(STATEFULSET, "postgres")
    server = container(database, "postgres")
    assert server["image"] == image
    assert server["envFrom"] == [{"secretRef": {"name": "historian-postgres"}}]
    claim = database.inputs["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "fast",
    }
    assert {m["name"]: m["mountPath"] for m in server["volumeMounts"]}["data"] == "/var/lib/postgresql/data"
    assert server["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    credentials = recorder.one(SECRET, "historian-postgres").inputs["stringData"]
    assert is_secret(credentials)
    assert reveal(credentials) == {
        "POSTGRES_USER": "historian",
        "POSTGRES_PASSWORD": SECRETS["postgresPassword"],
        "POSTGRES_DB": "historian",
    }


def test_only_connectors_and_bridges_reach_mqtt_and_only_the_historian_and_grafana_reach_postgresql(
    core: Recorder,
) -> None:
    broker = core.one(POLICY, "emqx-ingress").inputs["spec"]
    assert broker["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "emqx"}}
    assert broker["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in broker["ingress"]}
    anyone_labelled: dict[str, Any] = {"namespaceSelector": {}}
    assert by_port[8883] == [
        {
            **anyone_labelled,
            "podSelector": {
                "matchExpressions": [
                    {"key": "app.kubernetes.io/component", "operator": "In", "values": ["connector", "bridge"]}
                ]
            },
        }
    ]
    assert by_port[18083] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "plantline-operator"}}},
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
    ]
    assert by_port[4370] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "emqx"}}}]
    database = core.one(POLICY, "postgres-ingress").inputs["spec"]
    assert database["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "postgres"}}
    (rule,) = database["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert rule["from"] == [
        {
            **anyone_labelled,
            "podSelector": {
                "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["historian"]}]
            },
        },
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}},
    ]


def test_the_connectors_pods_carry_the_component_the_broker_admits() -> None:
    owner = operator_model.Owner("plant", "demo", "uid")
    assert operator_model.labels(owner, "connector")[operator_model.COMPONENT_LABEL] == "connector"


def test_outputs_are_the_endpoints_and_no_secret_reaches_a_plain_output_or_input(
    core: Recorder, recorder: Recorder
) -> None:
    outputs = deploy(Recorder())
    assert {k: v.value for k, v in outputs.items()} == {
        "brokerEndpoint": "mqtts://emqx.plantline-system.svc:8883",
        "brokerApiUrl": "http://emqx-dashboard.plantline-system.svc:18083",
        "grafanaUrl": "http://grafana.plantline-system.svc:3000",
        "caBundle": PLAIN["caBundle"],
        "operatorNamespace": NS,
        "databaseHost": "postgres.plantline-system.svc",
    }
    assert not any(v.secret for v in outputs.values())
    for resource in core.resources:
        for text in plain_strings(resource.inputs):
            for secret in SECRETS.values():
                assert secret not in text, f"{resource.typ} {resource.name} holds a secret in plain text"


def test_a_secret_set_in_plain_text_is_refused(recorder: Recorder) -> None:
    with pytest.raises(Exception, match=r"postgresPassword is stored in plain text"):
        run_program(
            recorder,
            lambda: program.outputs(program.main(DEPLOY)),
            project="plantline-core",
            config={**PLAIN, **SECRETS},
            secret_keys=["tlsKey", "emqxApiSecret", "grafanaAdminPassword"],
        )


def test_a_missing_secret_is_an_error(recorder: Recorder) -> None:
    with pytest.raises(Exception, match=r"emqxApiSecret"):
        run_program(
            recorder,
            lambda: program.outputs(program.main(DEPLOY)),
            project="plantline-core",
            config={k: v for k, v in {**PLAIN, **SECRETS}.items() if k != "emqxApiSecret"},
            secret_keys=["tlsKey", "grafanaAdminPassword", "postgresPassword"],
        )
