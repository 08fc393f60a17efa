"""The log sync protocol over CoAP: the resources a log holder serves and the session that drives them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code

from ledger import LedgerError, LimitExceeded, SyncError
from ledger.errors import CodedError
from ledger.sync import (
    Fetch,
    Head,
    Limits,
    Push,
    RequestSize,
    decode_heads,
    decode_heads_page,
    decode_ranges,
    decode_ranges_request,
    decode_records,
    encode_heads,
    encode_heads_page,
    encode_ranges,
    encode_ranges_request,
    encode_records,
    page_of,
    plan,
)

from .errors import error_response
from .params import Param, check_body_size, coap_query, device, seq

log = logging.getLogger("jejak.sync")
CBOR = 60
# GET /sync/records: the access check (coap_server.security) and the handler read the query with these.
RECORDS_QUERY = (device("d", required=True), seq("from"), seq("to"))
HEADS_QUERY = (Param(name="after", kind="text", size=32),)  # a device id in hex, empty for the first page
# The heads a peer is shown: ours, the asking peer's own, and the request (for who is asking).
Visible = Callable[[aiocoap.Message, list[Head], list[Head]], list[Head]]


class LogHolder(Protocol):
    """What a node that holds logs offers to sync: the hub, or an edge with its replicas. A holder of many
    logs may also offer `heads_page(after, limit) -> (heads, next)` (one page read, not all) and
    `receive_many([(device id, raws), ...])` (many logs' ranges in one call)."""

    def heads(self) -> list[Head]: ...
    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]: ...
    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        """Verify and store offered records; return {"accepted", "duplicates", "length", "problem"}."""
        ...


def _ok(code: Code, payload: bytes) -> aiocoap.Message:
    return aiocoap.Message(code=code, content_format=CBOR, payload=payload)


