"""A PlantLine run by the operator on a real node, with its broker and PLCs on the node's address.

`install_operator_overlay` applies an overlay of operator/deploy, as a platform team would: it names the
two images once (`images:`) and may add flags to `plantline operator run`; the operator then runs
as its own pod. `NodeLine` is one demo line pointed at the node (`node.address`, the host's
address on the pod network): its three PLC simulators and its mosquitto (mutual TLS, the ACL,
persistence; configured by the project's renderer with the certificates the operator issued and
the trust it published) run on the host there; pods reach them over the CNI bridge, and the
line's reader reads the broker from the host. Everything started is stopped by its PID.
"""

from __future__ import annotations

import json
import os
from base64 import b64decode
from pathlib import Path
from typing import Any

import yaml

from plantline.operator.api import PlantLine, parse_plantline
from plantline.operator.local import Child, endpoint_host_port, simulator_argv, wait_listening
from plantline.operator.render import TRUST_BUNDLE, BrokerFiles, render_acl, render_mosquitto_conf
from plantline_testing import find_program, free_port
from plantline_testing.controlplane import ApiError, ControlPlane
from plantline_testing.kube import DEPLOY, OPERATOR_NAMESPACE, demo_line, wait_for
from plantline_testing.node import Node
from plantline_testing.sparkplug_reader import SparkplugReader

START_TIMEOUT_S = 60.0


def install_operator_overlay(
    plane: ControlPlane, overlay: Path, *, operator_image: str, connector_image: str, args: tuple[str, ...] = ()
) -> None:
    """Apply an overlay of operator/deploy naming both images (and adding `args`); wait until it runs."""
    overlay.mkdir(parents=True, exist_ok=True)
    patches = [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg} for arg in args
    ]  # fmt: skip
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, overlay)],
        "images": [_image("plantline-operator", operator_image), _image("plantline-connectors", connector_image)],
    }
    if patches:
        target = {"kind": "Deployment", "name": "plantline-operator"}
        kustomization["patches"] = [{"target": target, "patch": json.dumps(patches)}]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    plane.kubectl("apply", "--server-side", "-k", str(overlay))
    plane.kubectl(
        "wait", "-n", OPERATOR_NAMESPACE, "--for=condition=Available", "deployment/plantline-operator", "--timeout=180s"
    )


def _image(name: str, image: str) -> dict[str, str]:
    new_name, _, tag = image.rpartition(":")
    return {"name": name, "newName": new_name, "newTag": tag}


class NodeLine:
    """One demo PlantLine (`name` in `namespace`) whose broker and simulators serve `node`."""

    def __init__(self, plane: ControlPlane, node: Node, work_dir: Path, *, name: str, namespace: str) -> None:
        self.plane = plane
        self.node = node
        self.work_dir = work_dir
        self.name = name
        self.namespace = namespace
        self.body = demo_line(name, namespace, line=name)
        spec = self.body["spec"]
        spec["broker"].update(host=node.address, port=free_port())
        for machine in spec["machines"]:
            scheme, rest = machine["endpoint"].split("://", 1)
            _old, _, tail = rest.partition(":")
            tail = tail.lstrip("0123456789")
            machine["endpoint"] = f"{scheme}://{node.address}:{free_port()}{tail}"
        # Renewal whenever a test asks for it (spec.pki.renewBefore), not in a weekly window.
        spec["pki"] = {"validityDays": {"mqtt-client": 30}, "renewBefore": 10}
        self.line: PlantLine = parse_plantline(self.body)
        self.tls = work_dir / "tls"
        self._children: list[Child] = []

    def start_simulators(self) -> None:
        for index, machine in enumerate(self.line.spec.machines):
            child = Child(
                f"sim/{machine.id}",
                "simulator",
                simulator_argv(machine, seed=index + 1),
                self.work_dir / f"sim-{machine.id}.log",
                listen=endpoint_host_port(machine),
            )
            self._children.append(child)
            child.start()
        for child in self._children:
            assert child.listen is not None
            if not wait_listening(*child.listen, alive=child.alive, timeout=START_TIMEOUT_S):
                raise RuntimeError(f"{child.name} did not listen on {child.listen}:\n{child.log_tail()}")

    def start_broker(self) -> None:
        """Start the line's mosquitto once the operator issued its certificate and published the trust."""
        self.tls.mkdir(parents=True, exist_ok=True)
        self._secret_files(f"{self.name}-broker-tls", "broker")
        self._secret_files(f"{self.name}-reader-tls", "reader")
        trust = wait_for("the line's trust ConfigMap", lambda: self._get(f"configmaps/{self.name}-trust"), 120)
        (self.tls / TRUST_BUNDLE).write_text(trust["data"][TRUST_BUNDLE])
        (self.tls / "crl.pem").write_text(trust["data"]["crl.pem"])
        broker_dir = self.work_dir / "broker"
        files = BrokerFiles(
            cafile=self.tls / TRUST_BUNDLE,
            certfile=self.tls / "broker.crt",
            keyfile=self.tls / "broker.key",
            crlfile=self.tls / "crl.pem",
            acl_file=broker_dir / "acl",
            persistence_dir=broker_dir / "data",
        )
        files.persistence_dir.mkdir(parents=True)
        files.acl_file.write_text(render_acl(self.line))
        conf = broker_dir / "mosquitto.conf"
        conf.write_text(render_mosquitto_conf(self.line, files=files, run_as="root"))
        broker = Child(
            "broker",
            "broker",
            [find_program("mosquitto"), "-c", str(conf)],
            broker_dir / "mosquitto.log",
            listen=(self.line.spec.broker.host, self.line.spec.broker.port),
        )
        self._children.append(broker)
        broker.start()
        if not wait_listening(self.line.spec.broker.host, self.line.spec.broker.port, broker.alive, START_TIMEOUT_S):
            raise RuntimeError(f"mosquitto did not start:\n{broker.log_tail()}")

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.plane.request("GET", f"/api/v1/namespaces/{self.namespace}/{path}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _secret_files(self, secret: str, stem: str) -> None:
        found = wait_for(f"the Secret {secret}", lambda: self._get(f"secrets/{secret}"), 120)
        (self.tls / f"{stem}.crt").write_bytes(b64decode(found["data"]["tls.crt"]))
        key = self.tls / f"{stem}.key"
        key.touch(mode=0o600)
        key.write_bytes(b64decode(found["data"]["tls.key"]))

    def process_group(self, name: str) -> int:
        """Return the process group of `broker` or `sim/<machine>` (to freeze it)."""
        child = next(c for c in self._children if c.name == name)
        assert child.proc is not None
        return child.proc.pid

    @property
    def simulator_groups(self) -> list[int]:
        return [self.process_group(c.name) for c in self._children if c.kind == "simulator"]

    def reader(self, client_id: str) -> SparkplugReader:
        """A persistent Sparkplug reader of the line's broker, as the line's reader identity."""
        return SparkplugReader(
            port=self.line.spec.broker.port,
            group_id=self.line.spec.sparkplug_group,
            ca=self.tls / TRUST_BUNDLE,
            cert=self.tls / "reader.crt",
            key=self.tls / "reader.key",
            client_id=client_id,
            persistent=True,
            host=self.node.address,
        )

    def stop(self) -> None:
        for child in reversed(self._children):
            child.stop()
        self._children.clear()


__all__ = ["NodeLine", "install_operator_overlay"]
