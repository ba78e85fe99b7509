"""The EMQX REST API v5 client (httpx, async): read a line's objects, plan, and apply the plan.

The only module that speaks HTTP to EMQX. `EmqxClient.read` reads what the line owns
(`emqx_model` says how ownership is recognised), `emqx_model.plan` computes the changes, and
`EmqxClient.apply` sends one request per change. `EmqxBroker` wraps it for the synchronous
reconcile pipeline. The API key and secret authenticate every request (HTTP basic) and are never
logged, printed or put into an error.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from plantline.operator.api import PlantLine
from plantline.operator.emqx_model import (
    PEER_CERT_AS_USERNAME,
    BridgeMaterial,
    BrokerRejected,
    BrokerUnauthorized,
    BrokerUnreachable,
    Change,
    EmqxState,
    LineRef,
    ListenerWant,
    Result,
    deny_filters,
    desired_state,
    merged_all_rules,
    owned_default_deny,
    owns_named,
    owns_user,
    plan,
)

API_PREFIX = "/api/v5"
TIMEOUT_S = 10.0
PAGE_LIMIT = 1000
RULES = "/authorization/sources/built_in_database/rules"
# Each reconcile runs its own event loop in its own worker thread: a thread lock orders them.
ALL_LIST_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Credentials:
    """An EMQX API key and its secret; the secret never appears in repr or str."""

    key: str
    secret: str = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        """Return the credentials of a file holding `KEY:SECRET` (as EMQX's bootstrap file does)."""
        key, sep, secret = path.read_text().strip().partition(":")
        if not sep or not key or not secret:
            raise ValueError(f"{path}: expected one line KEY:SECRET")
        return cls(key, secret)


class EmqxClient:
    """One EMQX cluster's REST API, at `url` (e.g. `http://emqx:18083`); use as an async context manager."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        api_path: str = API_PREFIX,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/") + api_path,
            auth=httpx.BasicAuth(credentials.key, credentials.secret),
            timeout=TIMEOUT_S,
            transport=transport,
        )
        self.requests = 0
        self._deny_filters: set[str] = set()  # the line's edge-node filters, as the last read found them

    async def __aenter__(self) -> EmqxClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, body: Any = None, missing_ok: bool = False) -> Any:
        """Return the decoded JSON answer (None for 204 or a 404 when `missing_ok`); raise a BrokerError."""
        self.requests += 1
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise BrokerUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403):
            raise BrokerUnauthorized(f"{method} {path}: HTTP {response.status_code}: the API key was refused")
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise BrokerRejected(f"{method} {path}: HTTP {response.status_code}: {_message(response)}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise BrokerRejected(f"{method} {path}: HTTP {response.status_code}: the answer is not JSON: "
                                 f"is {self._http.base_url} EMQX's REST API?") from None  # fmt: skip

    # -- reading ----------------------------------------------------------------------------------

    async def read(
        self,
        ref: LineRef,
        line: PlantLine | None,
        *,
        identities: Sequence[str] = (),
        actions: Sequence[str] = (),
        listener: str | None = None,
    ) -> EmqxState:
        """Return what EMQX holds of the line's: its users, default deny, connector, actions, settings.

        `identities` are the user names the line wants: one of them held by another owner is reported
        in `foreign_users`. `actions` are the action names it wants; with those its connector lists,
        they are read by name, so a reconcile reads the line's own objects, not every line's. With
        `listener`, its TLS options are read too (a listener that does not exist is Rejected).
        """
        state = EmqxState()
        source = await self._call("GET", "/authorization/sources/built_in_database", missing_ok=True)
        state.source_enabled = None if source is None else bool(source.get("enable", True))
        zone = await self._call("GET", "/configs/global_zone")
        state.peer_cert_as_username = str((zone.get("mqtt") or {}).get("peer_cert_as_username", "disabled"))
        for user in await self._users(line):
            name = str(user["username"])
            if owns_user(user, ref):
                state.users[name] = user
            elif name in identities:
                state.foreign_users.add(name)
        self._deny_filters = deny_filters(line, list(state.users.values()))
        everyone = await self._call("GET", f"{RULES}/all")
        state.default_deny = owned_default_deny(everyone.get("rules") or [], self._deny_filters)
        await self._read_bridge(state, ref, actions)
        if listener is not None:
            found = await self._call("GET", f"/listeners/{quote(listener, safe='')}", missing_ok=True)
            if found is None:
                raise BrokerRejected(f"GET /listeners/{listener}: EMQX has no such listener for the line's clients")
            state.listener_tls = dict(found.get("ssl_options") or {})
        return state

    async def _read_bridge(self, state: EmqxState, ref: LineRef, actions: Sequence[str]) -> None:
        """Read the line's connector, then each action it wants or its connector lists, by name."""
        names = set(actions)
        connector = await self._call("GET", f"/connectors/mqtt:{quote(ref.upstream, safe='')}", missing_ok=True)
        if connector is not None and connector.get("type") == "mqtt" and owns_named(connector, ref):
            state.connectors[ref.upstream] = connector
            names.update(str(a).removeprefix("mqtt:") for a in connector.get("actions") or [])
        for name in sorted(n for n in names if n.startswith(ref.prefix)):
            action = await self._call("GET", f"/actions/mqtt:{quote(name, safe='')}", missing_ok=True)
            if action is not None and action.get("type") == "mqtt" and owns_named(action, ref):
                state.actions[name] = action

    async def _users(self, line: PlantLine | None) -> list[dict[str, Any]]:
        """Return the users whose name contains the line's identity prefix (all users without a spec)."""
        like = f"&like_username={quote(f'{line.spec.site}-{line.spec.line}-')}" if line is not None else ""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = await self._call("GET", f"{RULES}/users?page={page}&limit={PAGE_LIMIT}{like}")
            data = answer.get("data") or []
            found.extend(data)
            meta = answer.get("meta") or {}
            if len(data) < PAGE_LIMIT or not meta.get("hasnext", len(data) == PAGE_LIMIT):
                return found
            page += 1

    # -- writing ----------------------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change]) -> None:
        """Send the changes in order, one request each but one for all new users together.

        The default deny merges into the all-list that other owners share, taking out the line's
        rules as the last `read` found them.
        """
        new_users = [c.body for c in changes if c.kind == "user" and c.operation == "create"]
        for change in changes:
            if change.kind == "user" and change.operation == "create":
                if new_users:
                    await self._call("POST", f"{RULES}/users", body=new_users)
                    new_users = []
                continue
            await self._apply_one(change)

    async def _apply_one(self, change: Change) -> None:
        kind, operation = change.kind, change.operation
        if kind == "user":
            path = f"{RULES}/users/{quote(change.name, safe='')}"
            await self._call("PUT" if operation == "change" else "DELETE", path, body=change.body)
        elif kind in ("connector", "action"):
            await self._apply_named(change)
        elif kind == "default-deny":
            # The all-list is one object that every line rewrites whole: two lines of this operator
            # must not interleave their read and write, or one line's rules would be lost.
            with ALL_LIST_LOCK:
                everyone = await self._call("GET", f"{RULES}/all")
                rules = everyone.get("rules") or []
                merged = merged_all_rules(rules, owned_default_deny(rules, self._deny_filters), change.body or [])
                await self._call("POST", f"{RULES}/all", body={"rules": merged})
        elif kind == "source":
            if operation == "create":
                await self._call("POST", "/authorization/sources", body=change.body)
            else:
                await self._call("PUT", "/authorization/sources/built_in_database", body=change.body)
        elif kind == "listener":  # a partial update, merged like the zone's
            await self._call("PUT", f"/listeners/{quote(change.name, safe='')}", body=change.body)
        else:  # EMQX merges a partial zone into the one it has: only the field the line needs is sent
            await self._call(
                "PUT", "/configs/global_zone", body={"mqtt": {"peer_cert_as_username": PEER_CERT_AS_USERNAME}}
            )

    async def _apply_named(self, change: Change) -> None:
        """Create, change or delete a connector or an action."""
        collection = "/connectors" if change.kind == "connector" else "/actions"
        path = f"{collection}/mqtt:{quote(change.name, safe='')}"
        if change.operation == "change" and change.kind == "action":
            # EMQX's description makes every MQTT action's PUT body ambiguous (it is valid under both
            # the HTTP and the MQTT schema of a oneOf): the action is made again instead.
            await self._call("DELETE", path)
            await self._call("POST", collection, body=change.body)
        elif change.operation == "change":
            await self._call("PUT", path, body={k: v for k, v in change.body.items() if k not in ("type", "name")})
        elif change.operation == "create":
            await self._call("POST", collection, body=change.body)
        else:
            await self._call("DELETE", path)


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, Mapping):
        return f"{data.get('code', '')}: {data.get('message', '')}".strip(": ")
    return str(data)[:500]


