"""The operator's install (operator/deploy) as Kubernetes documents, with its images set.

The stacks deploy the very files `kubectl apply -k operator/deploy` applies: this module follows the
kustomization's `resources` (files and directories holding a kustomization of their own) and sets
the images as kustomize's `images:` would, on the containers' `image` and on the environment values
kustomizeconfig.yaml names an image field. It is no general kustomize: the install uses nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = "kustomization.yaml"
OPERATOR_IMAGE = "plantline-operator"
CONNECTOR_IMAGE = "plantline-connectors"
OPERATOR_DEPLOYMENT = "plantline-operator"
# Objects every namespaced document needs first, and the cluster-wide schema the rest may use.
FOUNDATION_KINDS = frozenset({"Namespace", "CustomResourceDefinition"})


class ManifestError(ValueError):
    """The install directory is not what the stacks expect (a missing file, an unknown layout)."""


def read_documents(directory: Path) -> list[dict[str, Any]]:
    """Return the documents of the kustomization in `directory`, in its `resources` order."""
    return list(_documents(directory, seen=()))


def _documents(directory: Path, seen: Sequence[Path]) -> Iterator[dict[str, Any]]:
    path = (directory / KUSTOMIZATION).resolve()
    if path in seen:
        raise ManifestError(f"{path}: the kustomization includes itself")
    if not path.is_file():
        raise ManifestError(f"{directory}: no {KUSTOMIZATION}")
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for entry in kustomization.get("resources", []):
        target = directory / entry
        if target.is_dir():
            yield from _documents(target, (*seen, path))
        elif target.is_file():
            yield from (d for d in yaml.safe_load_all(target.read_text(encoding="utf-8")) if d)
        else:
            raise ManifestError(f"{path}: resource {entry!r} does not exist")


def image_name(reference: str) -> str:
    """Return an image reference without its tag or digest (`reg:5000/a/b:1` -> `reg:5000/a/b`)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def set_images(documents: Sequence[dict[str, Any]], images: Mapping[str, str]) -> list[dict[str, Any]]:
    """Return copies of `documents` whose images named in `images` (name -> new reference) are replaced.

    As kustomize's `images:` with kustomizeconfig.yaml: containers' `image` and their environment
    values that hold an image reference.
    """
    out = [yaml.safe_load(yaml.safe_dump(d)) for d in documents]  # deep copies of plain data
    for document in out:
        for container in _containers(document):
            if (new := images.get(image_name(str(container.get("image", ""))))) is not None:
                container["image"] = new
            for variable in container.get("env", []):
                value = variable.get("value")
                if isinstance(value, str) and (new := images.get(image_name(value))) is not None:
                    variable["value"] = new
    return out


def add_operator_args(documents: Sequence[dict[str, Any]], args: Sequence[str]) -> None:
    """Append `args` to the operator container's arguments, in place (an overlay's patch)."""
    for document in documents:
        if document.get("kind") == "Deployment" and document["metadata"]["name"] == OPERATOR_DEPLOYMENT:
            container = document["spec"]["template"]["spec"]["containers"][0]
            container["args"] = [*container.get("args", []), *args]
            return
    raise ManifestError(f"no Deployment {OPERATOR_DEPLOYMENT} among the documents")


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    template = document.get("spec", {}).get("template", {}) if isinstance(document.get("spec"), dict) else {}
    spec = template.get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def split_foundation(documents: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (the namespaces and CRDs, everything else): the second may be created only after the first."""
    first = [d for d in documents if d.get("kind") in FOUNDATION_KINDS]
    rest = [d for d in documents if d.get("kind") not in FOUNDATION_KINDS]
    return first, rest


def set_scheduling(
    documents: Sequence[dict[str, Any]], node_selector: Mapping[str, str], tolerations: Sequence[Mapping[str, Any]]
) -> None:
    """Add a node selector and tolerations to every pod template of `documents`, in place."""
    for document in documents:
        spec = document.get("spec")
        if not isinstance(spec, dict) or "template" not in spec:
            continue
        pod = spec["template"].setdefault("spec", {})
        if node_selector:
            pod["nodeSelector"] = {**pod.get("nodeSelector", {}), **node_selector}
        if tolerations:
            pod["tolerations"] = [*pod.get("tolerations", []), *(dict(t) for t in tolerations)]
