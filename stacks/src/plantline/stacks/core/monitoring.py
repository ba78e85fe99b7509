"""Prometheus and Grafana from plain manifests (no Helm repository is needed), with sidecars.

Each has the sidecar of Grafana's Helm chart (k8s-sidecar), watching ConfigMaps in every
namespace: Grafana's loads those labelled `grafana_dashboard: "1"` (the operator's dashboards,
foldered by their `grafana_folder` annotation), Prometheus's those labelled
`app.kubernetes.io/component: rules` (the operator's rules where the prometheus-operator is absent)
and asks Prometheus to reload. Prometheus scrapes every pod of PlantLine with a port named
`metrics`, and EMQX's Prometheus endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import yaml

from plantline.stacks.core.args import NAMESPACE
from plantline.stacks.core.broker import API_PORT, DASHBOARD
from plantline.stacks.core.common import (
    RUN_AS,
    Scope,
    container_security,
    labels,
    metadata,
    pod_security,
    selector,
    service_host,
)

PROMETHEUS = "prometheus"
GRAFANA = "grafana"
COMPONENT = "monitoring"
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
RULES_DIR = "/etc/prometheus/rules"
DASHBOARDS_DIR = "/var/lib/grafana/dashboards"
GRAFANA_SECRET = "grafana-admin"
# The operator's labels: see plantline.operator.model (GRAFANA_DASHBOARD_LABEL, the rules' component).
DASHBOARD_LABEL = ("grafana_dashboard", "1")
RULES_LABEL = ("app.kubernetes.io/component", "rules")
FOLDER_ANNOTATION = "grafana_folder"


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Prometheus's and Grafana's Deployments, and Grafana's address in the cluster."""

    prometheus: k8s.apps.v1.Deployment
    grafana: k8s.apps.v1.Deployment
    grafana_url: str


def prometheus_config() -> str:
    """Return prometheus.yml: PlantLine's pods, EMQX, and the rule files the sidecar writes."""
    pods = {
        "job_name": "plantline-pods",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"],
                "regex": "plantline",
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }
    emqx = {
        "job_name": "emqx",
        "metrics_path": "/api/v5/prometheus/stats",
        "static_configs": [{"targets": [f"{service_host(DASHBOARD)}:{API_PORT}"]}],
    }
    config = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [f"{RULES_DIR}/*.yml"],
        "scrape_configs": [pods, emqx],
    }
    return yaml.safe_dump(config, sort_keys=False)


def grafana_provisioning() -> dict[str, str]:
    """Return Grafana's provisioning files: the Prometheus data source, and the sidecar's dashboard folder."""
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": f"http://{service_host(PROMETHEUS)}:{PROMETHEUS_PORT}",
                "isDefault": True,
            }
        ],
    }
    dashboards = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "plantline",
                "type": "file",
                "allowUiUpdates": False,
                "options": {"path": DASHBOARDS_DIR, "foldersFromFilesStructure": True},
            }
        ],
    }
    return {"datasources.yaml": yaml.safe_dump(datasources), "dashboards.yaml": yaml.safe_dump(dashboards)}


