"""Verify plantline.edge.k3s up to the service (no real K3s binary exists here: see the role's README)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml
from testinfra.host import Host

HostFactory = Callable[[str], Host]

REPO = Path(os.environ["PLANTLINE_REPO"])
ARTIFACTS = Path(os.environ["PLANTLINE_MOLECULE_WORKDIR"]) / "k3s-artifacts"


def test_binary_and_images_installed(hosts: HostFactory) -> None:
    node = hosts("node")
    binary = node.file("/usr/local/bin/k3s")
    assert (binary.mode, binary.user) == (0o755, "root")
    assert binary.sha256sum == hashlib.sha256((ARTIFACTS / "k3s-test-stub").read_bytes()).hexdigest()
    assert node.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-test-stub.tar").mode == 0o644


def test_config_yaml_has_the_cis_flags(hosts: HostFactory) -> None:
    node = hosts("node")
    f = node.file("/etc/rancher/k3s/config.yaml")
    assert (f.mode, f.user) == (0o600, "root")
    config = yaml.safe_load(f.content_string)
    assert config["protect-kernel-defaults"] is True
    assert config["secrets-encryption"] is True
    assert config["write-kubeconfig-mode"] == "0600"
    assert config["token-file"] == "/etc/rancher/k3s/token"
    assert config["tls-san"] == ["edge.molecule.example"]
    assert config["node-label"] == ["plantline.dev/line=line1"]
    assert "anonymous-auth=false" in config["kube-apiserver-arg"]
    assert any(a.startswith("audit-policy-file=") for a in config["kube-apiserver-arg"])
    assert node.file("/etc/rancher/k3s/token").mode == 0o600


def test_registries_yaml_points_at_the_mirror(hosts: HostFactory) -> None:
    registries = yaml.safe_load(hosts("node").file("/etc/rancher/k3s/registries.yaml").content_string)
    assert registries["mirrors"]["docker.io"]["endpoint"] == ["https://registry.molecule.example:5000"]
    assert set(registries["mirrors"]) == {"docker.io", "registry.k8s.io", "ghcr.io", "quay.io"}


def test_cis_sysctl_file(hosts: HostFactory) -> None:
    content = hosts("node").file("/etc/sysctl.d/90-k3s-cis.conf").content_string
    assert "vm.overcommit_memory = 1" in content
    assert "kernel.panic_on_oops = 1" in content


def test_unit_installed_valid_and_not_started(hosts: HostFactory) -> None:
    node = hosts("node")
    unit = node.file("/etc/systemd/system/k3s.service")
    assert unit.mode == 0o644
    assert "ExecStart=/usr/local/bin/k3s server --config /etc/rancher/k3s/config.yaml" in unit.content_string
    assert node.run("systemd-analyze verify k3s.service").rc == 0
    assert not node.service("k3s").is_running  # CI has no real K3s binary to run


def test_a_wrong_checksum_fails_the_play(tmp_path: Path) -> None:
    tampered = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS, tampered)
    with (tampered / "k3s-test-stub").open("a") as stub:
        stub.write("# tampered\n")
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
            str(REPO / "molecule" / "k3s" / "converge.yml"),
            "-e",
            f"k3s_artifacts_dir={tampered}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    # the callback wraps long messages (YAML line folding, quoting): compare words only
    text = result.stdout + result.stderr  # ansible-core 2.19 reports task failures on stderr
    output = " ".join(text.replace("\\", " ").replace("'", " ").replace('"', " ").split())
    assert "does not match" in output, output[-3000:]
    assert "refusing to install it" in output
    assert "Install | the K3s binary" not in output  # nothing was copied
