"""Pulumi's mocks for the stacks' tests: every registered resource recorded with its inputs, outputs settled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi


@dataclass
class Recorded:
    """One resource the program registered: its type token, name and inputs (camelCase, secrets unwrapped)."""

    typ: str
    name: str
    inputs: dict[str, Any]
    parent: str | None = None


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Mocks that record resources and answer the invokes in `calls` (token -> result)."""

    calls: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[Recorded] = field(default_factory=list)
    invoked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == "azure-native:eventhub:Namespace":
            name = args.inputs.get("namespaceName") or f"{args.name}-a1b2c3"
            outputs |= {"name": name, "serviceBusEndpoint": f"https://{name}.servicebus.windows.net:443/"}
        elif args.typ.startswith("azure-native:"):
            outputs.setdefault("name", args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invoked.append((args.token, dict(args.args)))
        return dict(self.calls.get(args.token, {})), []

    def of_type(self, typ: str) -> list[Recorded]:
        """Return the recorded resources of one type token, in registration order."""
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str) -> Recorded:
        """Return the one resource of `typ` named `name`."""
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, f"{typ} {name}: {len(found)} registered ({[r.name for r in self.of_type(typ)]})"
        return found[0]


@dataclass(frozen=True)
class Settled:
    """An output's value, and whether Pulumi keeps it secret."""

    value: Any
    secret: bool


def run_program(
    recorder: Recorder,
    program: Callable[[], Mapping[str, pulumi.Output[Any]]],
    *,
    project: str,
    config: Mapping[str, str],
    secret_keys: list[str],
) -> dict[str, Settled]:
    """Run `program` under `recorder` with `config` (keys without the project), return its outputs settled.

    The SDK runs on the thread's current event loop. A test that ran `asyncio.run` before leaves none
    behind, so each program gets a loop of its own, closed when it is done.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.set_mocks(recorder, project=project, stack="test", preview=False)
        pulumi.runtime.set_all_config(
            {f"{project}:{key}": value for key, value in config.items()}, [f"{project}:{key}" for key in secret_keys]
        )
        return _settled(program)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _settled(program: Callable[[], Mapping[str, pulumi.Output[Any]]]) -> dict[str, Settled]:
    """Run `program` with the mocks set, on the current loop; return its outputs settled."""
    settled: dict[str, Settled] = {}

    def body() -> asyncio.Future[None]:
        outputs = program()

        async def settle() -> None:
            for key, output in outputs.items():
                settled[key] = Settled(await output.future(), await output.is_secret())

        return asyncio.ensure_future(settle())

    pulumi.runtime.test(body)()  # type: ignore[no-untyped-call]  # the SDK's test runner is untyped
    return settled


# How Pulumi's wire format marks a secret value (pulumi.runtime.rpc): the mocks receive inputs so.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def is_secret(value: Any) -> bool:
    """Return whether an input value arrived marked secret."""
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """Return an input value with every secret marker removed (the plain data the provider would get)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def plain_strings(value: Any) -> list[str]:
    """Return every string of an input value that is not inside a secret."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *plain_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []
