"""What the Kubernetes tests share: the control plane (one per test module), the images, the Pulumi CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plantline_testing.controlplane import ControlPlane
from plantline_testing.images import Images, ensure_images
from plantline_testing.pulumi_cli import broker_tls, ensure_pulumi


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane (kube-apiserver, etcd, kwok), its binaries built on first use."""
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as control_plane:
        yield control_plane


@pytest.fixture(scope="module")
def images() -> Images:
    """The connector and operator images of this checkout, built on first use (podman's names)."""
    return ensure_images()


@pytest.fixture(scope="module")
def pulumi_bin() -> Path:
    """The directory of the Pulumi CLI and its Kubernetes provider, built on first use."""
    return ensure_pulumi()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The core stack's TLS config: the broker's key and certificate from the toolkit's CA, the CA bundle."""
    return broker_tls(tmp_path_factory.mktemp("pki"))