def sidecar(scope: Scope, label: tuple[str, str], folder: str, extra: dict[str, str]) -> k8s.core.v1.ContainerArgsDict:
    """Return a k8s-sidecar container writing the ConfigMaps labelled `label` (any namespace) into `folder`."""
    settings = {
        "LABEL": label[0],
        "LABEL_VALUE": label[1],
        "FOLDER": folder,
        "NAMESPACE": "ALL",
        "RESOURCE": "configmap",
    }
    return {
        "name": "sidecar",
        "image": scope.args.sidecar_image,
        "env": [{"name": k, "value": v} for k, v in {**settings, **extra}.items()],
        "security_context": container_security(),
        "volume_mounts": [{"name": "sidecar", "mount_path": folder}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }


def reader_rbac(scope: Scope, name: str, resources: list[str]) -> k8s.core.v1.ServiceAccount:
    """Return a ServiceAccount allowed to get, list and watch `resources` in every namespace."""
    account = k8s.core.v1.ServiceAccount(name, metadata=metadata(name, COMPONENT), opts=scope.opts)
    role_name = f"plantline-{name}"
    role = k8s.rbac.v1.ClusterRole(
        role_name,
        metadata={"name": role_name, "labels": labels(role_name, COMPONENT)},
        rules=[{"api_groups": [""], "resources": resources, "verbs": ["get", "list", "watch"]}],
        opts=scope.opts,
    )
    k8s.rbac.v1.ClusterRoleBinding(
        role_name,
        metadata={"name": role_name, "labels": labels(role_name, COMPONENT)},
        role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        subjects=[{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        opts=scope.after(role, account),
    )
    return account


def service(scope: Scope, name: str, port: int) -> k8s.core.v1.Service:
    """Return a ClusterIP Service in front of a Deployment's `http` port."""
    return k8s.core.v1.Service(
        name,
        metadata=metadata(name, COMPONENT),
        spec={"selector": selector(name), "ports": [{"name": "http", "port": port, "target_port": "http"}]},
        opts=scope.opts,
    )


def deployment(
    scope: Scope,
    name: str,
    port: int,
    config_map: str,
    containers: list[k8s.core.v1.ContainerArgsDict],
    depends: list[pulumi.Resource],
) -> k8s.apps.v1.Deployment:
    """Return a one-replica Deployment (Recreate on a change) and its Service, for Prometheus or Grafana.

    Its pod has the volumes both use: `config` (the ConfigMap), `sidecar` (the sidecar's folder)
    and `data`.
    """
    service(scope, name, port)
    spec: k8s.core.v1.PodSpecArgsDict = {
        "service_account_name": name,
        "security_context": pod_security(RUN_AS[name]),
        "containers": containers,
        "volumes": [
            {"name": "config", "config_map": {"name": config_map}},
            {"name": "sidecar", "empty_dir": {}},
            {"name": "data", "empty_dir": {}},
        ],
    }
    return k8s.apps.v1.Deployment(
        name,
        metadata=metadata(name, COMPONENT),
        spec={
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"match_labels": selector(name)},
            "template": {"metadata": {"labels": labels(name, COMPONENT)}, "spec": scope.place(spec)},
        },
        opts=scope.after(*depends),
    )


def create_prometheus(scope: Scope) -> k8s.apps.v1.Deployment:
    """Create Prometheus: its configuration, RBAC for discovery and the sidecar, its Deployment and Service."""
    config = k8s.core.v1.ConfigMap(
        "prometheus-config",
        metadata=metadata("prometheus-config", COMPONENT),
        data={"prometheus.yml": prometheus_config()},
        opts=scope.opts,
    )
    account = reader_rbac(scope, PROMETHEUS, ["pods", "services", "endpoints", "configmaps"])
    reload = {"REQ_URL": f"http://localhost:{PROMETHEUS_PORT}/-/reload", "REQ_METHOD": "POST"}
    server: k8s.core.v1.ContainerArgsDict = {
        "name": PROMETHEUS,
        "image": scope.args.prometheus_image,
        "args": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={scope.args.prometheus_retention}",
            "--web.enable-lifecycle",  # the sidecar's reload after a rule file changed
        ],
        "ports": [{"name": "http", "container_port": PROMETHEUS_PORT}],
        "readiness_probe": {"http_get": {"path": "/-/ready", "port": "http"}},
        "security_context": container_security(),
        "volume_mounts": [
            {"name": "config", "mount_path": "/etc/prometheus/prometheus.yml", "sub_path": "prometheus.yml"},
            {"name": "sidecar", "mount_path": RULES_DIR},
            {"name": "data", "mount_path": "/prometheus"},
        ],
    }
    containers = [server, sidecar(scope, RULES_LABEL, RULES_DIR, reload)]
    return deployment(scope, PROMETHEUS, PROMETHEUS_PORT, "prometheus-config", containers, [config, account])


def create_grafana(scope: Scope) -> k8s.apps.v1.Deployment:
    """Create Grafana: its admin Secret, provisioning, the dashboard sidecar's RBAC, Deployment and Service."""
    admin = k8s.core.v1.Secret(
        GRAFANA_SECRET,
        metadata=metadata(GRAFANA_SECRET, COMPONENT),
        string_data={"admin-user": "admin", "admin-password": scope.args.grafana_admin_password},
        opts=scope.opts,
    )
    provisioning = k8s.core.v1.ConfigMap(
        "grafana-provisioning",
        metadata=metadata("grafana-provisioning", COMPONENT),
        data=grafana_provisioning(),
        opts=scope.opts,
    )
    account = reader_rbac(scope, GRAFANA, ["configmaps"])
    env: list[k8s.core.v1.EnvVarArgsDict] = [
        {
            "name": "GF_SECURITY_ADMIN_USER",
            "value_from": {"secret_key_ref": {"name": GRAFANA_SECRET, "key": "admin-user"}},
        },
        {
            "name": "GF_SECURITY_ADMIN_PASSWORD",
            "value_from": {"secret_key_ref": {"name": GRAFANA_SECRET, "key": "admin-password"}},
        },
        {"name": "GF_PATHS_PROVISIONING", "value": "/etc/grafana/provisioning-plantline"},
    ]
    server: k8s.core.v1.ContainerArgsDict = {
        "name": GRAFANA,
        "image": scope.args.grafana_image,
        "env": env,
        "ports": [{"name": "http", "container_port": GRAFANA_PORT}],
        "readiness_probe": {"http_get": {"path": "/api/health", "port": "http"}},
        "security_context": container_security(read_only_root=False),  # plugins and sessions under /tmp
        "volume_mounts": [
            {
                "name": "config",
                "mount_path": "/etc/grafana/provisioning-plantline/datasources/datasources.yaml",
                "sub_path": "datasources.yaml",
            },
            {
                "name": "config",
                "mount_path": "/etc/grafana/provisioning-plantline/dashboards/dashboards.yaml",
                "sub_path": "dashboards.yaml",
            },
            {"name": "sidecar", "mount_path": DASHBOARDS_DIR},
            {"name": "data", "mount_path": "/var/lib/grafana"},
        ],
    }
    folder = {"FOLDER_ANNOTATION": FOLDER_ANNOTATION}
    containers = [server, sidecar(scope, DASHBOARD_LABEL, DASHBOARDS_DIR, folder)]
    return deployment(scope, GRAFANA, GRAFANA_PORT, "grafana-provisioning", containers, [admin, provisioning, account])


def create(scope: Scope) -> Monitoring:
    """Create Prometheus and Grafana."""
    return Monitoring(
        prometheus=create_prometheus(scope),
        grafana=create_grafana(scope),
        grafana_url=f"http://{service_host(GRAFANA)}:{GRAFANA_PORT}",
    )
