"""A real asyncua OPC UA server that serves a simulated machine: `OpcUaMachineServer`.

Every canonical signal of the `MachineModel` is a variable `ns=2;s=<Machine>.<signal>`
(e.g. `ns=2;s=Filler.state.run`) under the object `ns=2;s=<Machine>`, written from the model
every `update_interval_s` with the wall-clock time as SourceTimestamp. Only values that changed
are written, so an idle machine's counters do not notify. Analogue values carry EngineeringUnits
and the process values an EURange property (0..150 degC, 0..10 bar, 0..100 %).

For tests: `write(signal, value)` holds a node at a value, `force_bad(signal, status_code)` at a
status (Bad or Uncertain), `release(signal)` gives it back to the model; `read(signal)` and
`publishing_intervals()` show what the server holds.

Beyond plain asyncua, the simulator implements the percent deadband of OPC UA Part 8 (asyncua
2.1 accepts DeadbandType Percent but does not apply it): on a variable with an EURange the
server turns it into the equivalent absolute deadband, and on one without it refuses the
monitored item with BadDeadbandFilterInvalid, as a conforming server does. Left as asyncua
does them: the requested sampling interval is ignored (nodes notify on every write); a
deadband compares with the previous value, not the last one reported; under a deadband a
status change that keeps the value is not reported, and a Bad status not at all.

An oracle for the OPC UA source: the server is asyncua's own, an implementation independent of
the source's subscription handling; this module only writes the model into it. Only the hosting
(model clock, command line) is shared with the other simulators, in `hosting`.

Run it alone with `python -m plantline.connectors.sim.opcua_server --port 4840 --seed 1`; it binds
127.0.0.1 unless told otherwise with --host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaprotocol_auto import DataChangeFilter as DecodedDataChangeFilter

from plantline.connectors.certificates import application_uri, is_pem
from plantline.connectors.samples import Value
from plantline.connectors.sim import hosting
from plantline.connectors.sim.hosting import HostOptions, MachineHost, config_tag
from plantline.connectors.sim.machine import EU_RANGES, SIGNAL_TYPES, SIGNALS, UNITS

_log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:plantline:sim"
_VARIANT_TYPES: Mapping[str, ua.VariantType] = {
    signal: ua.VariantType.Boolean
    if kind is bool
    else (ua.VariantType.Double if kind is float else ua.VariantType.UInt32)
    for signal, kind in SIGNAL_TYPES.items()
} | {"fault.code": ua.VariantType.Int32}
_DATATYPES: Mapping[ua.VariantType, str] = {
    ua.VariantType.Boolean: "bool",
    ua.VariantType.Double: "double",
    ua.VariantType.UInt32: "uint32",
    ua.VariantType.Int32: "int32",
}
# What a conforming server answers when a percent deadband has no EURange to refer to.
_PERCENT_WITHOUT_EURANGE = StatusCodes.BadDeadbandFilterInvalid
_UNSET = object()


def node_id(machine: str, signal: str) -> str:
    """Return the NodeId string of a machine's signal, e.g. `ns=2;s=Filler.state.run`."""
    return f"ns=2;s={machine}.{signal}"


def layout_tags(machine: str = hosting.DEFAULT_MACHINE) -> list[dict[str, Any]]:
    """Return the `tags:` of a connector config that reads every signal of the machine `machine`."""
    return [
        config_tag(signal, node_id(machine, signal), _DATATYPES[_VARIANT_TYPES[signal]], unit=UNITS.get(signal))
        for signal in SIGNALS
    ]


