"""The core stack's Pulumi program: `pulumi config` -> `CoreArgs` -> `PlantLineCore`, and its outputs.

Config keys (stacks/README.md lists them with their defaults): the secrets `tlsKey`,
`emqxApiSecret`, `grafanaAdminPassword` and `postgresPassword` are required and must be set with
`--secret` (a plain value is refused, so none lands unencrypted in the stack's file); `tlsCert`
and `caBundle` are required too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.config import is_config_secret

from plantline.stacks.core.args import BrokerTls, CoreArgs
from plantline.stacks.core.component import PlantLineCore

SECRET_KEYS = ("tlsKey", "emqxApiSecret", "grafanaAdminPassword", "postgresPassword")
# The optional keys: config key -> (CoreArgs field, the type pulumi.Config reads it as).
OPTIONAL: dict[str, tuple[str, type]] = {
    "operatorImage": ("operator_image", str),
    "connectorImage": ("connector_image", str),
    "brokerReplicas": ("broker_replicas", int),
    "brokerImage": ("broker_image", str),
    "brokerServiceType": ("broker_service_type", str),
    "brokerStorage": ("broker_storage", str),
    "emqxApiKey": ("emqx_api_key", str),
    "prometheusImage": ("prometheus_image", str),
    "prometheusRetention": ("prometheus_retention", str),
    "grafanaImage": ("grafana_image", str),
    "sidecarImage": ("sidecar_image", str),
    "timescaledb": ("timescaledb", bool),
    "postgresImage": ("postgres_image", str),
    "postgresStorage": ("postgres_storage", str),
    "postgresDatabase": ("postgres_database", str),
    "postgresUser": ("postgres_user", str),
    "storageClass": ("storage_class", str),
    "nodeSelector": ("node_selector", dict),
    "tolerations": ("tolerations", list),
    "operatorNodeSelector": ("operator_node_selector", dict),
}


class ConfigError(ValueError):
    """A config key the program cannot use: a secret set in plain text, a value of the wrong type."""


def _optional(config: pulumi.Config, key: str, kind: type) -> Any:
    if kind is int:
        return config.get_int(key)
    if kind is bool:
        return config.get_bool(key)
    if kind in (dict, list):
        value = config.get_object(key)
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"config {key}: expected a {kind.__name__} (JSON), got {type(value).__name__}")
        return value
    return config.get(key)


def require_secret(config: pulumi.Config, key: str) -> pulumi.Output[str]:
    """Return a required secret key; refuse it when it was set without `--secret`."""
    if not is_config_secret(config.full_key(key)) and config.get(key) is not None:
        raise ConfigError(f"config {key} is stored in plain text: set it again with `pulumi config set --secret {key}`")
    return config.require_secret(key)


def read_args(config: pulumi.Config, manifests: Path) -> CoreArgs:
    """Return the core stack's arguments from its config; `manifests` is operator/deploy unless config names one."""
    secrets = {key: require_secret(config, key) for key in SECRET_KEYS}
    tls = BrokerTls(certificate=config.require("tlsCert"), key=secrets["tlsKey"], ca_bundle=config.require("caBundle"))
    optional = {
        field: value for key, (field, kind) in OPTIONAL.items() if (value := _optional(config, key, kind)) is not None
    }
    return CoreArgs(
        tls=tls,
        emqx_api_secret=secrets["emqxApiSecret"],
        grafana_admin_password=secrets["grafanaAdminPassword"],
        postgres_password=secrets["postgresPassword"],
        operator_manifests=Path(config.get("operatorManifests") or manifests),
        **optional,
    )


def outputs(core: PlantLineCore) -> dict[str, pulumi.Output[str]]:
    """Return the stack's outputs, named as `pulumi stack output` shows them."""
    return {
        "brokerEndpoint": core.broker_endpoint,
        "brokerApiUrl": core.broker_api_url,
        "grafanaUrl": core.grafana_url,
        "caBundle": core.ca_bundle,
        "operatorNamespace": core.operator_namespace,
        "databaseHost": core.database_host,
    }


def main(manifests: Path, name: str = "plantline") -> PlantLineCore:
    """Run the core stack: read the config, create the component, export its outputs."""
    core = PlantLineCore(name, read_args(pulumi.Config(), manifests))
    for key, value in outputs(core).items():
        pulumi.export(key, value)
    return core
