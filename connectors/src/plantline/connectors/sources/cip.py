"""The EtherNet/IP source: polls the tags of an Allen-Bradley Logix controller with pycomm3.

    async with CipSource(device) as source:
        async for batch in source.batches():
            ...

Endpoint: `cip://HOST[:PORT][/SLOT]`; the port defaults to 44818 and the slot of the
controller in its chassis to 0 (pycomm3's `HOST:PORT/SLOT` path).

Addresses are Logix tag names: `Filler_state_run`, `Program:Main.Count`, or one element of a
one-dimensional array, `Counts[3]`. Members of structures (`Udt.Member`), bits of integers
(`Word.3`), BOOL array elements (Logix packs them into DWORDs) and multi-dimensional elements
are refused with a clear error: each needs the controller's own type information.

Tag definitions come from the config, not from the controller. pycomm3's `LogixDriver` uploads
the controller's tag list when it opens, and needs it to read (the request size and the decoder
of every tag come from it). A controller simulator such as cpppo cannot serve that upload, and
a connector knows its tags' types anyway, so the driver is opened with `init_tags=False` and
given definitions built from each tag's declared datatype by `logix_tag_definitions`, the one
place that knows pycomm3's definition format (pycomm3's documentation itself suggests handing
a driver its tag definitions this way, `plc2._tags = plc1.tags`). The datatypes map as

    bool -> BOOL   int8 -> SINT   int16 -> INT    int32 -> DINT    int64 -> LINT
    uint8 -> USINT uint16 -> UINT uint32 -> UDINT uint64 -> ULINT
    float -> REAL  double -> LREAL string -> STRING

and a definition carries no instance id, so requests address tags by name (symbolic segments).
STRING is the CIP elementary STRING (a 16-bit length and the characters), which is what cpppo
serves; a ControlLogix STRING is a structure (DINT LEN, SINT DATA[82]) that pycomm3 decodes
only with the uploaded template, so it is not read correctly from a real controller this way.

Reads. Elements of one array that lie close together are read as one request (`Counts[2]{4}`),
and all requests of a poll go to one `LogixDriver.read`, which packs them into Multiple Service
Packets up to the connection size negotiated at Forward Open (4000 bytes with Large Forward
Open, else 500) and fragments replies too big for one packet. Each tag's reply has its own
CIP general status: a tag the controller refuses yields a bad sample with that status as
`protocol_code` (0x05: no such tag, 0x04: the path does not parse, 0xFF with extended status
0x2105: beyond the end of an array), and pycomm3 raising `CommError` means the connection is
lost. pycomm3 returns a status only as text, so `cip_status_of` maps its texts back to the code
(they are unique), and the log names the status with the project's own text (`cip_problem`):
pycomm3 calls the missing extended status of 0x04 and 0x05, the statuses of a missing tag,
"Extended status out of memory". An array run that fails is read element by element from then on.

Writes are not implemented. Known pycomm3 1.2.16 defect: a single-tag `write` sends its request
twice in one packet, which cpppo rejects ("General Error - Access beyond end of the object");
writes of several tags at once work. A future write path must not paper over it silently.

Threads, reconnection with backoff, report by exception: see `polling` (`PollingSource`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final, Unpack

from pycomm3 import LogixDriver
from pycomm3.cip import Array
from pycomm3.cip.data_types import DataTypes
from pycomm3.cip.status_info import SERVICE_STATUS
from pycomm3.tag import Tag as Pycomm3Tag

from plantline.connectors.addressing.cip import (
    CIP_TYPES,
    LogixAddress,
    parse_cip_endpoint,
    parse_logix_address,
)
from plantline.connectors.config import Device, Tag
from plantline.connectors.quality import CIP_SUCCESS, cip_describe, cip_quality
from plantline.connectors.samples import Quality
from plantline.connectors.sources.base import SourceOptions
from plantline.connectors.sources.polling import PollGroup, PollingSource, Reading

DEFAULT_MAX_GAP = 8  # array elements read in between two wanted ones, rather than another request
_PYTHON_TYPES: Final[dict[str, type]] = {"BOOL": bool, "REAL": float, "LREAL": float, "STRING": str}
_STATUS_OF_TEXT: Final[dict[str, int]] = {text: code for code, text in SERVICE_STATUS.items()}
_UNKNOWN_STATUS = re.compile(r"Unknown Error \(([0-9a-fA-F]{1,2})\)")


def cip_addresses(device: Device) -> tuple[LogixAddress, ...]:
    """Return every tag's Logix address; raise ValueError naming the tag (`tags[3].address: ...`)."""
    out = []
    for index, tag in enumerate(device.tags):
        try:
            address = parse_logix_address(tag.address)
            if tag.datatype not in CIP_TYPES:
                raise ValueError(f"datatype {tag.datatype!r} has no Logix type (supported: {', '.join(CIP_TYPES)})")
            if tag.datatype == "bool" and address.index is not None:
                raise ValueError(f"{tag.address!r}: BOOL array elements are not supported (Logix packs them in DWORDs)")
        except ValueError as exc:
            raise ValueError(f"tags[{index}].address: {exc}") from None
        out.append(address)
    return tuple(out)


