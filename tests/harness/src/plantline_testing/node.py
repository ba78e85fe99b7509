"""A real Kubernetes node for tests, beside the control plane's fake one: pods that really run.

`Node(plane, work_dir)` starts, on this machine:

- a Linux bridge with a /24 of its own (the pod network) and the CNI plugins from Debian
  (`containernetworking-plugins`: bridge with host-local addresses, portmap); pods reach the
  host only, at the bridge's address (`node.address`), where a test starts the line's broker and
  simulators; nothing is masqueraded to the outside;
- containerd from Debian, with runc, its state and images under the work directory, its socket
  in it. `restrict_oom_score_adj` is on: this machine's root lacks CAP_SYS_RESOURCE, and the
  -998 that containerd gives a pod's sandbox would otherwise make every sandbox fail to start
  ("can't get final child's PID from pipe");
- the kubelet, built from the control plane's `k8s.io/kubernetes` release (build.sh --node), with
  `failCgroupV1: false` (this machine's cgroups are v1), the cgroupfs driver, its API on
  127.0.0.1 and a client certificate of `system:node:<name>`.

Pods reach the apiserver the way they do everywhere, at the `kubernetes` Service's address
(10.0.0.1:443, which the apiserver's certificate names): there is no kube-proxy, so one iptables
DNAT rule, for the pod network only, sends that address to the apiserver on 127.0.0.1
(`route_localnet` on the bridge allows it). The fake node is cordoned, so pods land here; with
`exclusive=False` it is not, and node selectors place each pod on one or the other.

Images come from podman (`load_image`: `podman save`, then `ctr -n k8s.io images import`);
pods use them with `imagePullPolicy: IfNotPresent`. The pod sandbox image is the tests' Debian
base running `sleep infinity`, as no registry is reachable. `stop()` drains the node, stops the
kubelet and containerd by PID, unmounts what they mounted and removes the bridge, the DNAT rule
and the node's cgroups.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from plantline_testing import Started, free_port
from plantline_testing.controlplane import FAKE_NODE, SERVICE_CIDR, ControlPlane, Program, ensure_binaries, spawn
from plantline_testing.images import debian_base

NODE_NAME = "plantline-node-0"
POD_NETWORKS = ipaddress.IPv4Network("10.250.0.0/16")  # a /24 of it per node, one not routed yet
START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 90.0
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")


class NodeError(RuntimeError):
    """The node could not start; the message holds the tail of the program's log."""


