"""The control plane the Kubernetes tests run on: one per test module, stopped when the module ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plantline_testing.controlplane import ControlPlane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane (kube-apiserver, etcd, kwok), its binaries built on first use."""
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as control_plane:
        yield control_plane