async def reconcile_line(
    client: EmqxClient,
    line: PlantLine,
    ref: LineRef,
    material: BridgeMaterial | None,
    *,
    dry_run: bool = False,
    listener: ListenerWant | None = None,
) -> Result:
    """Read the line's objects, plan, and (unless `dry_run`) apply; return the plan."""
    desired = desired_state(line, ref, material, listener)
    current = await client.read(
        ref,
        line,
        identities=list(desired.users),
        actions=list(desired.actions),
        listener=listener.id if listener else None,
    )
    if current.foreign_users:
        taken = ", ".join(sorted(current.foreign_users))
        raise BrokerRejected(
            f"authorization rules for {taken} exist in EMQX and are not owned by PlantLine "
            f"{ref.namespace}/{ref.name}; they are left alone"
        )
    changes = plan(desired, current, certificate_known=material is not None)
    if not dry_run:
        await client.apply(changes)
    return Result(changes, client.requests)


async def remove_line(client: EmqxClient, ref: LineRef, line: PlantLine | None) -> Result:
    """Delete everything the line owns in EMQX (the cluster-wide settings stay)."""
    current = await client.read(ref, line)
    empty = EmqxState(source_enabled=True, peer_cert_as_username=PEER_CERT_AS_USERNAME)
    changes = plan(empty, current)
    await client.apply(changes)
    return Result(changes, client.requests)


class EmqxBroker:
    """The reconcile pipeline's door to EMQX: synchronous calls, each on its own event loop and connection.

    With `listener` (e.g. `ssl:default`), each sync also ensures that listener is mutual TLS with
    the CA it is given; `options` are EmqxClient's (`transport`, `api_path`).
    """

    def __init__(self, url: str, credentials: Credentials, *, listener: str | None = None, **options: Any) -> None:
        self.url = url
        self._credentials = credentials
        self._listener = listener
        self._options = options

    def _client(self) -> EmqxClient:
        return EmqxClient(self.url, self._credentials, **self._options)

    def sync(self, line: PlantLine, ref: LineRef, material: BridgeMaterial | None, ca_pem: bytes) -> Result:
        listener = ListenerWant(self._listener, ca_pem) if self._listener else None

        async def run() -> Result:
            async with self._client() as client:
                return await reconcile_line(client, line, ref, material, listener=listener)

        return asyncio.run(run())

    def remove(self, ref: LineRef, line: PlantLine | None) -> Result:
        async def run() -> Result:
            async with self._client() as client:
                return await remove_line(client, ref, line)

        return asyncio.run(run())
