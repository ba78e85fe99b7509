"""What every part of the core stack shares: labels, the restricted pod security, resource options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_kubernetes as k8s

from plantline.stacks.core.args import NAMESPACE, CoreArgs

PART_OF = "plantline"
MANAGED_BY = "pulumi"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
# The components the operator (and the bridge) give their pods: the broker and the database admit these.
CONNECTOR_COMPONENTS = ("connector", "bridge")
HISTORIAN_COMPONENT = "historian"
RUN_AS = {"broker": 1000, "prometheus": 65534, "grafana": 472, "database": 999}


def service_host(service: str) -> str:
    """Return a Service's name inside the cluster (`svc` without the cluster domain)."""
    return f"{service}.{NAMESPACE}.svc"


def labels(name: str, component: str) -> dict[str, str]:
    """Return the labels of one of the stack's workloads (also its selector's, by name)."""
    return {NAME_LABEL: name, COMPONENT_LABEL: component, "app.kubernetes.io/part-of": PART_OF}


def selector(name: str) -> dict[str, str]:
    """Return the labels that select a workload's pods."""
    return {NAME_LABEL: name}


def metadata(name: str, component: str, annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgsDict:
    """Return the metadata of an object of the stack, in its namespace."""
    meta: k8s.meta.v1.ObjectMetaArgsDict = {
        "name": name,
        "namespace": NAMESPACE,
        "labels": {**labels(name, component), "app.kubernetes.io/managed-by": MANAGED_BY},
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def pod_security(uid: int) -> k8s.core.v1.PodSecurityContextArgsDict:
    """Return the pod security the namespace's `restricted` Pod Security Standard demands, as `uid`."""
    return {
        "run_as_non_root": True,
        "run_as_user": uid,
        "run_as_group": uid,
        "fs_group": uid,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container_security(*, read_only_root: bool = True) -> k8s.core.v1.SecurityContextArgsDict:
    """Return the container security `restricted` demands: no privilege escalation, no capability."""
    return {
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


@dataclass(frozen=True, slots=True)
class Scope:
    """What each part of the stack builds with: the arguments, and the options of its children."""

    args: CoreArgs
    opts: pulumi.ResourceOptions

    def after(self, *resources: pulumi.Resource) -> pulumi.ResourceOptions:
        """Return the children's options, depending on `resources` as well."""
        return pulumi.ResourceOptions.merge(self.opts, pulumi.ResourceOptions(depends_on=list(resources)))

    def place(self, spec: k8s.core.v1.PodSpecArgsDict) -> k8s.core.v1.PodSpecArgsDict:
        """Return `spec` with the stack's node selector and tolerations, which place every pod."""
        if self.args.node_selector:
            spec["node_selector"] = dict(self.args.node_selector)
        if self.args.tolerations:
            spec["tolerations"] = [cast(k8s.core.v1.TolerationArgsDict, t) for t in self.args.tolerations]
        return spec


def claim(name: str, size: str, storage_class: str | None) -> k8s.core.v1.PersistentVolumeClaimArgsDict:
    """Return a volume claim template: one ReadWriteOnce volume of `size`."""
    spec: k8s.core.v1.PersistentVolumeClaimSpecArgsDict = {
        "access_modes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class is not None:
        spec["storage_class_name"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}