class HeadsResource(resource.Resource):
    """POST our heads, get theirs back: all at once, or with ?after=<device hex> (empty for the first) a page
    of `limits.max_devices` in device id order, so a node may hold any number of logs."""

    def __init__(self, holder: LogHolder, limits: Limits, visible: Visible | None = None) -> None:
        super().__init__()
        self.holder, self.limits = holder, limits
        self.visible = visible  # security hook: only what the asking peer may read or already holds

    async def render_to_pipe(self, pipe: Any) -> None:
        try:
            check_body_size(pipe.request, self.limits.max_devices * 64 + 64, "heads message")
        except CodedError as exc:
            pipe.add_response(error_response(exc), is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        paged = getattr(self.holder, "heads_page", None)  # a holder that reads one page of its logs
        try:
            after = coap_query(request, *HEADS_QUERY).get("after")
            start = bytes.fromhex(after) if after is not None else None
            theirs = decode_heads(request.payload, self.limits)
            if start is not None and paged is not None:
                page, more = await asyncio.to_thread(paged, start, self.limits.max_devices)
                heads = page
            else:
                heads = await asyncio.to_thread(self.holder.heads)
        except ValueError:
            return error_response(SyncError("expected ?after=<device hex>, empty for the first page"))
        except CodedError as exc:
            return error_response(exc)
        if self.visible is not None:
            heads = self.visible(request, heads, theirs)
        if start is None:  # a peer that does not page
            return _ok(Code.CONTENT, encode_heads(heads))
        if paged is None:
            page, more = page_of(heads, start, self.limits.max_devices)
        else:
            page = heads  # filtered: `more` still follows the logs read, so the next page moves on
        return _ok(Code.CONTENT, encode_heads_page(page, more))


class RecordsResource(resource.Resource):
    """GET a range of a log (?d=<device hex>&from=N&to=M); POST records to be verified and stored."""

    def __init__(self, holder: LogHolder, limits: Limits) -> None:
        super().__init__()
        self.holder, self.limits = holder, limits

    async def render_to_pipe(self, pipe: Any) -> None:
        # A push past the limit is refused at its first block over it, before aiocoap spools the rest.
        try:
            if pipe.request.code == Code.POST:
                check_body_size(pipe.request, self.limits.bytes_per_request + 1024, "records message")
        except CodedError as exc:
            pipe.add_response(error_response(exc), is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            query = coap_query(request, *RECORDS_QUERY)
        except CodedError as exc:
            return error_response(exc)
        device_id, start = query["d"], query.get("from", 0)
        end = min(query.get("to", start + self.limits.records_per_request), start + self.limits.records_per_request)
        try:
            raws = await asyncio.to_thread(self.holder.log_range, device_id, start, end)
        except Exception as exc:  # a damaged record, a store error: answered as the error declares
            return error_response(exc)
        raws = _fit(raws, self.limits.bytes_per_request)
        return _ok(Code.CONTENT, encode_records(device_id, start, raws))

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            device_id, _, raws = decode_records(request.payload, self.limits)
            result = await asyncio.to_thread(self.holder.receive, device_id, raws)
        except Exception as exc:  # ledger and storage errors answer as they declare; anything else is INTERNAL
            return error_response(exc)
        return _ok(Code.CHANGED, cbor2.dumps(result))


class RangesResource(resource.Resource):
    """POST many logs' ranges, get back as much of them, in order, as one records request may carry."""

    def __init__(self, holder: LogHolder, limits: Limits, visible: Visible | None = None) -> None:
        super().__init__()
        self.holder, self.limits, self.visible = holder, limits, visible

    async def render_to_pipe(self, pipe: Any) -> None:
        try:
            check_body_size(pipe.request, self.limits.max_devices * 64 + 64, "ranges request")
        except CodedError as exc:
            pipe.add_response(error_response(exc), is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            wanted = decode_ranges_request(request.payload, self.limits)
        except LedgerError as exc:
            return error_response(exc)
        if self.visible is not None:  # the same read policy as the heads: logs it may not read are left out
            allowed = {h.device_id for h in self.visible(request, [Head(device_id=f.device_id, length=0,
                                                                         head=bytes(32)) for f in wanted])}
            wanted = [f for f in wanted if f.device_id in allowed]
        try:
            served = await asyncio.to_thread(self._serve, wanted)
        except Exception as exc:  # a damaged record, a store error: answered as the error declares
            return error_response(exc)
        return _ok(Code.CONTENT, encode_ranges(served))

    def _serve(self, wanted: list[Fetch]) -> list[tuple[bytes, int, list[bytes]]]:
        served: list[tuple[bytes, int, list[bytes]]] = []
        records, budget = self.limits.records_per_request, self.limits.bytes_per_request
        for f in wanted:
            if records <= 0:
                break  # the rest is left out, and asked for again
            raws = _fit(self.holder.log_range(f.device_id, f.start, min(f.end, f.start + records)), budget)
            if served and raws and len(raws[0]) + 3 > budget:
                break  # only the first log may go over: a record larger than the budget must still pass
            served.append((f.device_id, f.start, raws))
            records -= len(raws)
            budget -= sum(len(r) + 3 for r in raws) + 24
        return served


def _fit(raws: list[bytes], budget: int) -> list[bytes]:
    out, used = [], 0
    for raw in raws:
        used += len(raw) + 3
        if out and used > budget:
            break
        out.append(raw)
    return out


def add_sync_resources(site: resource.Site, holder: LogHolder, limits: Limits = Limits(), *,
                       visible: Visible | None = None) -> None:
    site.add_resource(["sync", "heads"], HeadsResource(holder, limits, visible))
    site.add_resource(["sync", "records"], RecordsResource(holder, limits))
    site.add_resource(["sync", "ranges"], RangesResource(holder, limits, visible))


class SyncFailed(Exception):
    """The other side refused a sync request; `code` and `hint` are from its error body."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.hint = hint


@dataclass(slots=True)
class SyncReport:
    fetched: int = 0
    pushed: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    refused: list[SyncFailed] = field(default_factory=list)  # what the other side refused, with its code and hint
    bytes_sent: int = 0
    bytes_received: int = 0


BUSY_RETRIES = 8  # 5.03 answers waited out per request, each for its Max-Age
BUSY_WAIT_S = 60.0


async def _request(ctx: aiocoap.Context, code: Code, uri: str, payload: bytes = b"",
                   timeout: float = 30.0) -> bytes:
    for attempt in range(BUSY_RETRIES + 1):
        msg = aiocoap.Message(code=code, uri=uri, payload=payload, content_format=CBOR if payload else None)
        # Not wait_for: on Python 3.11 it drops a cancel that lands as the response arrives (CPython gh-86296),
        # and a sync loop told to stop would carry on.
        async with asyncio.timeout(timeout):
            response = await ctx.request(msg).response
        if response.code != Code.SERVICE_UNAVAILABLE or attempt == BUSY_RETRIES:
            break
        # A peer whose table of recent message ids is full (coap_server/exchanges.py) says with Max-Age when
        # a place frees: a pull of many logs sends it thousands of blocks and waits rather than fails.
        await asyncio.sleep(min(float(response.opt.max_age or 1), BUSY_WAIT_S))
    if not response.code.is_successful():
        try:
            err = cbor2.loads(response.payload)
            raise SyncFailed(err.get("code", str(response.code)), err.get("message", ""), err.get("hint"))
        except (ValueError, AttributeError, cbor2.CBORDecodeError):
            raise SyncFailed(str(response.code), response.payload[:200].decode(errors="replace")) from None
    return response.payload


async def _sized(ctx: aiocoap.Context, size: RequestSize, code: Code, uri: str, payload: bytes = b"") -> bytes:
    """A records request whose outcome sizes the next: a refusal says nothing about the link, so only a
    request lost in transit (timed out, the transport gave up) or answered counts."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    try:
        data = await _request(ctx, code, uri, payload, timeout=size.timeout)
    except SyncFailed:
        raise
    except Exception:
        size.failed()
        raise
    size.succeeded(loop.time() - sent)
    return data


async def sync_once(ctx: aiocoap.Context, base: str, local: LogHolder, *, limits: Limits = Limits(),
                    push: bool = True, pull: bool = True, blocked: frozenset[bytes] = frozenset(),
                    size: RequestSize | None = None) -> SyncReport:
    """One anti-entropy round with the node at `base` (coap://host:port): exchange heads, fetch, push.

    Records requests carry what `size` allows; pass the same `size` to every round with a peer so that it
    follows the link (halved when a request is lost, grown back when they finish quickly)."""
    report = SyncReport()
    if size is None:
        size = RequestSize(limits)
    mine = await asyncio.to_thread(local.heads)
    theirs = await remote_heads(ctx, base, limits, report)
    actions = plan({h.device_id: h for h in mine}, theirs, limits=limits, push=push, pull=pull, blocked=blocked)
    fetches = [a for a in actions if isinstance(a, Fetch)]
    if len(fetches) > 1:
        fetches = await _fetch_many(ctx, base, local, fetches, size, limits, report)
    for action in [*fetches, *(a for a in actions if isinstance(a, Push))]:
        if isinstance(action, Fetch):
            start = action.start
            while start < action.end:
                data = await _sized(ctx, size, Code.GET, f"{base}/sync/records?d={action.device_id.hex()}"
                                                         f"&from={start}&to={min(action.end, start + size.records)}")
                report.bytes_received += len(data)
                device_id, _, raws = decode_records(data, limits)
                if device_id != action.device_id or not raws:
                    break
                if not await _receive(local, action.device_id, raws, report):
                    break
                start += len(raws)
        elif isinstance(action, Push):
            start = action.start
            while start < action.end:
                end = min(action.end, start + size.records)
                raws = _fit(await asyncio.to_thread(local.log_range, action.device_id, start, end), size.bytes)
                if not raws:
                    break
                body = encode_records(action.device_id, start, raws)
                report.bytes_sent += len(body)
                try:
                    ack = cbor2.loads(await _sized(ctx, size, Code.POST, f"{base}/sync/records", body))
                except SyncFailed as exc:
                    report.problems.append(f"{action.device_id.hex()}: {exc}")
                    report.refused.append(exc)
                    break
                report.pushed += ack.get("accepted", 0)
                report.duplicates += ack.get("duplicates", 0)
                if ack.get("problem"):
                    report.problems.append(f"{action.device_id.hex()}: {ack['problem']}")
                    break
                start += len(raws)
    return report


async def remote_heads(ctx: aiocoap.Context, base: str, limits: Limits = Limits(),
                       report: SyncReport | None = None) -> list[Head]:
    """The peer's heads, a page at a time (a peer that does not page answers with all of them at once)."""
    heads: list[Head] = []
    after = b""
    body = encode_heads([])  # the peer answers with its own heads whatever ours are: spare the bytes
    while True:
        data = await _request(ctx, Code.POST, f"{base}/sync/heads?after={after.hex()}", body)
        if report is not None:
            report.bytes_sent += len(body)
            report.bytes_received += len(data)
        page, more = decode_heads_page(data, after, limits)
        heads.extend(page)
        if len(heads) > limits.max_logs:
            raise LimitExceeded(f"the peer offers more than {limits.max_logs} logs")
        if more is None:
            return heads
        after = more


async def _receive(local: LogHolder, device_id: bytes, raws: Sequence[bytes], report: SyncReport) -> bool:
    """Hand fetched records to `local`; False when it refused them (the rest of that log is not asked for)."""
    return _count(device_id, await asyncio.to_thread(local.receive, device_id, raws), report)


def _count(device_id: bytes, result: dict[str, Any], report: SyncReport) -> bool:
    report.fetched += result["accepted"]
    report.duplicates += result["duplicates"]
    if result.get("problem"):
        report.problems.append(f"{device_id.hex()}: {result['problem']}")
        return False
    return True


async def _fetch_many(ctx: aiocoap.Context, base: str, local: LogHolder, fetches: list[Fetch],
                      size: RequestSize, limits: Limits, report: SyncReport) -> list[Fetch]:
    """Fetch the start of many logs' ranges, as many logs a request as `size` allows records; return what is
    left to fetch a log at a time (the rest of long ranges, logs the answer left out, all of them from a peer
    without /sync/ranges). The next request is on the wire while `local` takes in the last answer."""
    left: list[Fetch] = []
    taking: asyncio.Task[None] | None = None
    at = 0
    try:
        while at < len(fetches):
            chunk: list[tuple[Fetch, Fetch]] = []
            asked = 0  # as many records in all as one request of `size` carries
            while at < len(fetches) and (not chunk or asked < size.records):
                f = fetches[at]
                take = min(f.end - f.start, size.records - asked) if chunk else min(f.end - f.start, size.records)
                chunk.append((f, Fetch(f.device_id, f.start, f.start + take)))
                asked += take
                at += 1
            body = encode_ranges_request([c for _, c in chunk])
            try:
                data = await _sized(ctx, size, Code.POST, f"{base}/sync/ranges", body)
            except SyncFailed:  # an older peer, or one that refuses: each log on its own, as before
                left.extend(fetches[at - len(chunk):])
                return left
            report.bytes_sent += len(body)
            report.bytes_received += len(data)
            served = {device_id: (start, raws) for device_id, start, raws in decode_ranges(data, limits)}
            wanted = [(f, served[f.device_id][1]) for f, _ in chunk
                      if served.get(f.device_id, (-1, []))[0] == f.start and served[f.device_id][1]]
            left.extend(f for f, _ in chunk if served.get(f.device_id, (-1, []))[0] != f.start)
            if taking is not None:
                await taking
            taking = asyncio.create_task(_take(local, wanted, left, report))
    finally:
        if taking is not None:
            await taking  # a thread cannot be stopped half-way: what it took in is counted
    return left


async def _take(local: LogHolder, wanted: list[tuple[Fetch, list[bytes]]], left: list[Fetch],
                report: SyncReport) -> None:
    many = getattr(local, "receive_many", None)  # a holder that verifies many logs at once
    if many is not None:
        results = await asyncio.to_thread(many, [(f.device_id, raws) for f, raws in wanted])
    else:
        results = [await asyncio.to_thread(local.receive, f.device_id, raws) for f, raws in wanted]
    for (f, raws), result in zip(wanted, results, strict=True):
        if _count(f.device_id, result, report) and f.start + len(raws) < f.end:
            left.append(Fetch(f.device_id, f.start + len(raws), f.end))
