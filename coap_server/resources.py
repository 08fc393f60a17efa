"""The CoAP resources a Jejak edge serves: submit observations, list logs, read ranges, observe heads, status.

Resource tree (CBOR, content-format 60, unless noted):

    POST /submit                     {"kind", "body"} or [{"kind", "body"}, ...] -> 2.01 {id, seq}
    GET  /logs                       [{device, length, head, time, boot, own, forked}, ...]
    GET  /log/<device hex | own>     {device, length, head, time, boot} (observable: notifies on new records;
                                     past `observers` in all or `observers_per_address` from one address, the
                                     head is answered without Observe: RFC 7641 §4.1)
    GET  /log/<device>/records?from=N&to=M   [2, device, N, [raw record, ...]] (block-wise when large)
    GET  /status                     the node's status map
    GET  /metrics                    Prometheus text (content-format 0)
    POST /sim/tap                    {"uid"} -> feedback list (only when the simulated reader is on)
    GET  /.well-known/core           CoRE link format

`build_site` returns the aiocoap Site; more resources (the sync protocol's /sync/...) are added to it with
`site.add_resource(path, resource)` before the server context starts.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap import interfaces
from aiocoap.numbers.codes import Code

from ledger import KINDS, ChainState
from ledger.sync import encode_records, records_within

from . import blocks
from .errors import (
    CBOR,
    BadCbor,
    NotFound,
    RequestError,
    TooLarge,
    UnknownKind,
    UnsupportedFormat,
    error_response,
)
from .limits import Cap, Slots
from .params import coap_query, seq
from .routing import Site

log = logging.getLogger("jejak.coap")

TEXT = 0
SUBMITTABLE = ("scan", "reading", "price", "stock", "note")


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The answer to one submitted observation: the stored record's id and seq."""

    id: bytes
    seq: int
    duplicate: bool = False

    def to_cbor_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "seq": self.seq}
        if self.duplicate:
            out["duplicate"] = True
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    max_submit_bytes: int = 16 * 1024
    max_submit_items: int = 256
    range_records: int = 512
    range_bytes: int = 256 * 1024
    # Observations of log heads held at once: each costs the node about 12 KB and a notification per record.
    observers: int = 256
    observers_per_address: int = 16


class Backend(Protocol):
    """What the resources need from the node behind them (the edge daemon implements it)."""

    async def submit(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Submitted]:
        """Append the observations durably (one commit) and answer only after it."""
        ...

    def own_device(self) -> bytes | None: ...
    def state(self, device_id: bytes) -> ChainState | None: ...
    def logs(self) -> list[dict[str, Any]]: ...
    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]: ...
    def status(self) -> dict[str, Any]: ...
    def metrics(self) -> str: ...


def _cbor(payload: Any, code: Code = Code.CONTENT) -> aiocoap.Message:
    return aiocoap.Message(code=code, content_format=CBOR, payload=cbor2.dumps(payload))


LOG_RANGE_QUERY = (seq("from"), seq("to"))


def decode_cbor(payload: bytes, what: str) -> Any:
    """Exactly one well-formed CBOR item, else BAD_CBOR (deterministic encoding is not required here)."""
    if not payload:
        raise BadCbor(f"{what}: empty payload; expected a CBOR item")
    stream = io.BytesIO(payload)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types for bad input; all mean the same here
        raise BadCbor(f"{what}: not well-formed CBOR ({exc})") from None
    if stream.tell() != len(payload):
        raise BadCbor(f"{what}: {len(payload) - stream.tell()} bytes after the CBOR item")
    return item