def logix_tag_definitions(tags: Sequence[Tag]) -> dict[str, dict[str, Any]]:
    """Return pycomm3 `LogixDriver` tag definitions (its `tags` format) for `tags`' declared types.

    The one place that builds pycomm3 definitions (see the module docstring). An array tag gets
    one dimension of (highest index used + 1) elements: pycomm3 only uses the length to size
    and decode what is read. Raises ValueError naming the tag for an address or datatype that
    cannot be read this way, or for two tags that declare one Logix tag with different types.
    """
    found: dict[str, tuple[str, int, int]] = {}  # base -> (CIP type, elements (0: scalar), first tag)
    for index, tag in enumerate(tags):
        try:
            address = parse_logix_address(tag.address)
        except ValueError as exc:
            raise ValueError(f"tags[{index}].address: {exc}") from None
        cip_type = CIP_TYPES.get(tag.datatype)
        if cip_type is None:
            raise ValueError(f"tags[{index}].datatype: {tag.datatype!r} has no Logix type")
        elements = 0 if address.index is None else address.index + 1
        if address.base in found:
            known_type, known_elements, first = found[address.base]
            if known_type != cip_type or (known_elements == 0) != (elements == 0):
                raise ValueError(
                    f"tags[{index}].address: {address.base} is declared as "
                    f"{known_type}{'[]' if known_elements else ''} by tags[{first}] and as "
                    f"{cip_type}{'[]' if elements else ''} here"
                )
            found[address.base] = (cip_type, max(elements, known_elements), first)
            continue
        found[address.base] = (cip_type, elements, index)
    return {base: _definition(base, cip_type, elements) for base, (cip_type, elements, _) in found.items()}


def _definition(base: str, cip_type: str, elements: int) -> dict[str, Any]:
    type_class = DataTypes.get(cip_type)  # type: ignore[no-untyped-call]
    return {
        "tag_name": base,
        "instance_id": None,  # unknown without the upload: requests use the symbolic name
        "symbol_address": None,
        "symbol_object_address": None,
        "software_control": None,
        "external_access": "Read/Write",
        "alias": False,
        "tag_type": "atomic",
        "data_type": cip_type,
        "data_type_name": cip_type,
        "dim": 1 if elements else 0,
        "dimensions": [elements, 0, 0],
        "type_class": Array(length_=elements, element_type_=type_class) if elements else type_class,
    }


@dataclass(frozen=True)
class CipRead:
    """One request of a poll: `request` (pycomm3 syntax) and the tags it answers, with their offset."""

    request: str
    members: tuple[tuple[int, int], ...]  # (tag index, element offset in the reply; -1 for a scalar)


