"""EMQX, the core broker: a StatefulSet clustered by EMQX's Kubernetes discovery, mutual TLS only.

The MQTT listener is `ssl:default` on 8883 with the toolkit's server certificate, peers verified
against the CA bundle and their certificates' CRL Distribution Points checked; the plain TCP
listener is off. The dashboard and REST API (18083) get a ClusterIP Service only. The operator's
API key is bootstrapped from a Secret (EMQX's `api_key.bootstrap_file`), and the same key and
secret are put in the Secret the operator reads (`plantline-emqx-api`, docs/broker.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plantline.stacks.core.args import NAMESPACE
from plantline.stacks.core.common import (
    RUN_AS,
    Scope,
    claim,
    container_security,
    labels,
    metadata,
    pod_security,
    selector,
    service_host,
)

NAME = "emqx"
COMPONENT = "broker"
HEADLESS = "emqx-headless"
DASHBOARD = "emqx-dashboard"
MQTT_PORT = 8883
API_PORT = 18083
# EMQX 5's cluster ports: ekka's distribution (4370) and gen_rpc (5369).
CLUSTER_PORTS = (4370, 5369)
TLS_SECRET = "emqx-tls"
BOOTSTRAP_SECRET = "emqx-api-bootstrap"
OPERATOR_API_SECRET = "plantline-emqx-api"  # what the operator's --emqx-credentials-secret names
LISTENER = "ssl:default"
CERT_DIR = "/opt/emqx/etc/certs"
BOOTSTRAP_DIR = "/opt/emqx/etc/api-keys"


@dataclass(frozen=True, slots=True)
class Broker:
    """The broker's resources, and where clients and the operator find it."""

    statefulset: k8s.apps.v1.StatefulSet
    api_secret: k8s.core.v1.Secret
    endpoint: str  # mqtts://HOST:8883 inside the cluster
    api_url: str  # the REST API, for the operator's --emqx


def api_url() -> str:
    """Return the REST API's URL inside the cluster (the operator's --emqx)."""
    return f"http://{service_host(DASHBOARD)}:{API_PORT}"


def environment(replicas: int) -> list[k8s.core.v1.EnvVarArgsDict]:
    """Return EMQX's configuration as environment variables (EMQX_A__B__C sets a.b.c)."""
    ssl = "EMQX_LISTENERS__SSL__DEFAULT__"
    settings = {
        "EMQX_CLUSTER__DISCOVERY_STRATEGY": "k8s" if replicas > 1 else "manual",
        "EMQX_CLUSTER__K8S__APISERVER": "https://kubernetes.default.svc:443",
        "EMQX_CLUSTER__K8S__SERVICE_NAME": HEADLESS,
        "EMQX_CLUSTER__K8S__ADDRESS_TYPE": "hostname",
        "EMQX_CLUSTER__K8S__NAMESPACE": NAMESPACE,
        "EMQX_CLUSTER__K8S__SUFFIX": "svc.cluster.local",
        "EMQX_LISTENERS__TCP__DEFAULT__ENABLE": "false",
        "EMQX_LISTENERS__WS__DEFAULT__ENABLE": "false",
        "EMQX_LISTENERS__WSS__DEFAULT__ENABLE": "false",
        f"{ssl}BIND": f"0.0.0.0:{MQTT_PORT}",
        f"{ssl}SSL_OPTIONS__CERTFILE": f"{CERT_DIR}/tls.crt",
        f"{ssl}SSL_OPTIONS__KEYFILE": f"{CERT_DIR}/tls.key",
        f"{ssl}SSL_OPTIONS__CACERTFILE": f"{CERT_DIR}/ca.crt",
        f"{ssl}SSL_OPTIONS__VERIFY": "verify_peer",
        f"{ssl}SSL_OPTIONS__FAIL_IF_NO_PEER_CERT": "true",
        f"{ssl}SSL_OPTIONS__ENABLE_CRL_CHECK": "true",
        "EMQX_DASHBOARD__LISTENERS__HTTP__BIND": str(API_PORT),
        "EMQX_API_KEY__BOOTSTRAP_FILE": f"{BOOTSTRAP_DIR}/bootstrap",
    }
    pod_name: k8s.core.v1.EnvVarArgsDict = {
        "name": "POD_NAME",
        "value_from": {"field_ref": {"field_path": "metadata.name"}},
    }
    # Each node names itself by its stable DNS name, which k8s discovery finds through HEADLESS.
    host = f"$(POD_NAME).{HEADLESS}.{NAMESPACE}.svc.cluster.local"
    variables: list[k8s.core.v1.EnvVarArgsDict] = [{"name": k, "value": v} for k, v in settings.items()]
    return [pod_name, {"name": "EMQX_HOST", "value": host}, *variables]


def secrets(scope: Scope) -> tuple[k8s.core.v1.Secret, k8s.core.v1.Secret, k8s.core.v1.Secret]:
    """Return the listener's TLS Secret, EMQX's API key bootstrap file and the operator's copy of the key."""
    args = scope.args
    tls = k8s.core.v1.Secret(
        TLS_SECRET,
        metadata=metadata(TLS_SECRET, COMPONENT),
        type="kubernetes.io/tls",
        string_data={"tls.crt": args.tls.certificate, "tls.key": args.tls.key, "ca.crt": args.tls.ca_bundle},
        opts=scope.opts,
    )
    line: pulumi.Input[str] = pulumi.Output.concat(args.emqx_api_key, ":", args.emqx_api_secret, ":administrator\n")
    bootstrap = k8s.core.v1.Secret(
        BOOTSTRAP_SECRET,
        metadata=metadata(BOOTSTRAP_SECRET, COMPONENT),
        string_data={"bootstrap": pulumi.Output.secret(line)},
        opts=scope.opts,
    )
    operator_copy = k8s.core.v1.Secret(
        OPERATOR_API_SECRET,
        metadata=metadata(OPERATOR_API_SECRET, "operator"),
        string_data={"api-key": args.emqx_api_key, "api-secret": pulumi.Output.secret(args.emqx_api_secret)},
        opts=scope.opts,
    )
    return tls, bootstrap, operator_copy


