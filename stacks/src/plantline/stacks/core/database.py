"""PostgreSQL for the historian: a StatefulSet with a volume claim, its credentials in a Secret.

TimescaleDB's image instead of PostgreSQL's with `timescaledb=True` (the historian runs on plain
PostgreSQL; TimescaleDB is the plant's choice for compression).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plantline.stacks.core.common import (
    RUN_AS,
    Scope,
    claim,
    container_security,
    labels,
    metadata,
    pod_security,
    selector,
    service_host,
)

NAME = "postgres"
COMPONENT = "database"
PORT = 5432
SECRET = "historian-postgres"
DATA = "/var/lib/postgresql/data"


@dataclass(frozen=True, slots=True)
class Database:
    """The database's StatefulSet and Secret, and where the historian finds it."""

    statefulset: k8s.apps.v1.StatefulSet
    secret: k8s.core.v1.Secret
    host: str


def credentials(scope: Scope) -> k8s.core.v1.Secret:
    """Return the Secret the server initialises from and the historian connects with."""
    args = scope.args
    return k8s.core.v1.Secret(
        SECRET,
        metadata=metadata(SECRET, COMPONENT),
        string_data={
            "POSTGRES_USER": args.postgres_user,
            "POSTGRES_PASSWORD": pulumi.Output.secret(args.postgres_password),
            "POSTGRES_DB": args.postgres_database,
        },
        opts=scope.opts,
    )


def container(scope: Scope) -> k8s.core.v1.ContainerArgsDict:
    """Return the server's container: credentials from the Secret, data in the claim, a pg_isready probe."""
    args = scope.args
    ready = ["pg_isready", "-U", args.postgres_user, "-d", args.postgres_database, "-h", "127.0.0.1"]
    return {
        "name": NAME,
        "image": args.database_image,
        "env_from": [{"secret_ref": {"name": SECRET}}],
        "env": [{"name": "PGDATA", "value": f"{DATA}/pgdata"}],  # a subdirectory: the volume's root is not empty
        "ports": [{"name": "postgres", "container_port": PORT}],
        "readiness_probe": {"exec_": {"command": ready}, "period_seconds": 5},
        "security_context": container_security(read_only_root=False),
        "volume_mounts": [{"name": "data", "mount_path": DATA}, {"name": "run", "mount_path": "/var/run/postgresql"}],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
    }


def create(scope: Scope) -> Database:
    """Create PostgreSQL: its Secret, a Service and the StatefulSet with its claim."""
    args = scope.args
    secret = credentials(scope)
    k8s.core.v1.Service(
        NAME,
        metadata=metadata(NAME, COMPONENT),
        spec={"selector": selector(NAME), "ports": [{"name": "postgres", "port": PORT, "target_port": "postgres"}]},
        opts=scope.opts,
    )
    statefulset = k8s.apps.v1.StatefulSet(
        NAME,
        metadata=metadata(NAME, COMPONENT),
        spec={
            "replicas": 1,
            "service_name": NAME,
            "selector": {"match_labels": selector(NAME)},
            "template": {
                "metadata": {"labels": labels(NAME, COMPONENT)},
                "spec": scope.place(
                    {
                        "security_context": pod_security(RUN_AS["database"]),
                        "containers": [container(scope)],
                        "volumes": [{"name": "run", "empty_dir": {}}],
                    }
                ),
            },
            "volume_claim_templates": [claim("data", args.postgres_storage, args.storage_class)],
        },
        opts=scope.after(secret),
    )
    return Database(statefulset=statefulset, secret=secret, host=service_host(NAME))