def plan_cip_reads(
    addresses: Sequence[LogixAddress],
    tags: Sequence[int],
    *,
    max_gap: int | None = DEFAULT_MAX_GAP,
    isolated: Collection[int] = frozenset(),
) -> list[CipRead]:
    """Return the requests that read `tags` (indexes into `addresses`), in a stable order.

    Scalar tags are one request each (pycomm3 packs them into Multiple Service Packets).
    Elements of one array at most `max_gap` apart become one run `Base[first]{count}`, unless
    `max_gap` is None or the tag is `isolated`. Two tags on one address share a request.
    """
    reads: list[CipRead] = []
    scalars: dict[str, list[int]] = {}
    elements: dict[str, list[tuple[int, int]]] = {}
    for tag in tags:
        address = addresses[tag]
        if address.index is None:
            scalars.setdefault(address.base, []).append(tag)
        else:
            elements.setdefault(address.base, []).append((address.index, tag))
    for base, members in scalars.items():
        reads.append(CipRead(base, tuple((tag, -1) for tag in members)))
    for base, indexed in elements.items():
        indexed.sort()
        run: list[tuple[int, int]] = []
        for index, tag in indexed:
            if (
                run
                and max_gap is not None
                and tag not in isolated
                and run[0][1] not in isolated
                and index - run[-1][0] <= max_gap + 1
            ):
                run.append((index, tag))
                continue
            if run:
                reads.append(_run_read(base, run))
            run = [(index, tag)]
        if run:
            reads.append(_run_read(base, run))
    return reads


def _run_read(base: str, run: Sequence[tuple[int, int]]) -> CipRead:
    first, last = run[0][0], run[-1][0]
    if first == last:
        return CipRead(f"{base}[{first}]", tuple((tag, -1) for _, tag in run))
    return CipRead(f"{base}[{first}]{{{last - first + 1}}}", tuple((tag, index - first) for index, tag in run))


def cip_status_of(error: str) -> int | None:
    """Return the CIP general status in a pycomm3 error text, or None if it names none.

    pycomm3 reports a refused request as `"<text of the status> - <extended status>"`, with
    the texts of `pycomm3.cip.status_info.SERVICE_STATUS`, which are unique.
    """
    head = error.split(" - ", 1)[0].strip()
    if head in _STATUS_OF_TEXT:
        return _STATUS_OF_TEXT[head]
    unknown = _UNKNOWN_STATUS.fullmatch(head)
    return int(unknown.group(1), 16) if unknown else None


# General statuses whose extended status pycomm3 names from a table that is wrong for them: it calls
# an absent extended status "Extended status out of memory" (0x0000).
_NO_EXTENDED_TEXT = frozenset({0x04, 0x05})


def cip_problem(code: int, error: str) -> str:
    """Return why a tag read failed: the general status in words, with pycomm3's extended text where it is right."""
    _, _, extended = error.partition(" - ")
    if not extended or code in _NO_EXTENDED_TEXT:
        return cip_describe(code)
    return f"{cip_describe(code)}; {' '.join(extended.split())}"


def reading_of(tag: int, datatype: str, reply: Pycomm3Tag, offset: int) -> Reading:
    """Return the Reading of one tag from pycomm3's reply to its request (`offset` into a run)."""
    code = CIP_SUCCESS
    if reply.error:
        status = cip_status_of(reply.error)
        if status is None:
            return Reading(tag, None, Quality.BAD, None, f"pycomm3: {reply.error}")
        code = status
        if cip_quality(code) is Quality.BAD or reply.value is None:  # no value: nothing to be uncertain about
            return Reading(tag, None, Quality.BAD, code, cip_problem(code, reply.error))
    raw: Any = reply.value
    if offset >= 0:
        if not isinstance(raw, list) or offset >= len(raw):
            return Reading(tag, None, Quality.BAD, None, f"expected an array reply, got {raw!r:.60}")
        raw = raw[offset]
    cip_type = CIP_TYPES[datatype]
    expected = _PYTHON_TYPES.get(cip_type, int)
    if expected is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if type(raw) is not expected or not isinstance(raw, bool | int | float | str):
        return Reading(tag, None, Quality.BAD, None, f"a {cip_type} should be {expected.__name__}, got {raw!r:.60}")
    return Reading(
        tag, raw, cip_quality(code), code, cip_problem(code, reply.error or "") if code != CIP_SUCCESS else None
    )