def _run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def _free_subnet() -> ipaddress.IPv4Network:
    routed = _run("ip", "-4", "route", "show").stdout
    taken = {
        ipaddress.ip_network(line.split()[0], strict=False) for line in routed.splitlines() if "/" in line.split()[0]
    }
    candidates = list(POD_NETWORKS.subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise NodeError(f"every /24 of {POD_NETWORKS} is routed already")


class Node(Started):
    """One real node (`NODE_NAME`) of `plane`; use it as a context manager inside the plane's."""

    def __init__(self, plane: ControlPlane, work_dir: Path, *, name: str = NODE_NAME, exclusive: bool = True) -> None:
        self.plane = plane
        self.exclusive = exclusive
        self.name = name
        self.work_dir = work_dir
        self.subnet = _free_subnet()
        self.bridge = f"pl{secrets.token_hex(4)}"  # interface names are at most 15 characters
        self.cgroup = f"plantline-{self.bridge}"
        self._programs: list[Program] = []
        self._dnat: list[str] = []
        self._netns_before: set[str] = set()
        self._undo: list[tuple[str, ...]] = []
        self._base_image = ""
        self._sandbox_image = ""

    @property
    def address(self) -> str:
        """The node's address on the pod network, where pods reach services of the host."""
        return str(next(self.subnet.hosts()))

    @property
    def socket(self) -> Path:
        return self.work_dir / "containerd" / "containerd.sock"

    @property
    def pod_logs(self) -> Path:
        return self.work_dir / "pod-logs"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the network, containerd and the kubelet; return once the node is Ready."""
        try:
            bin_dir = ensure_binaries(node=True)
            self._base_image = debian_base()
            self._sandbox_image = f"localhost/plantline-pause:{self._base_image.rsplit(':', 1)[1]}"
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._network_up()
            self._start_containerd()
            self._load_sandbox_image()
            self._start_kubelet(bin_dir)
            if self.exclusive:
                self.plane.kubectl("cordon", FAKE_NODE)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Drain the node, stop its programs by PID, and undo every change to the host."""
        with contextlib.suppress(Exception):
            self._drain()
        while self._programs:
            program = self._programs.pop()
            if program.name == "containerd":
                self._kill_leftover_tasks()
            program.stop()
        self._unmount()
        for name in sorted(set(_netns()) - self._netns_before):
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                _run("umount", str(NETNS_DIR / name), check=False)
                (NETNS_DIR / name).unlink()
        while self._undo:
            _run(*self._undo.pop(), check=False)
        self._remove_cgroups()

    # -- the pieces -------------------------------------------------------------------------------

    def _network_up(self) -> None:
        prefix = f"{self.address}/{self.subnet.prefixlen}"
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._undo.append(("ip", "link", "del", self.bridge))
        _run("ip", "addr", "add", prefix, "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        _run("sysctl", "-q", "-w", f"net.ipv4.conf.{self.bridge}.route_localnet=1")
        service = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        rule = ["PREROUTING", "-s", str(self.subnet), "-d", f"{service}/32", "-p", "tcp", "--dport", "443"]
        rule += ["-m", "comment", "--comment", f"plantline node {self.bridge}: the kubernetes Service"]
        rule += ["-j", "DNAT", "--to-destination", f"127.0.0.1:{self.plane.apiserver_port}"]
        _run("iptables", "-t", "nat", "-A", *rule)
        self._undo.append(("iptables", "-t", "nat", "-D", *rule))
        cni = self.work_dir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "plantline",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.subnet), "gateway": self.address}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(cni / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (cni / "net.d" / "10-plantline.conflist").write_text(json.dumps(conflist, indent=2))
        self._netns_before = set(_netns())

    def _start_containerd(self) -> None:
        root = self.work_dir / "containerd"
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.toml"
        config.write_text(
            CONTAINERD_CONFIG.format(
                root=root, socket=self.socket, sandbox=self._sandbox_image, cni=self.work_dir / "cni"
            )
        )
        program = spawn("containerd", ["containerd", "--config", str(config)], self.work_dir)
        self._programs.append(program)
        self._wait("containerd's socket", lambda: self._ctr("version", check=False).returncode == 0, program)

    def _load_sandbox_image(self) -> None:
        image = self._sandbox_image
        if _run("podman", "image", "exists", image, check=False).returncode != 0:
            with tempfile.TemporaryDirectory() as context:
                recipe = f'FROM {self._base_image}\nUSER 65535:65535\nENTRYPOINT ["/bin/sleep", "infinity"]\n'
                (Path(context) / "Containerfile").write_text(recipe)
                _run("podman", "build", "--runtime", "runc", "-q", "-t", image, context)
        self.load_image(image)

    def load_image(self, image: str) -> None:
        """Copy a podman image into the node's containerd (namespace k8s.io), under the same name."""
        with tempfile.TemporaryDirectory(dir=self.work_dir) as scratch:
            archive = Path(scratch) / "image.tar"
            _run("podman", "save", "--format", "docker-archive", "-o", str(archive), image, timeout=600)
            self._ctr("images", "import", str(archive), timeout=600)

    def _start_kubelet(self, bin_dir: Path) -> None:
        for hierarchy in _cgroup_hierarchies():
            (hierarchy / self.cgroup).mkdir(exist_ok=True)
        root = self.work_dir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        self.pod_logs.mkdir(exist_ok=True)
        healthz = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine's cgroups are v1: kubelet 1.35 warns instead of refusing
            "cgroupDriver": "cgroupfs",  # as containerd's runc is configured
            "cgroupRoot": f"/{self.cgroup}",  # one tree per node, removed on stop
            "failSwapOn": False,
            "address": "127.0.0.1",
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.pki_dir / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},  # reachable on 127.0.0.1 only, by certificate
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podLogsDir": str(self.pod_logs),
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,  # the imported images cannot be pulled again
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        argv = [
            str(bin_dir / "kubelet"),
            f"--config={root / 'config.yaml'}",
            f"--kubeconfig={self.plane.node_kubeconfig(self.name)}",
            f"--root-dir={root / 'root'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.address}",
            "--v=1",
        ]
        program = spawn("kubelet", argv, self.work_dir)
        self._programs.append(program)
        self._wait(f"node {self.name} Ready", self.ready, program)

    def add_local_volumes(self, storage_class: str, count: int, *, size: str = "1Gi") -> None:
        """Create a StorageClass of local volumes on this node, and `count` of them (directories here).

        Claims of the class bind when their pod is scheduled (WaitForFirstConsumer); the kubelet
        gives each volume to the pod's fsGroup, as it does for local volumes (not for hostPath).
        """
        storage = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": storage_class},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        self.plane.request("POST", "/apis/storage.k8s.io/v1/storageclasses", storage)
        here = {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.name]}
        for index in range(count):
            path = self.work_dir / "volumes" / storage_class / str(index)
            path.mkdir(parents=True)
            spec = {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": storage_class,
                "local": {"path": str(path)},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [here]}]}},
            }
            volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{storage_class}-{index}"}}
            self.plane.request("POST", "/api/v1/persistentvolumes", volume | {"spec": spec})

    def ready(self) -> bool:
        """Return whether the node reports Ready."""
        node = self.plane.request("GET", f"/api/v1/nodes/{self.name}")
        conditions = node.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _wait(self, what: str, ready: Callable[[], bool], program: Program) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if program.popen.poll() is not None:
                raise NodeError(f"{program.name} exited with {program.popen.returncode}:\n{program.log_tail()}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise NodeError(f"{what}: not after {START_TIMEOUT_S:.0f} s; {program.name}:\n{program.log_tail()}")
            time.sleep(0.2)

    def _ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args, check=check, timeout=timeout)

    # -- stopping ---------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Cordon the node and delete its pods, so the kubelet tears down their sandboxes and networks."""
        if not any(p.name == "kubelet" for p in self._programs):
            return
        # The kubelet removes a pod's logs with the pod: keep what the pods wrote, for a failure's story.
        if self.pod_logs.is_dir():
            shutil.copytree(self.pod_logs, self.work_dir / "pod-logs-at-stop", dirs_exist_ok=True)
        self.plane.kubectl("cordon", self.name, check=False)
        pods = self.plane.request("GET", f"/api/v1/pods?fieldSelector=spec.nodeName={self.name}")
        for pod in pods.get("items", []):
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}?gracePeriodSeconds=0"
            with contextlib.suppress(Exception):
                self.plane.request("DELETE", path)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and self._ctr("tasks", "ls", "-q", check=False).stdout.strip():
            time.sleep(0.5)

    def _kill_leftover_tasks(self) -> None:
        for task in self._ctr("tasks", "ls", "-q", check=False).stdout.split():
            self._ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        time.sleep(0.5)
        for task in self._ctr("tasks", "ls", "-q", check=False).stdout.split():
            self._ctr("tasks", "delete", "--force", task, check=False)
        for container in self._ctr("containers", "ls", "-q", check=False).stdout.split():
            self._ctr("containers", "delete", container, check=False)

    def _unmount(self) -> None:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        mine = [m for m in mounts if Path(m) == self.work_dir or self.work_dir in Path(m).parents]
        for mount in sorted(mine, key=len, reverse=True):
            _run("umount", "--lazy", mount, check=False)

    def _remove_cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            top = hierarchy / self.cgroup
            if not top.is_dir():
                continue
            for directory in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def _netns() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.glob("cni-*")) if NETNS_DIR.is_dir() else []


def _cgroup_hierarchies() -> list[Path]:
    """Return the mounted cgroup hierarchies (v1 controllers, the named systemd one, v2's unified)."""
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()]


CONTAINERD_CONFIG = """\
# Written by plantline_testing.node: one containerd for one test node.
version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{sandbox}"
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{cni}/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
"""

__all__ = ["NODE_NAME", "Node", "NodeError"]
