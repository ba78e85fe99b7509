"""The scenarios' connection into their containers: runc exec (or podman exec), with pipelining.

The driver names the connection `podman`, which resolves to this file before the podman
collection's plugin of that name (base.yml puts this directory on the connection plugin path).
That plugin declares no pipelining, because it does not pass stdin through `podman exec`, so every
task costs four or more execs: make a temporary directory, copy the module in, run it, remove the
directory. Here the module goes to the container's Python on stdin, one exec per task, as Ansible's
ssh and docker connections do it.

The exec itself is runc's, the runtime the scenarios' containers run on (`--runtime=runc`): `runc
exec` starts the command in the container's namespaces and cgroup with the process settings
podman gave the container (environment, capabilities, seccomp), as `podman exec` does, without
podman's own start-up and conmon (about 0.07 s an exec here, against 0.19 s). A container that
runc does not run goes through `podman exec -i`. Files (copy, template) still go through the
container's mounted file system, as in the collection's plugin.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

# Ansible reads a plugin's options from this literal; they are the podman collection's, by the
# same names, so the driver's inventory (ansible_podman_executable) reaches the parent class.
DOCUMENTATION = """
    name: podman
    short_description: Run tasks in a podman container through runc exec or podman exec, pipelined
    description:
      - The podman collection's connection, with the module sent to the container on stdin.
      - runc exec when runc runs the container, podman exec otherwise.
    options:
      remote_addr:
        description: The name or ID of the container.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: The user (name or UID) that runs the commands in the container.
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments for every podman command.
        default: ''
        vars:
          - name: ansible_podman_extra_args
      podman_executable:
        description: The podman program.
        default: podman
        vars:
          - name: ansible_podman_executable
"""


RUNC_ROOT = "/run/runc"  # where rootful podman keeps runc's container state


class Connection(PodmanConnection):  # type: ignore[misc]  # ansible ships no type information
    """runc exec into the container (podman exec otherwise), with stdin passed through for pipelining."""

    has_pipelining = True

    def _connect(self) -> None:
        """Mount the container (the parent's work), and find how runc reaches it, if runc runs it."""
        super()._connect()
        self._runc_exec: list[str] | None = None  # runc's exec command for this container
        rc, out, _ = self._podman("inspect", ["--format", "{{.OCIRuntime}} {{.Id}}"])
        runtime, _, container_id = to_native(out).strip().partition(" ")
        runc = shutil.which("runc")
        if rc == 0 and runtime == "runc" and runc and os.path.isdir(os.path.join(RUNC_ROOT, container_id)):
            self._runc_exec = [runc, "--root", RUNC_ROOT, "exec", container_id]

    @ensure_connect  # type: ignore[untyped-decorator]  # ansible's decorator is untyped too
    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = False) -> tuple[int, bytes, bytes]:
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        argv = shlex.split(to_native(cmd))
        if self._runc_exec is not None and not self.user:
            runc = subprocess.run(
                [*self._runc_exec, *argv],
                input=in_data or b"",  # stdin closed at once when there is no module to send
                capture_output=True,
                check=False,
            )
            return runc.returncode, runc.stdout, runc.stderr
        args = ["exec", "-i"] if in_data is not None else ["exec"]
        if self.user:
            args += ["--user", self.user]
        result: tuple[int, bytes, bytes] = self._podman(args, argv, in_data)
        return result