def parse_submission(payload: bytes, limits: ServerLimits) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Observations in a submission, and whether it was a batch (an array) rather than one map."""
    item = decode_cbor(payload, "submission")
    batch = isinstance(item, list)
    items = item if batch else [item]
    if batch and not 1 <= len(items) <= limits.max_submit_items:
        refusal = TooLarge if items else RequestError
        raise refusal(f"submission: expected 1 to {limits.max_submit_items} observations, got {len(items)}")
    out = []
    for n, obs in enumerate(items):
        where = f"submission[{n}]" if batch else "submission"
        if not isinstance(obs, dict):
            raise RequestError(f"{where}: expected a map {{\"kind\", \"body\"}}, got {type(obs).__name__}")
        extra = sorted(map(str, set(obs) - {"kind", "body"}))
        if extra:
            raise RequestError(f"{where}: unexpected keys {extra}; expected exactly \"kind\" and \"body\"")
        kind, body = obs.get("kind"), obs.get("body")
        if not isinstance(kind, str):
            raise RequestError(f"{where}: \"kind\" must be text, one of {list(SUBMITTABLE)}; got "
                               f"{type(kind).__name__}")
        if kind not in SUBMITTABLE:
            why = "is made by the device itself" if kind in KINDS else "is unknown"
            raise UnknownKind(f"{where}: kind {kind[:40]!r} {why}; expected one of {list(SUBMITTABLE)}")
        if not isinstance(body, dict):
            raise RequestError(f"{where}: \"body\" must be a map, got {type(body).__name__}")
        out.append((kind, body))
    return out, batch


def _check_format(request: aiocoap.Message) -> None:
    fmt = request.opt.content_format
    if fmt is not None and int(fmt) != CBOR:
        raise UnsupportedFormat(f"content-format {int(fmt)} is not accepted; expected {CBOR} (application/cbor)")


class _Guarded(blocks.Resource):
    """Renders every typed error through coap_server.errors, so no handler maps codes itself."""

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            return await super().render(request)
        except aiocoap.error.RenderableError:
            raise
        except Exception as exc:  # typed errors answer as they declare; anything else is INTERNAL
            return error_response(exc)


class SubmitResource(_Guarded):
    """POST observations; 2.01 only after the records holding them are durably committed."""

    ct = str(CBOR)
    rt = "jejak.submit"

    def __init__(self, backend: Backend, limits: ServerLimits) -> None:
        super().__init__()
        self.backend, self.limits = backend, limits

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        # An oversize body is refused at its first block that goes past the limit, before it is spooled.
        return self.limits.max_submit_bytes, "submission"

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        _check_format(request)
        items, batch = parse_submission(request.payload, self.limits)
        results = await self.backend.submit(items)
        body = [r.to_cbor_map() for r in results] if batch else results[0].to_cbor_map()
        return _cbor(body, Code.CREATED)


class LogsResource(_Guarded):
    ct = str(CBOR)
    rt = "jejak.logs"

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return _cbor(await asyncio.to_thread(self.backend.logs))


class StatusResource(_Guarded):
    ct = str(CBOR)
    rt = "jejak.status"

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return _cbor(self.backend.status())


class MetricsResource(_Guarded):
    ct = str(TEXT)
    rt = "jejak.metrics"

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CONTENT, content_format=TEXT, payload=self.backend.metrics().encode())


def head_map(state: ChainState) -> dict[str, Any]:
    return {"device": state.device_id, "length": state.length, "head": state.head, "time": state.time,
            "boot": state.boot}


class LogSite(_Guarded, resource.PathCapable, interfaces.ObservableResource):
    """/log/<device>: the head of one log (observable), and /log/<device>/records: a range of it."""

    def __init__(self, backend: Backend, limits: ServerLimits,
                 tally: MutableMapping[str, int] | None = None) -> None:
        super().__init__()
        self.backend, self.limits = backend, limits
        self._observers: dict[bytes, set[Any]] = {}
        # Every other thing a client holds open is capped; observations were not, and one host registering
        # them with new tokens grew an edge by 12 KB each (60 MB for 5,000) and made every tap notify them all.
        self._slots = Slots(Cap(total=limits.observers, per_address=limits.observers_per_address),
                            "CoAP observations", log=log, tally=tally,
                            setting="[limits] coap_observers or coap_observers_per_address")

    def _device(self, request: aiocoap.Message) -> tuple[bytes, tuple[str, ...]]:
        path = tuple(request.opt.uri_path)
        if not path or not path[0]:
            raise NotFound("expected /log/<device id in hex> or /log/own")
        name = path[0]
        if name == "own":
            own = self.backend.own_device()
            if own is None:
                raise NotFound("this node has no own log")
            return own, path[1:]
        try:
            device_id = bytes.fromhex(name)
        except ValueError:
            device_id = b""
        if len(device_id) != 16:
            raise NotFound(f"device id: expected 32 hex digits, got {name[:40]!r}")
        return device_id, path[1:]

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        device_id, rest = self._device(request)
        state = self.backend.state(device_id)
        if state is None:
            raise NotFound(f"no log of device {device_id.hex()} here")
        if rest == ():
            return _cbor(head_map(state))
        if rest != ("records",):
            raise NotFound(f"no resource /log/{device_id.hex()}/{'/'.join(rest)[:60]}; expected "
                               f"/log/<device>/records")
        query = coap_query(request, *LOG_RANGE_QUERY)
        start = query.get("from", 0)
        end = query.get("to", start + self.limits.range_records)
        end = min(end, start + self.limits.range_records, state.length)
        raws = await asyncio.to_thread(self.backend.log_range, device_id, start, end) if end > start else []
        return aiocoap.Message(code=Code.CONTENT, content_format=CBOR,
                               payload=encode_records(device_id, start, records_within(raws, self.limits.range_bytes)))

    async def add_observation(self, request: aiocoap.Message, serverobservation: Any) -> None:
        try:
            device_id, rest = self._device(request)
        except RequestError:
            device_id, rest = b"", ("",)
        address = peer_address(request.remote)
        if rest or self._slots.take(address) is not None:
            # Answered once, without Observe (RFC 7641 §4.1). aiocoap calls the cancellation of every observation
            # it offered, so one not accepted raised AttributeError: a traceback in the log per such request.
            serverobservation.accept(lambda: None)
            serverobservation.deregister()
            return
        watchers = self._observers.setdefault(device_id, set())
        watchers.add(serverobservation)

        def cancel() -> None:
            if serverobservation not in watchers:
                return
            watchers.discard(serverobservation)
            self._slots.give(address)
            if not watchers:
                self._observers.pop(device_id, None)

        serverobservation.accept(cancel)

    def notify(self, device_id: bytes) -> None:
        """A log grew: observers of its head get a notification (several commits may fold into one)."""
        for watcher in list(self._observers.get(device_id, ())):
            watcher.trigger()

    @property
    def observer_count(self) -> int:
        return sum(len(s) for s in self._observers.values())

    def get_resources_as_linkheader(self) -> Any:
        from aiocoap.util.linkformat import Link, LinkFormat

        links = []
        own = self.backend.own_device()
        if own is not None:
            links.append(Link(f"/{own.hex()}", ct=str(CBOR), rt="jejak.head", obs=None))
            links.append(Link(f"/{own.hex()}/records", ct=str(CBOR), rt="jejak.range"))
        return LinkFormat(links)


class TapResource(_Guarded):
    """POST {"uid": "04a1b2..."}: a tap on the simulated reader, answered with the feedback it caused."""

    ct = str(CBOR)
    rt = "jejak.sim.tap"

    def __init__(self, tap: Any) -> None:
        super().__init__()
        self.tap = tap

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        _check_format(request)
        if len(request.payload) > 256:
            raise TooLarge(f"tap of {len(request.payload)} bytes; expected a small map", limit=256)
        item = decode_cbor(request.payload, "tap")
        if not isinstance(item, dict) or not isinstance(item.get("uid"), str) or set(item) - {"uid"}:
            raise RequestError("tap: expected {\"uid\": \"<hex uid>\"}")
        feedback = await self.tap(item["uid"])
        return _cbor(feedback, Code.CHANGED)


def peer_address(remote: Any) -> str:
    """The host a CoAP request came from, without its port (an OSCORE request's, the host under it)."""
    remote = getattr(remote, "underlying_address", remote)
    sockaddr = getattr(remote, "sockaddr", None)
    return str(sockaddr[0]) if sockaddr else str(getattr(remote, "hostinfo", remote))


def build_site(backend: Backend, limits: ServerLimits = ServerLimits(), *, tap: Any = None,
               tally: MutableMapping[str, int] | None = None) -> tuple[Site, LogSite]:
    """The edge's CoAP site and its log resource (call `.notify(device_id)` on it when a log grows); refusals
    past the observation limits are counted in `tally` by reason."""
    site = Site()
    site.add_resource([".well-known", "core"], blocks.WellKnownCore(site.get_resources_as_linkheader,
                                                                   impl_info=None))
    site.add_resource(["submit"], SubmitResource(backend, limits))
    site.add_resource(["logs"], LogsResource(backend))
    logs = LogSite(backend, limits, tally)
    site.add_resource(["log"], logs)
    site.add_resource(["status"], StatusResource(backend))
    site.add_resource(["metrics"], MetricsResource(backend))
    if tap is not None:
        site.add_resource(["sim", "tap"], TapResource(tap))
    return site, logs
