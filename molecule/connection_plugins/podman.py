"""The scenarios' connection into their containers: podman exec, with Ansible's pipelining.

The driver names the connection `podman`, which resolves to this file before the podman
collection's plugin of that name (base.yml puts this directory on the connection plugin path).
That plugin declares no pipelining, because it does not pass stdin through `podman exec`, so every
task costs four or more execs: make a temporary directory, copy the module in, run it, remove the
directory. With `podman exec -i` the module goes to the container's Python on stdin, one exec per
task, as Ansible's ssh and docker connections do it. Each exec costs about 0.2 s on a CI machine.
Files (copy, template) still go through the container's mounted file system, as before.
"""

from __future__ import annotations

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

# Ansible reads a plugin's options from this literal; they are the podman collection's, by the
# same names, so the driver's inventory (ansible_podman_executable) reaches the parent class.
DOCUMENTATION = """
    name: podman
    short_description: Run tasks in a podman container through podman exec, pipelined
    description:
      - The podman collection's connection, with the module sent to the container on stdin.
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


class Connection(PodmanConnection):  # type: ignore[misc]  # ansible ships no type information
    """podman exec, with stdin passed through when Ansible pipelines a module."""

    has_pipelining = True

    @ensure_connect  # type: ignore[untyped-decorator]
    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = False) -> tuple[int, bytes, bytes]:
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec", "-i"] if in_data is not None else ["exec"]
        if self.user:
            args += ["--user", self.user]
        result: tuple[int, bytes, bytes] = self._podman(args, shlex.split(to_native(cmd)), in_data)
        return result