def discovery_rbac(scope: Scope) -> k8s.core.v1.ServiceAccount:
    """Return EMQX's ServiceAccount, allowed to read the Endpoints its Kubernetes discovery lists."""
    account = k8s.core.v1.ServiceAccount(NAME, metadata=metadata(NAME, COMPONENT), opts=scope.opts)
    role = k8s.rbac.v1.Role(
        NAME,
        metadata=metadata(NAME, COMPONENT),
        rules=[{"api_groups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]}],
        opts=scope.opts,
    )
    k8s.rbac.v1.RoleBinding(
        NAME,
        metadata=metadata(NAME, COMPONENT),
        role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
        subjects=[{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        opts=scope.after(role, account),
    )
    return account


def services(scope: Scope) -> None:
    """Create the headless Service of discovery, the MQTT Service and the internal API Service."""
    cluster_ports: list[k8s.core.v1.ServicePortArgsDict] = [
        {"name": f"cluster-{port}", "port": port, "target_port": port} for port in CLUSTER_PORTS
    ]
    k8s.core.v1.Service(
        HEADLESS,
        metadata=metadata(HEADLESS, COMPONENT),
        spec={
            "cluster_ip": "None",
            "publish_not_ready_addresses": True,  # nodes must find each other before they are Ready
            "selector": selector(NAME),
            "ports": cluster_ports,
        },
        opts=scope.opts,
    )
    k8s.core.v1.Service(
        NAME,
        metadata=metadata(NAME, COMPONENT),
        spec={
            "type": scope.args.broker_service_type,
            "selector": selector(NAME),
            "ports": [{"name": "mqtts", "port": MQTT_PORT, "target_port": "mqtts"}],
        },
        opts=scope.opts,
    )
    k8s.core.v1.Service(
        DASHBOARD,
        metadata=metadata(DASHBOARD, COMPONENT),
        spec={
            "type": "ClusterIP",  # the dashboard and REST API never leave the cluster
            "selector": selector(NAME),
            "ports": [{"name": "api", "port": API_PORT, "target_port": "api"}],
        },
        opts=scope.opts,
    )


def container(scope: Scope) -> k8s.core.v1.ContainerArgsDict:
    """Return the EMQX container: its ports, configuration, volumes and readiness probe."""
    args = scope.args
    ports: list[k8s.core.v1.ContainerPortArgsDict] = [
        {"name": "mqtts", "container_port": MQTT_PORT},
        {"name": "api", "container_port": API_PORT},
    ]
    ports += [{"name": f"cluster-{p}", "container_port": p} for p in CLUSTER_PORTS]
    return {
        "name": NAME,
        "image": args.broker_image,
        "ports": ports,
        "env": environment(args.broker_replicas),
        "readiness_probe": {"http_get": {"path": "/status", "port": "api"}, "period_seconds": 5},
        "liveness_probe": {"http_get": {"path": "/status", "port": "api"}, "initial_delay_seconds": 60},
        "security_context": container_security(read_only_root=False),
        "volume_mounts": [
            {"name": "data", "mount_path": "/opt/emqx/data"},
            {"name": "tls", "mount_path": CERT_DIR, "read_only": True},
            {"name": "api-keys", "mount_path": BOOTSTRAP_DIR, "read_only": True},
        ],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    }


def create(scope: Scope) -> Broker:
    """Create EMQX: Secrets, discovery RBAC, Services and the StatefulSet."""
    args = scope.args
    tls, bootstrap, operator_copy = secrets(scope)
    account = discovery_rbac(scope)
    services(scope)
    statefulset = k8s.apps.v1.StatefulSet(
        NAME,
        metadata=metadata(NAME, COMPONENT),
        spec={
            "replicas": args.broker_replicas,
            "service_name": HEADLESS,
            "pod_management_policy": "Parallel",  # EMQX nodes join in any order
            "selector": {"match_labels": selector(NAME)},
            "template": {
                "metadata": {"labels": labels(NAME, COMPONENT)},
                "spec": scope.place(
                    {
                        "service_account_name": NAME,
                        "security_context": pod_security(RUN_AS["broker"]),
                        "containers": [container(scope)],
                        "volumes": [
                            {"name": "tls", "secret": {"secret_name": TLS_SECRET, "default_mode": 0o440}},
                            {"name": "api-keys", "secret": {"secret_name": BOOTSTRAP_SECRET, "default_mode": 0o440}},
                        ],
                    }
                ),
            },
            "volume_claim_templates": [claim("data", args.broker_storage, args.storage_class)],
        },
        opts=scope.after(tls, bootstrap, account),
    )
    return Broker(
        statefulset=statefulset,
        api_secret=operator_copy,
        endpoint=f"mqtts://{service_host(NAME)}:{MQTT_PORT}",
        api_url=api_url(),
    )
