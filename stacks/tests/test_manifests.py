"""operator/deploy read as the stacks read it: kustomize's resources, images and the overlay's patches."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantline.stacks.manifests import (
    ManifestError,
    add_operator_args,
    image_name,
    read_documents,
    set_images,
    set_scheduling,
    split_foundation,
)

DEPLOY = Path(__file__).resolve().parents[2] / "operator" / "deploy"


def test_reads_every_document_of_the_install_in_order() -> None:
    kinds = [(d["kind"], d["metadata"]["name"]) for d in read_documents(DEPLOY)]
    assert kinds == [
        ("CustomResourceDefinition", "plantlines.plantline.dev"),
        ("Namespace", "plantline-system"),
        ("ServiceAccount", "plantline-operator"),
        ("ClusterRole", "plantline-operator"),
        ("ClusterRoleBinding", "plantline-operator"),
        ("Role", "plantline-operator-ca"),
        ("RoleBinding", "plantline-operator-ca"),
        ("Deployment", "plantline-operator"),
        ("Service", "plantline-operator"),
    ]


def test_images_are_set_on_containers_and_on_the_environment_as_kustomize_does() -> None:
    documents = set_images(
        read_documents(DEPLOY),
        {"plantline-operator": "reg.local:5000/op:2", "plantline-connectors": "reg.local:5000/conn:2"},
    )
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.local:5000/op:2"
    assert {e["name"]: e["value"] for e in container["env"]}["PLANTLINE_CONNECTOR_IMAGE"] == "reg.local:5000/conn:2"
    untouched = read_documents(DEPLOY)
    (original,) = [d for d in untouched if d["kind"] == "Deployment"]
    assert original["spec"]["template"]["spec"]["containers"][0]["image"] == "plantline-operator:0.1.0"


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("plantline-operator:0.1.0", "plantline-operator"),
        ("reg.local:5000/a/b:1", "reg.local:5000/a/b"),
        ("reg.local:5000/a/b", "reg.local:5000/a/b"),
        ("b@sha256:abc", "b"),
        ("b:1@sha256:abc", "b"),
    ],
)
def test_image_names_drop_tag_and_digest(reference: str, name: str) -> None:
    assert image_name(reference) == name


def test_the_overlay_appends_arguments_and_places_pods() -> None:
    documents = read_documents(DEPLOY)
    add_operator_args(documents, ["--emqx=http://emqx:18083"])
    set_scheduling(documents, {"type": "kwok"}, [{"key": "k", "operator": "Exists"}])
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][-1] == "--emqx=http://emqx:18083"
    assert pod["containers"][0]["args"][0] == "operator"
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]


def test_without_the_operators_deployment_the_overlay_fails() -> None:
    with pytest.raises(ManifestError, match="no Deployment plantline-operator"):
        add_operator_args([{"kind": "Service", "metadata": {"name": "x"}}], ["--x"])


def test_the_namespace_and_crd_come_first() -> None:
    first, rest = split_foundation(read_documents(DEPLOY))
    assert sorted(d["kind"] for d in first) == ["CustomResourceDefinition", "Namespace"]
    assert "Namespace" not in {d["kind"] for d in rest}


def test_a_missing_resource_or_kustomization_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no kustomization\.yaml"):
        read_documents(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [gone.yaml]\n")
    with pytest.raises(ManifestError, match=r"'gone\.yaml' does not exist"):
        read_documents(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [.]\n")
    with pytest.raises(ManifestError, match="includes itself"):
        read_documents(tmp_path)
