"""EMQX's published OpenAPI as a referee, and `FakeEmqxApi`, a stateful stand-in checked by it.

No EMQX runs on these machines. Every request an EMQX client sends and every response it gets is
checked with openapi-core against EMQX 5.8.1's own OpenAPI description, read from
`shared/vendor/` beside the repository (never copied into it). The description carries
non-standard keys (`log_meta`) that a strict check of the document itself refuses, so the document
is not checked, only the traffic against it.

`FakeEmqxApi` is a hand-written stand-in named as such: it keeps the objects the operator manages
(authorization rules, connectors, actions, two settings) in memory, answers as the description
says, and checks every exchange with the same validator; a test that breaks the description
fails there. It is an `httpx.MockTransport` handler: `FakeEmqxApi().transport()`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_NAME = "emqx-5.8.1-ce-openapi.json"
BASE = "/api/v5"
RULES = f"{BASE}/authorization/sources/built_in_database/rules"


DEFAULT_LISTENER: dict[str, Any] = {
    "id": "ssl:default",
    "type": "ssl",
    "bind": "0.0.0.0:8883",
    "running": True,
    "ssl_options": {"verify": "verify_none", "fail_if_no_peer_cert": False, "cacertfile": "etc/certs/cacert.pem"},
}


def spec_path() -> Path:
    """Return the vendored EMQX OpenAPI: `$PLANTLINE_SHARED/vendor/...`, else `shared/` beside the checkout."""
    shared = os.environ.get("PLANTLINE_SHARED")
    root = Path(__file__).resolve().parents[4]
    candidates = [Path(shared)] if shared else []
    candidates += [root.parent / "shared", root.parent.parent / "shared"]
    for candidate in candidates:
        path = candidate / "vendor" / SPEC_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SPEC_NAME} not found under {', '.join(map(str, candidates))}")


@cache
def emqx_openapi() -> OpenAPI:
    """Return EMQX 5.8.1's OpenAPI, loaded once per process (it takes seconds)."""
    return OpenAPI.from_file_path(str(spec_path()), config=Config(spec_validator_cls=None))


@dataclass
class _Request:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


def _adapt(request: httpx.Request) -> _Request:
    return _Request(
        host_url=f"{request.url.scheme}://{request.url.netloc.decode()}",
        path=request.url.path,
        method=request.method.lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())), header=Headers(dict(request.headers))
        ),
        content_type=request.headers.get("content-type", "application/json"),
        body=request.content or None,
    )


class SpecViolation(AssertionError):
    """A request or response that EMQX's OpenAPI does not allow."""


def validate_request(request: httpx.Request) -> None:
    """Raise SpecViolation unless EMQX's OpenAPI allows the request."""
    try:
        emqx_openapi().validate_request(_adapt(request))
    except OpenAPIError as exc:
        raise SpecViolation(f"{request.method} {request.url.path}: request: {_why(exc)}") from None


def validate_response(request: httpx.Request, response: httpx.Response) -> None:
    """Raise SpecViolation unless EMQX's OpenAPI allows the response to the request."""
    adapted = _Response(
        response.status_code,
        response.headers.get("content-type", "application/json"),
        Headers(dict(response.headers)),
        response.content or None,
    )
    try:
        emqx_openapi().validate_response(_adapt(request), adapted)
    except OpenAPIError as exc:
        raise SpecViolation(
            f"{request.method} {request.url.path}: response {response.status_code}: {_why(exc)}"
        ) from None


def _why(exc: Exception) -> str:
    causes = [str(exc)]
    for attr in ("schema_errors", "__cause__"):
        more = getattr(exc, attr, None)
        if isinstance(more, list | tuple):
            causes += [str(m)[:400] for m in more]
        elif more is not None:
            causes.append(str(more)[:400])
    return " | ".join(causes)


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _error(status: int, code: str, message: str) -> httpx.Response:
    return _json(status, {"code": code, "message": message})


