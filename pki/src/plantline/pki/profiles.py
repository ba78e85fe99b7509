"""Signing profiles as declarative data: parsed from TOML and checked against each request."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from plantline.pki.errors import InvalidInput, PolicyViolation
from plantline.pki.keys import KeySpec
from plantline.pki.names import San

KEY_USAGES = frozenset(
    {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"}
)
EXTENDED_KEY_USAGES = frozenset({"server_auth", "client_auth"})
_FIELDS = frozenset(
    {
        "description",
        "key_usage",
        "extended_key_usage",
        "default_key",
        "allowed_keys",
        "issuer_keys",
        "validity_days",
        "renew_before_days",
        "require_host_san",
        "require_uri_san",
    }
)


@dataclass(frozen=True, slots=True)
class Profile:
    """What one kind of leaf certificate contains and how long it lives."""

    name: str
    description: str
    key_usage: frozenset[str]
    extended_key_usage: frozenset[str]
    default_key: KeySpec
    allowed_keys: frozenset[KeySpec]
    issuer_keys: frozenset[KeySpec]
    validity_days: int
    renew_before_days: int
    require_host_san: bool = False
    require_uri_san: bool = False

    def check_request(self, *, key: KeySpec, issuer_key: KeySpec, sans: Sequence[San]) -> None:
        """Raise PolicyViolation/InvalidInput when a request does not fit this profile."""
        if key not in self.allowed_keys:
            allowed = ", ".join(sorted(k.value for k in self.allowed_keys))
            raise PolicyViolation(f"key_type: profile {self.name} does not allow {key}; allowed: {allowed}")
        if issuer_key not in self.issuer_keys:
            needed = ", ".join(sorted(k.value for k in self.issuer_keys))
            raise PolicyViolation(
                f"profile {self.name} needs an issuing CA with a {needed} key, but this CA has "
                f"{issuer_key}; create one with `plantline-pki ca init DIR --key-type rsa-2048`"
            )
        if self.require_host_san and not any(s.kind in ("dns", "ip") for s in sans):
            raise InvalidInput(f"san: profile {self.name} needs at least one DNS or IP SAN")
        uris = [s for s in sans if s.kind == "uri"]
        if self.require_uri_san and len(uris) != 1:
            raise InvalidInput(
                f"san: profile {self.name} needs exactly one URI SAN (the ApplicationUri), got {len(uris)}"
            )


def _names(raw: Any, allowed: frozenset[str], where: str) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise InvalidInput(f"{where}: expected a list of strings")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidInput(f"{where}: unknown value(s) {unknown}; expected some of {sorted(allowed)}")
    return frozenset(raw)


def _keys(raw: Any, where: str) -> frozenset[KeySpec]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"{where}: expected a non-empty list of key types")
    return frozenset(KeySpec.parse(str(v), field=f"{where}[{i}]") for i, v in enumerate(raw))


def _days(raw: Any, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise InvalidInput(f"{where}: expected a whole number of days, at least 1")
    return raw


def _profile(name: str, table: Any, source: str) -> Profile:
    where = f"{source}: profiles.{name}"
    if not isinstance(table, dict):
        raise InvalidInput(f"{where}: expected a table")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {unknown}")
    for required in ("key_usage", "extended_key_usage", "default_key", "validity_days", "renew_before_days"):
        if required not in table:
            raise InvalidInput(f"{where}.{required}: missing")
    everything = sorted(k.value for k in KeySpec)
    allowed = _keys(table.get("allowed_keys", everything), f"{where}.allowed_keys")
    default_key = KeySpec.parse(str(table["default_key"]), field=f"{where}.default_key")
    if default_key not in allowed:
        raise InvalidInput(f"{where}.default_key: {default_key} is not among allowed_keys")
    validity = _days(table["validity_days"], f"{where}.validity_days")
    renew_before = _days(table["renew_before_days"], f"{where}.renew_before_days")
    if renew_before >= validity:
        raise InvalidInput(f"{where}.renew_before_days: must be less than validity_days ({validity})")
    return Profile(
        name=name,
        description=str(table.get("description", "")),
        key_usage=_names(table["key_usage"], KEY_USAGES, f"{where}.key_usage"),
        extended_key_usage=_names(table["extended_key_usage"], EXTENDED_KEY_USAGES, f"{where}.extended_key_usage"),
        default_key=default_key,
        allowed_keys=allowed,
        issuer_keys=_keys(table.get("issuer_keys", everything), f"{where}.issuer_keys"),
        validity_days=validity,
        renew_before_days=renew_before,
        require_host_san=bool(table.get("require_host_san", False)),
        require_uri_san=bool(table.get("require_uri_san", False)),
    )


def parse_profiles(text: str, *, source: str) -> dict[str, Profile]:
    """Return the profiles defined in a TOML document; errors name `source` and the field."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: not valid TOML: {exc}") from None
    tables = document.get("profiles")
    if not isinstance(tables, dict) or set(document) - {"profiles"}:
        raise InvalidInput(f"{source}: expected only [profiles.NAME] tables")
    return {name: _profile(name, table, source) for name, table in tables.items()}


def builtin_profiles() -> dict[str, Profile]:
    """Return the profiles shipped with the package."""
    text = resources.files("plantline.pki").joinpath("profiles.toml").read_text(encoding="utf-8")
    return parse_profiles(text, source="built-in profiles.toml")


def select(profiles: Mapping[str, Profile], name: str) -> Profile:
    """Return the named profile, or raise InvalidInput listing the known ones."""
    try:
        return profiles[name]
    except KeyError:
        raise InvalidInput(f"profile: unknown profile {name!r}; known: {', '.join(sorted(profiles))}") from None
