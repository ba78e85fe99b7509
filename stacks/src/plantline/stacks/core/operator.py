"""The operator from operator/deploy's own manifests: namespace, CRD, RBAC, Deployment and Service.

The documents are those `kubectl apply -k operator/deploy` applies (read by
`plantline.stacks.manifests`), with the overlay a core stack needs: both images set, the operator
pointed at the broker's REST API, its API key Secret and TLS listener, and told the URL of its
CRL, and the stack's scheduling. Each document becomes the Pulumi resource of its kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plantline.stacks import manifests
from plantline.stacks.core.args import NAMESPACE
from plantline.stacks.core.broker import LISTENER, OPERATOR_API_SECRET, api_url
from plantline.stacks.core.common import Scope

OPERATOR_SERVICE_PORT = 9402  # operator/deploy's Service: /metrics and /crl.der
# The kinds operator/deploy holds; a new kind there is an error here until it is added.
KINDS: Mapping[str, Callable[..., pulumi.CustomResource]] = {
    "Namespace": k8s.core.v1.Namespace,
    "CustomResourceDefinition": k8s.apiextensions.v1.CustomResourceDefinition,
    "ServiceAccount": k8s.core.v1.ServiceAccount,
    "ClusterRole": k8s.rbac.v1.ClusterRole,
    "ClusterRoleBinding": k8s.rbac.v1.ClusterRoleBinding,
    "Role": k8s.rbac.v1.Role,
    "RoleBinding": k8s.rbac.v1.RoleBinding,
    "Deployment": k8s.apps.v1.Deployment,
    "Service": k8s.core.v1.Service,
}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def operator_args() -> list[str]:
    """Return the arguments the core stack adds to the operator's: the broker and the CRL's URL."""
    return [
        f"--emqx={api_url()}",
        f"--emqx-credentials-secret={NAMESPACE}/{OPERATOR_API_SECRET}",
        f"--emqx-listener={LISTENER}",
        f"--crl-url=http://plantline-operator.{NAMESPACE}:{OPERATOR_SERVICE_PORT}/crl.der",
    ]


def documents(scope: Scope) -> list[dict[str, Any]]:
    """Return operator/deploy's documents with the core stack's overlay applied."""
    args = scope.args
    images = {manifests.OPERATOR_IMAGE: args.operator_image, manifests.CONNECTOR_IMAGE: args.connector_image}
    docs = manifests.set_images(manifests.read_documents(args.operator_manifests), images)
    manifests.add_operator_args(docs, operator_args())
    selector = args.node_selector if args.operator_node_selector is None else args.operator_node_selector
    manifests.set_scheduling(docs, selector, args.tolerations)
    return docs


def resource_name(document: Mapping[str, Any]) -> str:
    """Return the Pulumi name of a document: `namespace/name`, or `name` for cluster-wide objects."""
    meta = document["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta["name"])


def create_resource(document: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Return the Pulumi resource of one document; its top-level fields become the resource's arguments."""
    kind = str(document.get("kind"))
    if kind not in KINDS:
        raise manifests.ManifestError(f"{kind} {resource_name(document)}: the core stack knows no such kind")
    fields = {_CAMEL.sub("_", key).lower(): value for key, value in document.items()}
    return KINDS[kind](resource_name(document), opts=opts, **fields)


def create_foundation(scope: Scope) -> list[pulumi.CustomResource]:
    """Create the install's namespace and CRD, which everything else of the stack needs first."""
    foundation, _ = manifests.split_foundation(documents(scope))
    return [create_resource(d, scope.opts) for d in foundation]


def create(scope: Scope) -> list[pulumi.CustomResource]:
    """Create the rest of the install (RBAC, the Deployment, its Service) with the scope's options."""
    _, rest = manifests.split_foundation(documents(scope))
    return [create_resource(d, scope.opts) for d in rest]