@dataclass
class FakeEmqxApi:
    """A stateful stand-in for EMQX's REST API (the parts PlantLine uses), validated against its OpenAPI."""

    key: str = "plantline-test-key"
    secret: str = "plantline-test-secret"
    source: dict[str, Any] | None = field(default_factory=lambda: {"type": "built_in_database", "enable": True})
    zone: dict[str, Any] = field(
        default_factory=lambda: {"mqtt": {"peer_cert_as_username": "cn", "max_qos_allowed": 2}}
    )
    users: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    all_rules: list[dict[str, Any]] = field(default_factory=list)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    listeners: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"ssl:default": copy.deepcopy(DEFAULT_LISTENER)}
    )
    ca_files: dict[str, str] = field(default_factory=dict)  # listener -> the PEM saved behind its cacertfile
    rejects: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, path) -> EMQX's message
    log: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # when served over HTTP (`serving`)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # held while serving
    validate: bool = True

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request; every request, and every answer the description declares, is validated."""
        if self.validate:
            validate_request(request)
        self.log.append((request.method, request.url.path))
        if not self._authorized(request):
            # The description declares no 401 for these paths; EMQX answers so all the same.
            return _error(401, "BAD_API_KEY_OR_SECRET", "Check api_key/api_secret")
        response = self._answer(request)
        response.request = request
        if self.validate:
            validate_response(request, response)
        return response

    def _authorized(self, request: httpx.Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        return base64.b64decode(token).decode() == f"{self.key}:{self.secret}"

    def _answer(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, unquote(request.url.path)
        message = self.rejects.get((method, path))
        if message is not None:
            return _error(400, "BAD_REQUEST", message)
        body = json.loads(request.content) if request.content else None
        for prefix, handler in self._routes():
            if path == prefix or path.startswith(prefix + "/"):
                return handler(method, path[len(prefix) :].lstrip("/"), body, request)
        return _error(404, "NOT_FOUND", f"no route {path}")

    def _routes(self) -> list[tuple[str, Callable[[str, str, Any, httpx.Request], httpx.Response]]]:
        return [
            (f"{RULES}/users", self._users),
            (f"{RULES}/all", self._all),
            (f"{BASE}/authorization/sources", self._sources),
            (f"{BASE}/configs/global_zone", self._zone),
            (f"{BASE}/connectors", self._connectors),
            (f"{BASE}/actions", self._actions),
            (f"{BASE}/listeners", self._listeners),
        ]

    # -- authorization ----------------------------------------------------------------------------

    def _users(self, method: str, rest: str, body: Any, request: httpx.Request) -> httpx.Response:
        if not rest and method == "GET":
            like = request.url.params.get("like_username", "")
            page, limit = int(request.url.params.get("page", 1)), int(request.url.params.get("limit", 100))
            names = sorted(n for n in self.users if like in n)
            chosen = names[(page - 1) * limit : page * limit]
            data = [{"username": n, "rules": copy.deepcopy(self.users[n])} for n in chosen]
            meta = {"page": page, "limit": limit, "count": len(names), "hasnext": page * limit < len(names)}
            return _json(200, {"data": data, "meta": meta})
        if not rest and method == "POST":
            for item in body:
                if item["username"] in self.users:
                    return _error(409, "ALREADY_EXISTS", "ALREADY_EXISTS")
            for item in body:
                self.users[item["username"]] = copy.deepcopy(item.get("rules", []))
            return httpx.Response(204)
        if rest not in self.users:
            return _error(404, "NOT_FOUND", "Not Found")
        if method == "GET":
            return _json(200, {"username": rest, "rules": copy.deepcopy(self.users[rest])})
        if method == "PUT":
            self.users[rest] = copy.deepcopy(body.get("rules", []))
        else:
            del self.users[rest]
        return httpx.Response(204)

    def _all(self, method: str, _rest: str, body: Any, _r: httpx.Request) -> httpx.Response:
        if method == "GET":
            return _json(200, {"rules": copy.deepcopy(self.all_rules)})
        self.all_rules = copy.deepcopy(body.get("rules", [])) if method == "POST" else []
        return httpx.Response(204)

    def _sources(self, method: str, rest: str, body: Any, _r: httpx.Request) -> httpx.Response:
        if method == "POST" and not rest:
            self.source = {"max_rules": 100, **body}
            return httpx.Response(204)
        if rest != "built_in_database" or self.source is None:
            return _error(404, "NOT_FOUND", "Not found")
        if method == "GET":
            return _json(200, copy.deepcopy(self.source))
        self.source = {**self.source, **body}
        return httpx.Response(204)

    def _zone(self, method: str, _rest: str, body: Any, _r: httpx.Request) -> httpx.Response:
        if method == "PUT":  # EMQX merges the sections given into the zone it has
            for section, values in body.items():
                self.zone[section] = {**self.zone.get(section, {}), **values}
        return _json(200, copy.deepcopy(self.zone))

    def _listeners(self, method: str, rest: str, body: Any, _r: httpx.Request) -> httpx.Response:
        if rest not in self.listeners:
            return _error(404, "BAD_LISTENER_ID", "Listener not found")
        listener = self.listeners[rest]
        if method == "PUT":  # EMQX merges the update into the listener it has
            tls = {**listener.get("ssl_options", {}), **body.get("ssl_options", {})}
            if str(tls.get("cacertfile", "")).startswith("-----BEGIN"):
                self.ca_files[rest] = tls["cacertfile"]
                tls["cacertfile"] = f"data/certs/listeners/ssl/{rest.partition(':')[2]}/cacert"
            self.listeners[rest] = {
                **listener,
                **{k: v for k, v in body.items() if k != "ssl_options"},
                "ssl_options": tls,
            }
        return _json(200, copy.deepcopy(self.listeners[rest]))

    # -- connectors and actions -------------------------------------------------------------------

    def _connectors(self, method: str, rest: str, body: Any, _r: httpx.Request) -> httpx.Response:
        if method == "GET" and not rest:
            return _json(200, [self._connector_shown(c) for c in self.connectors.values()])
        if method == "POST":
            if body["name"] in self.connectors:
                return _error(400, "ALREADY_EXISTS", "Connector already exists")
            self.connectors[body["name"]] = self._stored(body)
            return _json(201, self._connector_shown(self.connectors[body["name"]]))
        name = rest.removeprefix("mqtt:")
        if name not in self.connectors:
            return _error(404, "NOT_FOUND", "Connector not found")
        if method == "DELETE":
            users = sorted(a["name"] for a in self.actions.values() if a["connector"] == name)
            if users:
                return _error(400, "BAD_REQUEST", f"Cannot delete connector while there are active channels: {users}")
            del self.connectors[name]
            return httpx.Response(204)
        if method == "PUT":
            self.connectors[name] = self._stored({"type": "mqtt", "name": name, **body})
        return _json(200, self._connector_shown(self.connectors[name]))

    def _actions(self, method: str, rest: str, body: Any, _r: httpx.Request) -> httpx.Response:
        if method == "GET" and not rest:
            return _json(200, [self._shown(a) for a in self.actions.values()])
        if method in ("POST", "PUT") and body["connector"] not in self.connectors:
            return _error(400, "BAD_REQUEST", f"connector_not_found: {body['connector']}")
        if method == "POST":
            if body["name"] in self.actions:
                return _error(400, "ALREADY_EXISTS", "Action already exists")
            self.actions[body["name"]] = copy.deepcopy(body)
            return _json(201, self._shown(self.actions[body["name"]]))
        name = rest.removeprefix("mqtt:")
        if name not in self.actions:
            return _error(404, "NOT_FOUND", "Action not found")
        if method == "DELETE":
            del self.actions[name]
            return httpx.Response(204)
        if method == "PUT":
            self.actions[name] = {"type": "mqtt", "name": name, **copy.deepcopy(body)}
        return _json(200, self._shown(self.actions[name]))

    @staticmethod
    def _stored(body: dict[str, Any]) -> dict[str, Any]:
        """Keep a connector as EMQX does: PEM in the body is saved to files, the body names the files."""
        stored = copy.deepcopy(body)
        ssl = stored.get("ssl") or {}
        for key in ("cacertfile", "certfile", "keyfile"):
            if str(ssl.get(key, "")).startswith("-----BEGIN"):
                ssl[key] = f"data/certs/connectors/mqtt/{stored['name']}/{key}"
        return stored

    def _connector_shown(self, connector: dict[str, Any]) -> dict[str, Any]:
        """Return a connector as EMQX shows it: with the names of the actions that use it."""
        using = sorted(a["name"] for a in self.actions.values() if a["connector"] == connector["name"])
        return {**self._shown(connector), "actions": using}

    @staticmethod
    def _shown(item: dict[str, Any]) -> dict[str, Any]:
        return {
            **copy.deepcopy(item),
            "status": "connected",
            "node_status": [{"node": "emqx@127.0.0.1", "status": "connected"}],
        }


@contextlib.contextmanager
def serving(fake: FakeEmqxApi) -> Iterator[str]:
    """Serve `fake` over HTTP on a loopback port; yield its URL (for programs that take `--emqx URL`).

    Each request is answered under `fake.lock`; a test that reads or edits the fake meanwhile holds it too.
    """

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = httpx.Request(
                self.command,
                f"http://{self.headers.get('host', '127.0.0.1')}{self.path}",
                headers=dict(self.headers),
                content=self.rfile.read(length) if length else b"",
            )
            try:
                with fake.lock:
                    response = fake.handle(request)
            except SpecViolation as exc:  # kept for the test to assert on; the client sees a 500
                fake.violations.append(str(exc))
                response = _error(500, "SPEC_VIOLATION", str(exc))
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("content-length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