class _UserTable(UserManager):
    """Username/password sign-in against a fixed table (for tests and demos)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        expected = self._users.get(username or "")
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


class OpcUaMachineServer(MachineHost):
    """An asyncua server serving one simulated machine; use as `async with`.

    `security=False` offers only the None policy; `security=True` offers only Basic256Sha256
    Sign and SignAndEncrypt with `certificate`/`private_key` (DER or PEM, sniffed from the
    content). With `trust_dir` (a directory of trusted CA/client certificates in DER or PEM,
    optionally with `crl_dir`) client certificates must chain to it; without it any client
    certificate is accepted. With `users`, sessions must sign in with one of those usernames
    and passwords; otherwise they are anonymous.

    Pass `model` to keep serving an existing model (a server "restart" that keeps the
    machine's counters, as a PLC retains them); otherwise a new one is built from `seed`.
    `speed` > 1 runs the model's time faster than the wall clock (demos, tests).
    """

    def __init__(
        self,
        port: int,
        *,
        security: bool = False,
        certificate: Path | None = None,
        private_key: Path | None = None,
        application_uri: str | None = None,
        trust_dir: Path | None = None,
        crl_dir: Path | None = None,
        users: Mapping[str, str] | None = None,
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__(port, **options)
        if security and (certificate is None or private_key is None):
            raise ValueError("security=True needs certificate and private_key")
        self.security = security
        self.addressing = node_id(self.machine, "<signal>")  # how its signals are addressed, for the ready line
        self.certificate = certificate
        self.private_key = private_key
        self.application_uri = application_uri
        self.trust_dir = trust_dir
        self.crl_dir = crl_dir
        self.users = dict(users) if users else None
        self._server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._eu_ranges: dict[ua.NodeId, tuple[float, float]] = {}
        self._last: dict[str, Value] = {}
        self._held: dict[str, int] = {}  # signal -> status, while a test holds it
        self._updater: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The endpoint URL clients connect to."""
        return f"opc.tcp://{self.host}:{self.port}/"

    def node_id(self, signal: str) -> str:
        """Return the NodeId string of one of this machine's signals."""
        return node_id(self.machine, signal)

    def tags(self) -> list[dict[str, Any]]:
        """Return the config tags reading every signal of this machine (see `layout_tags`)."""
        return layout_tags(self.machine)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space, write the model's current values, and listen."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        users = _UserTable(self.users) if self.users else None
        server = Server(user_manager=users)
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"PlantLine simulated {self.machine}")
        await self._configure_security(server)
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        else:
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        index = await server.register_namespace(NAMESPACE_URI)
        if index != 2:
            raise RuntimeError(f"expected the simulator's namespace at index 2, got {index}")
        await self._build_address_space(server)
        self._install_percent_deadband(server)
        self._server = server
        self._last.clear()
        await self._write(self.model.step(self._model_now()))
        await server.start()
        self._updater = asyncio.create_task(self._update_loop(), name=f"sim-opcua:{self.machine}:{self.port}")
        _log.info("simulated %s serving on %s", self.machine, self.url)

    async def stop(self) -> None:
        """Stop updating and close every client connection; the model is kept."""
        if self._updater is not None:
            self._updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._updater
            self._updater = None
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def write(self, signal: str, value: Value) -> None:
        """Hold `signal` at `value` (status Good), bypassing the model until `release(signal)`."""
        self._held[signal] = StatusCodes.Good
        self._last[signal] = value
        await self._write_one(signal, value, StatusCodes.Good, self._timestamp())

    async def force_bad(self, signal: str, status_code: int) -> None:
        """Report `signal` with `status_code` (e.g. BadSensorFailure) until `release(signal)`.

        Any StatusCode works. With an Uncertain one the last value stays; with a Bad one the
        server holds no value (Part 4, 7.7.1; asyncua nulls it). asyncua 2.1 drops the Bad
        notification of an item monitored with a deadband (its deadband check fails on the
        null value), so force statuses on nodes monitored without one.
        """
        self._held[signal] = status_code
        await self._write_one(signal, self._last.get(signal), status_code, self._timestamp())

    async def release(self, signal: str) -> None:
        """Report `signal` from the model again, with status Good, starting now."""
        if self._held.pop(signal, None) is not None:
            value = self.model.values()[signal]
            self._last[signal] = value
            await self._write_one(signal, value, StatusCodes.Good, self._timestamp())

    def read(self, signal: str) -> ua.DataValue:
        """Return the DataValue the server holds for `signal` right now."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server.read_attribute_value(self._nodes[signal])

    def publishing_intervals(self) -> list[float]:
        """Return the revised publishing interval (ms) of every subscription clients hold now."""
        if self._server is None:
            return []
        subscriptions = self._server.iserver.subscription_service.subscriptions.values()
        return sorted(float(sub.data.RevisedPublishingInterval) for sub in subscriptions)

    # -- internals --------------------------------------------------------------------------------

    def _timestamp(self) -> ua.DateTime:
        return ua.DateTime.fromtimestamp(self._clock(), UTC)

    async def _configure_security(self, server: Server) -> None:
        if not self.security:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            await server.set_application_uri(self.application_uri or f"urn:plantline:sim:{self.machine}")
            return
        if self.certificate is None or self.private_key is None:  # checked in __init__ already
            raise ValueError("security=True needs certificate and private_key")
        certificate = self.certificate.read_bytes()
        key = self.private_key.read_bytes()
        uri = self.application_uri or application_uri(certificate) or f"urn:plantline:sim:{self.machine}"
        await server.set_application_uri(uri)
        server.set_security_policy(
            [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        )
        await server.load_certificate(certificate, format="pem" if is_pem(certificate) else "der")
        await server.load_private_key(key, format="pem" if is_pem(key) else "der")
        if self.trust_dir is not None:
            store = TrustStore([self.trust_dir], [self.crl_dir] if self.crl_dir else [])
            await store.load()
            validator = CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
            )
            server.set_certificate_validator(validator.validate)

    async def _build_address_space(self, server: Server) -> None:
        machine = await server.nodes.objects.add_object(f"ns=2;s={self.machine}", f"2:{self.machine}")
        initial = self.model.values()
        for signal in SIGNALS:
            variant = ua.Variant(initial[signal], _VARIANT_TYPES[signal])
            node = await machine.add_variable(self.node_id(signal), f"2:{signal}", variant)
            self._nodes[signal] = node.nodeid
            if signal in UNITS:
                text = ua.LocalizedText(UNITS[signal])
                unit = ua.EUInformation(DisplayName=text, Description=text)
                await node.add_property(2, "EngineeringUnits", unit)
            if signal in EU_RANGES:
                low, high = EU_RANGES[signal]
                await node.add_property(2, "EURange", ua.Range(Low=low, High=high))
                self._eu_ranges[node.nodeid] = (low, high)

    def _install_percent_deadband(self, server: Server) -> None:
        service = server.iserver.subscription_service
        create = service.create_monitored_items
        eu_ranges = self._eu_ranges

        # A decoded filter is the generated DataChangeFilter, not its hand-written subclass
        # `ua.DataChangeFilter`, so test against the generated one.
        async def create_with_percent_deadband(params: ua.CreateMonitoredItemsParameters) -> list[Any]:
            refused: dict[int, ua.MonitoredItemCreateResult] = {}
            forwarded = []
            for position, item in enumerate(params.ItemsToCreate):
                flt = item.RequestedParameters.Filter
                if isinstance(flt, DecodedDataChangeFilter) and flt.DeadbandType == ua.DeadbandType.Percent:
                    span = eu_ranges.get(item.ItemToMonitor.NodeId)
                    if span is None:
                        result = ua.MonitoredItemCreateResult()
                        result.StatusCode = ua.StatusCode(ua.UInt32(_PERCENT_WITHOUT_EURANGE))
                        refused[position] = result
                        continue
                    absolute = flt.DeadbandValue / 100.0 * (span[1] - span[0])
                    item.RequestedParameters.Filter = replace(
                        flt, DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=absolute
                    )
                forwarded.append(item)
            if not refused:
                return list(await create(params))
            params.ItemsToCreate = forwarded
            created = iter(await create(params) if forwarded else [])
            return [refused[i] if i in refused else next(created) for i in range(len(refused) + len(forwarded))]

        # An instance attribute shadows the method: this server's sessions only.
        service.create_monitored_items = create_with_percent_deadband  # type: ignore[method-assign]

    async def _update_loop(self) -> None:
        while True:
            await asyncio.sleep(self.update_interval_s)
            await self._write(self.model.step(self._model_now()))

    async def _write(self, values: Mapping[str, Value]) -> None:
        timestamp = self._timestamp()
        for signal, value in values.items():
            if signal in self._held or self._last.get(signal, _UNSET) == value:
                continue
            self._last[signal] = value
            await self._write_one(signal, value, StatusCodes.Good, timestamp)
        self.updates += 1

    async def _write_one(self, signal: str, value: Value | None, status: int, timestamp: ua.DateTime) -> None:
        if self._server is None:
            return
        variant = ua.Variant(value, _VARIANT_TYPES[signal]) if value is not None else ua.Variant()
        datavalue = ua.DataValue(
            variant, ua.StatusCode(ua.UInt32(status)), SourceTimestamp=timestamp, ServerTimestamp=timestamp
        )
        await self._server.write_attribute_value(self._nodes[signal], datavalue)


# -- standalone ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until SIGINT or SIGTERM."""
    parser = hosting.simulator_parser(
        "opcua_server", "OPC UA (asyncua)", "--port 4840 --seed 1 --machine Filler", "object and NodeId prefix"
    )
    parser.add_argument("--security", action="store_true", help="offer only Basic256Sha256 Sign/SignAndEncrypt")
    parser.add_argument("--certificate", type=Path, help="server certificate (DER or PEM)")
    parser.add_argument("--private-key", type=Path, help="server private key (DER or PEM, unencrypted)")
    parser.add_argument("--trust-dir", type=Path, help="directory of trusted client CA certificates")
    hosting.serve_until_signalled(
        parser,
        argv,
        lambda args: OpcUaMachineServer(
            args.port,
            security=args.security,
            certificate=args.certificate,
            private_key=args.private_key,
            trust_dir=args.trust_dir,
            **hosting.host_options(args),
        ),
    )


if __name__ == "__main__":
    main()