class CipSource(PollingSource[list[CipRead], list[Pycomm3Tag]]):
    """Samples of one Logix controller, polled, kept flowing across restarts; use as `async with`."""

    def __init__(
        self,
        device: Device,
        *,
        max_gap: int | None = DEFAULT_MAX_GAP,
        batch: bool = True,
        socket_timeout_s: float = 5.0,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(device, protocol="cip", **options)
        self._endpoint = parse_cip_endpoint(device.endpoint)
        self._addresses = cip_addresses(device)
        self._definitions = logix_tag_definitions(device.tags)
        self._max_gap = max_gap
        self._batch = batch
        self._socket_timeout_s = socket_timeout_s
        self._driver: LogixDriver | None = None
        self._broken = False  # the last exchange failed: the peer cannot answer a Forward Close

    async def _connect(self) -> None:
        self._driver = await self._call(self._open)

    def _open(self) -> LogixDriver:
        """Open a driver without the tag upload and give it our definitions (worker thread)."""
        driver = LogixDriver(self._endpoint.path, init_tags=False)
        driver.socket_timeout = self._socket_timeout_s
        self._broken = False
        try:
            if not driver.open():  # type: ignore[no-untyped-call]
                raise ConnectionError(f"{self._endpoint.path}: the controller refused the session")
        except BaseException:
            self._close(driver, broken=True)
            raise
        driver._tags = dict(self._definitions)
        return driver

    async def _disconnect(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await self._call(self._close, driver, self._broken)

    @staticmethod
    def _close(driver: LogixDriver, broken: bool) -> None:
        if broken:
            # A Forward Close to a dead peer only fails (and pycomm3 logs a traceback): drop the socket.
            sock = driver._sock
            if sock is not None:
                sock.close()  # type: ignore[no-untyped-call]
            return
        driver.close()  # type: ignore[no-untyped-call]

    def _plan_reads(self, group: PollGroup, isolated: Collection[int]) -> list[CipRead]:
        return plan_cip_reads(self._addresses, group.tags, max_gap=self._max_gap, isolated=isolated)

    def _failed_merged(self, group: PollGroup, plan: list[CipRead], answers: list[Pycomm3Tag]) -> set[int]:
        return {
            tag
            for read, reply in zip(plan, answers, strict=True)
            if reply.error and len(read.members) > 1 and read.request.endswith("}")
            for tag, _ in read.members
        }

    def _readings(self, group: PollGroup, plan: list[CipRead], answers: list[Pycomm3Tag]) -> list[Reading]:
        readings = [
            reading_of(tag, self._device.tags[tag].datatype, reply, offset)
            for read, reply in zip(plan, answers, strict=True)
            for tag, offset in read.members
        ]
        readings.sort(key=lambda reading: reading.tag)
        return readings

    def _exchange(self, plan: list[CipRead]) -> list[Pycomm3Tag]:
        """Read every request of `plan` (worker thread), batched or one per request."""
        driver = self._driver
        if driver is None:
            raise ConnectionError("not connected")
        requests = [read.request for read in plan]
        self._broken = True  # until the exchange completes
        if self._batch and len(requests) > 1:
            result = driver.read(*requests)
            replies = list(result) if isinstance(result, list) else [result]
        else:
            replies = []
            for request in requests:
                single = driver.read(request)
                replies.append(single[0] if isinstance(single, list) else single)
        self._broken = False
        return replies
