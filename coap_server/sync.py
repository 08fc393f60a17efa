"""The log sync protocol over CoAP: the resources a log holder serves and the session that drives them."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiocoap
import aiocoap.resource as resource
import cbor2
from aiocoap.numbers.codes import Code
from aiocoap.oscore import NotAProtectedMessage

from ledger import LedgerError, LimitExceeded, SyncError, decode_record
from ledger.errors import BrokenChain, CodedError, OutOfOrder
from ledger.sync import (
    Fetch,
    Head,
    Limits,
    Push,
    RequestSize,
    decode_heads,
    decode_heads_page_forked,
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
    records_within,
)

from . import blocks
from .errors import error_response
from .lanes import Lanes
from .params import Param, coap_query, device, seq

log = logging.getLogger("jejak.sync")
CBOR = 60
# GET /sync/records: the access check (coap_server.security) and the handler read the query with these.
RECORDS_QUERY = (device("d", required=True), seq("from"), seq("to"))
# ?after=: a device id in hex, empty for the first page; ?forked=: a log the peer asks whether this node holds as
# forked (the page then says, where the holder can tell: its `forked(device ids)`); ?now=: the asking device's
# clock, Unix seconds, ?boot=: its boot count, and ?steps=: where its wall clock stepped in that boot, as
# `seq:seconds` pairs (a holder that keeps them: its `device_clock(device id, now, boot=, proved=[, steps=])`; the
# device is the one the request's OSCORE context proves, else the one ?forked= names). At most MAX_STEPS steps:
# a Uri-Query option holds 255 bytes.
MAX_STEPS = 6
HEADS_QUERY = (Param(name="after", kind="text", size=32), device("forked"), Param(name="now", hi=2**40),
               Param(name="boot", hi=2**32), Param(name="steps", kind="steps", size=MAX_STEPS))
# The heads a peer is shown: ours, the asking peer's own, and the request (for who is asking).
Visible = Callable[[aiocoap.Message, list[Head], list[Head]], list[Head]]


class LogHolder(Protocol):
    """What a node that holds logs offers to sync: the hub, or an edge with its replicas. A holder of many
    logs may also offer `heads_page(after, limit) -> (heads, next)` (one page read, not all),
    `receive_many([(device id, raws), ...], checks)` (many logs' ranges in one call, with `checks` from its
    `check_ahead([(device id, raws), ...])` where it has one, else None) and `log_length(device id)` (how many
    records of a log it holds: pushed ranges are then taken in order, see RecordsResource)."""

    def heads(self) -> list[Head]: ...
    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]: ...
    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        """Verify and store offered records; return {"accepted", "duplicates", "length", "problem"}."""
        ...


def _ok(code: Code, payload: bytes) -> aiocoap.Message:
    return aiocoap.Message(code=code, content_format=CBOR, payload=payload)


class HeadsResource(blocks.Resource):
    """POST our heads, get theirs back: all at once, or with ?after=<device hex> (empty for the first) a page
    of `limits.max_devices` in device id order, so a node may hold any number of logs. A page asked with
    ?forked=<device hex> also says whether this node holds that log as forked, where its holder can tell (the
    hub): a copy of a device whose records the hub kept has nothing to push, and learns of the fork so."""

    def __init__(self, holder: LogHolder, limits: Limits, visible: Visible | None = None) -> None:
        super().__init__()
        self.holder, self.limits = holder, limits
        self.visible = visible  # security hook: only what the asking peer may read or already holds

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        return self.limits.max_devices * 64 + 64, "heads message"

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        paged = getattr(self.holder, "heads_page", None)  # a holder that reads one page of its logs
        forks: Callable[[list[bytes]], list[bytes]] | None = getattr(self.holder, "forked", None)
        clocks: Callable[..., None] | None = getattr(self.holder, "device_clock", None)
        try:
            query = coap_query(request, *HEADS_QUERY)
            after, asked, told = query.get("after"), query.get("forked"), query.get("now")
            if told is not None and clocks is not None and (who := (proved := _claimed(request)) or asked):
                stepped = {"steps": query["steps"]} if "steps" in query and "boot" in query else {}
                await asyncio.to_thread(clocks, who, told, boot=query.get("boot"), proved=proved is not None,
                                        **stepped)
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
        forked = None if asked is None or forks is None else await asyncio.to_thread(forks, [asked])
        return _ok(Code.CONTENT, encode_heads_page(page, more, forked=forked))


def _claimed(request: aiocoap.Message) -> bytes | None:
    from .security import claimed_device  # security builds on this module's queries
    return claimed_device(request)


ORDER_WAIT_S = 10.0  # how long a pushed range waits for the ranges before it
ORDER_WAITERS = 16  # pushed ranges of one log held back at once; more are refused OUT_OF_ORDER
COALESCE_RECORDS = 2048  # ranges that wait in a row are stored in one receive (one commit) up to this many
REFUSALS_KEPT = 1024  # logs whose last refusal is remembered (for `order_wait` seconds each); the oldest go first


@dataclass(slots=True)
class _Range:
    """A pushed range waiting for its turn; a range before it may take it along into one store write."""

    start: int
    raws: Sequence[bytes]
    ahead: asyncio.Future[Any] | None  # its signatures, being checked meanwhile (the holder's check_ahead)
    answer: asyncio.Future[dict[str, Any]]  # set when a range before it took it along

    @property
    def end(self) -> int:
        return self.start + len(self.raws)


@dataclass(slots=True)
class _Order:
    """The pushed ranges of one log while some are taken in: the length they are measured against."""

    ready: asyncio.Condition = field(default_factory=asyncio.Condition)
    length: int | None = None  # the holder's length after the last range taken, None before one is read
    refusals: int = 0  # ranges refused so far: those waiting behind one are refused too
    users: int = 0
    waiting: int = 0
    queued: dict[int, _Range] = field(default_factory=dict)  # ranges that arrived and wait, by start


class RecordsResource(blocks.Resource):
    """GET a range of a log (?d=<device hex>&from=N&to=M); POST records to be verified and stored.

    A pusher keeps several POSTs of one log in flight, and they may arrive, or reach this handler, in
    another order than sent. A POST whose `start` is past the log's stored length waits (at most
    `order_wait` seconds) until the ranges before it are stored, then is taken; one whose predecessor was
    refused, or never came, is answered OUT_OF_ORDER with nothing stored. After a refusal, the ranges of that
    log that start past what it then held are answered OUT_OF_ORDER at once, also those that arrive later
    (for `order_wait` seconds), until a range that starts at or before that length arrives: the pusher's
    own, sent again from the head. Needs the holder's `log_length`;
    without it ranges are taken as they come, as before. A holder with `check_ahead(device id, raws) ->
    check` has a range's signatures checked while it waits, and gets that back in `receive(..., check=)`."""

    def __init__(self, holder: LogHolder, limits: Limits, *, order_wait: float = ORDER_WAIT_S) -> None:
        super().__init__()
        self.holder, self.limits = holder, limits
        self.order_wait = order_wait
        self._length: Callable[[bytes], int] | None = getattr(holder, "log_length", None)
        # A holder may check a range's signatures while it waits for its turn, and take the check with it.
        self._ahead: Callable[[bytes, Sequence[bytes]], Any] | None = getattr(holder, "check_ahead", None)
        self._orders: dict[bytes, _Order] = {}
        # device id -> (its length after the last refusal, loop time the mark lapses). Anyone may cause a
        # refusal of any log (a forged range at its head), so a mark only hastens what would time out: a range
        # that starts at or before the marked length is never refused by it, and its arrival lifts the mark.
        self._refused: dict[bytes, tuple[int, float]] = {}

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        # A push past the limit is refused at its first block over it, before the rest is spooled.
        if request.code == Code.POST:
            return self.limits.bytes_per_request + 1024, "records message"
        return super().body_limit(request)

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
        raws = records_within(raws, self.limits.bytes_per_request)
        return _ok(Code.CONTENT, encode_records(device_id, start, raws))

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            device_id, start, raws = decode_records(request.payload, self.limits)
            # Only a range that opens with its own log's record at `start` waits for its turn: anything else
            # (empty, junk, another log's record) is refused by the holder at once, not after the wait.
            if self._length is None or not _opens_at(device_id, start, raws):
                result = await asyncio.to_thread(self.holder.receive, device_id, raws)
            else:
                result = await self._in_order(device_id, start, raws, self._length)
        except Exception as exc:  # ledger and storage errors answer as they declare; anything else is INTERNAL
            return error_response(exc)
        return _ok(Code.CHANGED, cbor2.dumps(result))

    async def _in_order(self, device_id: bytes, start: int, raws: Sequence[bytes],
                        length_of: Callable[[bytes], int]) -> dict[str, Any]:
        order = self._orders.get(device_id)
        if order is None:
            order = self._orders[device_id] = _Order()
        loop = asyncio.get_running_loop()
        me = _Range(start, raws, None if self._ahead is None else asyncio.ensure_future(
            asyncio.to_thread(self._ahead, device_id, raws)), loop.create_future())
        order.users += 1
        if start not in order.queued:  # seen before the lock, so a range ahead may take it along
            order.queued[start] = me
        try:
            async with order.ready:
                if not me.answer.done() and (order.length is None or start > order.length):
                    order.length = await asyncio.to_thread(length_of, device_id)  # others may have stored more
                try:
                    if not me.answer.done():
                        self._after_refusal(device_id, start, order.length)
                    await self._wait_turn(order, device_id, me, length_of)
                finally:
                    if order.queued.get(start) is me:
                        del order.queued[start]
                if me.answer.done():
                    return me.answer.result()
                return await self._take(order, device_id, me)
        finally:
            if me.ahead is not None and not me.ahead.done():
                me.ahead.cancel()  # refused before its turn: the thread finishes on its own, unheard
            order.users -= 1
            if not order.users:
                del self._orders[device_id]

    async def _take(self, order: _Order, device_id: bytes, me: _Range) -> dict[str, Any]:
        """Store `me` and the ranges that follow it without a gap and wait already, in one receive, and
        answer each of them as if it had been taken on its own."""
        before = order.length
        assert before is not None
        parts = [me]
        records = len(me.raws)
        while (nxt := order.queued.get(parts[-1].end)) is not None and parts[-1].end >= before \
                and records + len(nxt.raws) <= COALESCE_RECORDS:
            del order.queued[nxt.start]
            parts.append(nxt)
            records += len(nxt.raws)
        raws = me.raws if len(parts) == 1 else [raw for part in parts for raw in part.raws]
        try:
            aheads = [part.ahead for part in parts if part.ahead is not None]
            if aheads:
                await asyncio.wait(aheads)
            # A check that failed or was dropped (its request went away) leaves its records to the merge.
            checks = [a.result() for a in aheads if not a.cancelled() and a.exception() is None]
            if not checks:
                result = await asyncio.to_thread(self.holder.receive, device_id, raws)
            else:
                check = functools.reduce(operator.add, checks)
                receive: Callable[..., dict[str, Any]] = self.holder.receive  # a holder with check_ahead takes check=
                result = await asyncio.to_thread(functools.partial(receive, check=check), device_id, raws)
        except BaseException:
            order.refusals += 1
            self._mark_refused(device_id, before)  # at least this is held; more lifts the mark (see _after_refusal)
            order.length = None  # read again: the store may have taken part of it
            for part in parts[1:]:
                part.answer.set_exception(OutOfOrder(
                    f"range from seq {part.start} of {device_id.hex()}: the range before it failed",
                    hint="push again from the receiver's head"))
            order.ready.notify_all()
            raise
        length = result.get("length")
        order.length = length if type(length) is int else None
        problem = result.get("problem")
        if problem:
            order.refusals += 1
            self._mark_refused(device_id, order.length if order.length is not None else before)
        order.ready.notify_all()
        if len(parts) == 1:
            return result
        after = order.length if order.length is not None else before
        for part in parts[1:]:
            if part.start > after:  # behind the problem: nothing of it was stored
                part.answer.set_exception(OutOfOrder(
                    f"range from seq {part.start} of {device_id.hex()}: the range before it was refused; the "
                    f"log holds {after} records", hint="push again from the receiver's head"))
            else:
                part.answer.set_result({**result, "accepted": min(part.end, after) - part.start, "duplicates": 0,
                                        "problem": problem if after < part.end else None})
        # The first range's share: what it stored of its own, and every duplicate.
        return {**result, "accepted": max(0, min(me.end, after) - max(me.start, before)),
                "problem": problem if after < me.end else None}

    def _mark_refused(self, device_id: bytes, length: int) -> None:
        self._refused.pop(device_id, None)
        while len(self._refused) >= REFUSALS_KEPT:
            del self._refused[next(iter(self._refused))]
        self._refused[device_id] = (length, asyncio.get_running_loop().time() + self.order_wait)

    def _after_refusal(self, device_id: bytes, start: int, length: int | None) -> None:
        """Refuse at once a range that waits behind a refused one; lift the mark when a range arrives that
        may lead past it (one that starts at or before the marked length), when the log grew past it by other
        means, or when it lapsed."""
        mark = self._refused.get(device_id)
        if mark is None:
            return
        held, until = mark
        if start <= held or (length is not None and length > held) or asyncio.get_running_loop().time() > until:
            del self._refused[device_id]
            return
        if length is not None and start > length:
            raise OutOfOrder(f"range from seq {start} of {device_id.hex()}: the range before it was refused; "
                             f"the log holds {length} records", hint="push again from the receiver's head")

    async def _wait_turn(self, order: _Order, device_id: bytes, me: _Range,
                         length_of: Callable[[bytes], int]) -> None:
        """Wait, holding `order.ready` on return, until the log reaches `me.start` or a range before it
        took it along (`me.answer`)."""
        start = me.start
        if me.answer.done() or (order.length is not None and start <= order.length):
            return
        if order.length is not None and start - order.length > ORDER_WAITERS * self.limits.records_per_request:
            raise OutOfOrder(f"range from seq {start} of {device_id.hex()} is further ahead of the {order.length} "
                             "records held than any pusher's window", hint="push again from the receiver's head")
        if order.waiting >= ORDER_WAITERS:
            raise OutOfOrder(f"{order.waiting} ranges of {device_id.hex()} already wait for their predecessors")
        refusals = order.refusals
        order.waiting += 1
        try:
            async with asyncio.timeout(self.order_wait):
                while not me.answer.done() and order.length is not None and start > order.length:
                    if order.refusals != refusals:
                        raise OutOfOrder(f"range from seq {start} of {device_id.hex()}: the range before it "
                                         f"was refused; the log holds {order.length} records",
                                         hint="push again from the receiver's head")
                    await order.ready.wait()
        except TimeoutError:
            if me.answer.done():  # taken along while its wait ran out: the answer stands
                return
            raise OutOfOrder(f"range from seq {start} of {device_id.hex()}: the records before it did not arrive "
                             f"within {self.order_wait:g} s; the log holds {order.length} records",
                             hint="push again from the receiver's head") from None
        finally:
            order.waiting -= 1
        if me.answer.done():
            return
        if order.length is None:  # a failed take left it unknown: read it again
            order.length = await asyncio.to_thread(length_of, device_id)
            if start > order.length:
                raise OutOfOrder(f"range from seq {start} of {device_id.hex()}: the range before it failed; "
                                 f"the log holds {order.length} records", hint="push again from the receiver's head")


class RangesResource(blocks.Resource):
    """POST many logs' ranges, get back as much of them, in order, as one records request may carry."""

    def __init__(self, holder: LogHolder, limits: Limits, visible: Visible | None = None) -> None:
        super().__init__()
        self.holder, self.limits, self.visible = holder, limits, visible

    def body_limit(self, request: aiocoap.Message) -> tuple[int, str]:
        return self.limits.max_devices * 64 + 64, "ranges request"

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            wanted = decode_ranges_request(request.payload, self.limits)
        except LedgerError as exc:
            return error_response(exc)
        if self.visible is not None:  # the same read policy as the heads: logs it may not read are left out
            asked = [Head(device_id=f.device_id, length=0, head=bytes(32)) for f in wanted]
            allowed = {h.device_id for h in self.visible(request, asked, [])}
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
            raws = records_within(self.holder.log_range(f.device_id, f.start, min(f.end, f.start + records)), budget)
            if served and raws and len(raws[0]) + 3 > budget:
                break  # only the first log may go over: a record larger than the budget must still pass
            served.append((f.device_id, f.start, raws))
            records -= len(raws)
            budget -= sum(len(r) + 3 for r in raws) + 24
        return served


def _opens_at(device_id: bytes, start: int, raws: Sequence[bytes]) -> bool:
    if not raws:
        return False
    try:
        first = decode_record(raws[0])
    except LedgerError:
        return False
    return first.device_id == device_id and first.seq == start


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
        self.device: bytes | None = None  # the log whose push it refused (`_push`), if it was one


@dataclass(slots=True)
class SyncReport:
    fetched: int = 0
    pushed: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    refused: list[SyncFailed] = field(default_factory=list)  # what the other side refused, with its code and hint
    stopped: dict[bytes, str] = field(default_factory=dict)  # device id -> the code that stopped its log's push
    # Of the log asked about (`sync_once`'s ask_forked), whether the peer holds it as forked: None when it did not
    # say (not asked, or a peer from before it could).
    forked: bool | None = None
    # Whether the peer refused this node's time (`sync_once`'s now) as a query it does not know: a peer from before.
    now_refused: bool = False
    boot_refused: bool = False
    steps_refused: bool = False
    bytes_sent: int = 0
    bytes_received: int = 0


BUSY_RETRIES = 8  # 5.03 answers waited out per request, each for its Max-Age
BUSY_WAIT_S = 60.0
REPLAY_RETRIES = 3  # OSCORE requests sent again after the peer refused them unread (see _request)


_TAGS = itertools.count()


async def _request(ctx: aiocoap.Context, code: Code, uri: str, payload: bytes = b"",
                   timeout: float = 30.0, *, tagged: bool = False) -> bytes:
    # Request-Tag (RFC 9175): a server keeps the blocks of one block-wise request body apart by it, so
    # several POSTs to one resource may be in flight at once (`tagged`) without their blocks being mixed.
    tag = (next(_TAGS) & 0xFFFFFFFF).to_bytes(4, "big") if tagged else None
    busy = replays = 0
    while True:
        msg = aiocoap.Message(code=code, uri=uri, payload=payload, content_format=CBOR if payload else None)
        if tag is not None:
            msg.opt.request_tag = [tag]
        # Not wait_for: on Python 3.11 it drops a cancel that lands as the response arrives (CPython gh-86296),
        # and a sync loop told to stop would carry on.
        try:
            async with asyncio.timeout(timeout):
                response = await blocks.request(ctx, msg)
        except NotAProtectedMessage as exc:
            plain = exc.plain_message
            # A peer whose table of recent message ids is full answers before OSCORE reads the request, so its
            # 5.03 is unprotected: busy, as below (it can only make the sender wait, BUSY_RETRIES times at most).
            if plain.code == Code.SERVICE_UNAVAILABLE and busy < BUSY_RETRIES:
                busy += 1
                await asyncio.sleep(min(float(plain.opt.max_age or 1), BUSY_WAIT_S))
                continue
            # An OSCORE request answered unprotected 4.01 was refused unread: with requests in flight on several
            # lanes (coap_server/lanes.py), a block retransmitted after a loss can come after the others moved
            # the peer's replay window (32 sequence numbers) past it. Sent again it gets a new number.
            if plain.code != Code.UNAUTHORIZED or replays == REPLAY_RETRIES:
                raise
            replays += 1
            continue
        if response.code != Code.SERVICE_UNAVAILABLE or busy == BUSY_RETRIES:
            break
        busy += 1
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


async def _sized(ctx: aiocoap.Context, size: RequestSize, code: Code, uri: str, payload: bytes = b"", *,
                 tagged: bool = False) -> bytes:
    """A records request whose outcome sizes the next: a refusal says nothing about the link, so only a
    request lost in transit (timed out, the transport gave up) or answered counts."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    try:
        data = await _request(ctx, code, uri, payload, timeout=size.timeout, tagged=tagged)
    except SyncFailed:
        raise
    except Exception:
        size.failed()
        raise
    size.succeeded(loop.time() - sent)
    return data


@dataclass(frozen=True, slots=True)
class _Wire:
    """How one round's records requests reach the peer: CoAP over TCP carries them at once on one context
    (`width` None); over UDP a context carries one at a time (aiocoap's NSTART = 1), so with `lanes` each
    request in flight takes a lane of its own, and without them they go one by one."""

    ctx: aiocoap.Context
    lanes: Lanes | None
    width: int | None

    @classmethod
    def to(cls, base: str, ctx: aiocoap.Context, lanes: Lanes | None) -> _Wire:
        if not base.startswith("coap://"):
            return cls(ctx, None, None)
        if lanes is None or lanes.width == 1:
            return cls(ctx, None, 1)
        return cls(ctx, lanes, lanes.width)

    def depth(self, size: RequestSize) -> int:
        """Requests of one log to keep in flight."""
        return size.in_flight if self.width is None else min(size.in_flight, self.width)

    async def send(self, size: RequestSize, code: Code, uri: str, payload: bytes = b"") -> bytes:
        tagged = self.width != 1 and bool(payload)  # bodies of one log in flight at once: keep their blocks apart
        if self.lanes is None:
            return await _sized(self.ctx, size, code, uri, payload, tagged=tagged)
        async with self.lanes.lane() as ctx:
            return await _sized(ctx, size, code, uri, payload, tagged=tagged)


async def sync_once(ctx: aiocoap.Context, base: str, local: LogHolder, *, limits: Limits = Limits(),
                    push: bool = True, pull: bool = True, blocked: frozenset[bytes] = frozenset(),
                    size: RequestSize | None = None, lanes: Lanes | None = None,
                    own: bytes | None = None, ask_forked: bool = False, now: Callable[[], int] | None = None,
                    boot: Callable[[], int] | None = None,
                    steps: Callable[[], Sequence[tuple[int, int]]] | None = None) -> SyncReport:
    """One anti-entropy round with the node at `base` (coap://host:port): exchange heads, fetch, push. `own` is
    the log this node signs, whose last record is pushed where the node holds as many but another (`plan`);
    with `ask_forked` the node is also asked whether it holds that log as forked (`report.forked`), and with `now`
    (this node's clock) told this node's time, so that a hub measures how far its clock is off, with `boot`
    (this node's boot count) which boot that clock is of, and with `steps` where that clock stepped in that boot
    (`(seq, seconds)`: the first record made after it moved by that much; the last MAX_STEPS are told).

    Records requests carry what `size` allows; pass the same `size` to every round with a peer so that it
    follows the link (halved when a request is lost, grown back when they finish quickly). Over UDP the
    records requests of one log, and the ranges requests of many logs, are in flight at once only on `lanes`
    opened beside `ctx` (coap_server/lanes.py), one on each; without them they go one at a time."""
    report = SyncReport()
    if size is None:
        size = RequestSize(limits)
    mine = await asyncio.to_thread(local.heads)
    theirs = await remote_heads(ctx, base, limits, report, forked=own if ask_forked else None, now=now, boot=boot,
                                steps=steps)
    actions = plan({h.device_id: h for h in mine}, theirs, limits=limits, push=push, pull=pull, blocked=blocked,
                   own=own)
    # On one UDP context aiocoap sends a peer one message at a time (NSTART = 1): requests in flight there
    # would only interleave their blocks, and a range held back for its turn holds the one message slot.
    wire = _Wire.to(base, ctx, lanes)
    fetches = [a for a in actions if isinstance(a, Fetch)]
    if len(fetches) > 1:
        fetches = await _fetch_many(wire, base, local, fetches, size, limits, report)
    for fetch in fetches:
        await _fetch(wire, base, local, fetch, size, limits, report)
    for run in _joined([a for a in actions if isinstance(a, Push)]):
        await _push(wire, base, local, run, size, report)
    return report


def _joined(pushes: list[Push]) -> list[Push]:
    """One push per run of adjacent ranges of a log (the plan cuts them to one request each)."""
    out: list[Push] = []
    for p in pushes:
        if out and out[-1].device_id == p.device_id and out[-1].end == p.start:
            out[-1] = Push(p.device_id, out[-1].start, p.end)
        else:
            out.append(p)
    return out


async def _drain(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Stop requests still in flight (the round is failing) and wait until they are gone."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


REFUSAL_MEMORY_S = 3600.0  # how long a node's refusal of a log as unknown keeps it from being pushed there again
REFUSALS_HELD = 4096  # (node, log) refusals remembered at once, per holder; the oldest go first
REMEMBERED = frozenset({"UNKNOWN_DEVICE"})  # the refusals remembered: the node will not take that log at all


class PushRefusals:
    """The logs that nodes refused as unknown to them (UNKNOWN_DEVICE: a hub that never enrolled that device),
    so that `_push` does not send them there again every round: made-up logs a LAN host pushed to an edge would
    otherwise go to the hub each round, forever. A refusal is held for `hold_s` (an hour), or until `forget`
    (the owner's enrollment changed); at most `most` at once, the oldest dropped first. Which refusals to
    remember is the caller's choice (an edge does not remember them of its own log, `edge.sync`)."""

    def __init__(self, *, hold_s: float = REFUSAL_MEMORY_S, most: int = REFUSALS_HELD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s, self.most, self.clock = hold_s, most, clock
        self._until: dict[tuple[str, bytes], float] = {}  # (node's base url, device id) -> when it lapses

    def remember(self, base: str, device_id: bytes) -> None:
        key = (base, device_id)
        self._until.pop(key, None)
        while len(self._until) >= self.most:
            del self._until[next(iter(self._until))]
        self._until[key] = self.clock() + self.hold_s

    def holds(self, base: str, device_id: bytes) -> bool:
        until = self._until.get((base, device_id))
        if until is None:
            return False
        if until <= self.clock():
            del self._until[(base, device_id)]
            return False
        return True

    def forget(self, base: str | None = None) -> None:
        """Drop what `base` refused (every node's, without it): pushed again at the next round."""
        for key in [k for k in self._until if base is None or k[0] == base]:
            del self._until[key]

    def __len__(self) -> int:
        return len(self._until)


# Each holder's memory, beside it rather than in it: the holder is whatever the node syncs through (the edge's
# store behind its quota and revocation guard), and what it refused elsewhere is not the store's business.
_REFUSALS: weakref.WeakKeyDictionary[Any, PushRefusals] = weakref.WeakKeyDictionary()


def push_refusals(holder: Any) -> PushRefusals:
    """The memory of what nodes refused of `holder`'s logs: `_push` sends nothing of a log it holds for a node.
    A holder that cannot be weakly referred to or hashed gets one that nothing reads (it remembers nothing)."""
    try:
        memory = _REFUSALS.get(holder)
        if memory is None:
            memory = _REFUSALS[holder] = PushRefusals()
    except TypeError:
        memory = PushRefusals()
    return memory


async def _push(wire: _Wire, base: str, local: LogHolder, push: Push, size: RequestSize,
                report: SyncReport) -> None:
    """Send records [start, end) of a log, up to `size.in_flight` requests in flight (as many as `wire`
    carries at once): the next range is read from the store and sent while the peer verifies and stores the
    ones before it, which it takes in order.

    The first refusal or problem stops the rest of the log: what is in flight is waited for and counted,
    and its refusals (OUT_OF_ORDER behind the first) are not reported again. Ranges refused OUT_OF_ORDER
    otherwise (their predecessor came later than the peer waits: a block lost and sent again) are sent again
    from the head the peer reported, as many at once as before; refused again from the same head, or taken
    before their predecessor (a receiver that does not keep order: BROKEN_CHAIN with its length short of the
    range), the rest goes one request at a time. A log the peer refused before as unknown to it, and that is
    remembered so (`push_refusals`), is not sent."""
    device = push.device_id
    try:
        memory = _REFUSALS.get(local)
    except TypeError:  # a holder that cannot be weakly referred to or hashed: it has no memory
        memory = None
    if memory is not None and memory.holds(base, device):
        return
    uri = f"{base}/sync/records"
    flight: deque[tuple[int, int, asyncio.Task[bytes]]] = deque()
    at = push.start  # next seq to send
    stored = push.start  # the peer holds at least this much
    stopped = False  # a refusal or problem: send nothing more of this log
    reorder = False  # the peer took a range out of order: the rest goes one at a time from its head
    late = False  # ranges refused OUT_OF_ORDER: sent again from the peer's head
    again_from = -1  # the head the last ranges were sent again from
    try:
        while True:
            while not stopped and not reorder and not late and at < push.end and len(flight) < wire.depth(size):
                end = min(push.end, at + size.records)
                raws = records_within(await asyncio.to_thread(local.log_range, device, at, end), size.bytes)
                if not raws:
                    stopped = True
                    break
                body = encode_records(device, at, raws)
                report.bytes_sent += len(body)
                flight.append((at, at + len(raws), asyncio.create_task(wire.send(size, Code.POST, uri, body))))
                at += len(raws)
            if not flight:
                if stopped or stored >= push.end or not (reorder or late):
                    return
                if not reorder and stored > again_from:
                    at, again_from, late = stored, stored, False
                    continue
                if size.window == 1:  # already one at a time: the peer's word on its head is wrong
                    report.problems.append(f"{device.hex()}: the peer refused a range that starts at the "
                                           f"head it reported ({stored})")
                    return
                size.serial()
                at, reorder, late = stored, False, False
                continue
            sent_at, sent_to, task = flight.popleft()
            try:
                ack = cbor2.loads(await task)
            except SyncFailed as exc:
                if exc.code == OutOfOrder.code:
                    late = True  # behind a refusal it says nothing new
                elif not stopped:
                    exc.device = device
                    report.problems.append(f"{device.hex()}: {exc}")
                    report.refused.append(exc)
                    report.stopped[device] = exc.code
                    stopped = True
                continue
            report.pushed += ack.get("accepted", 0)
            report.duplicates += ack.get("duplicates", 0)
            length = ack.get("length")
            if type(length) is int and length > stored:
                stored = length
            problem = ack.get("problem")
            if not problem:
                stored = max(stored, sent_to)
                continue
            if (_problem_code(problem) == BrokenChain.code and not ack.get("accepted")
                    and type(length) is int and length < sent_at):
                reorder = True  # taken before the range that leads to it: not the records' fault
            elif not stopped:
                report.problems.append(f"{device.hex()}: {problem}")
                report.stopped[device] = _problem_code(problem) or str(problem)
                stopped = True
    finally:
        await _drain([task for _, _, task in flight])


def _problem_code(problem: Any) -> str | None:
    """The code of an ack's problem: a hub says {code, message}, an edge "CODE: message"."""
    if isinstance(problem, dict):
        code = problem.get("code")
        return code if isinstance(code, str) else None
    if isinstance(problem, str):
        return problem.partition(":")[0]
    return None


async def _fetch(wire: _Wire, base: str, local: LogHolder, fetch: Fetch, size: RequestSize,
                 limits: Limits, report: SyncReport) -> None:
    """Fetch records [start, end) of one log, up to `size.in_flight` requests in flight (as `wire` allows),
    taken in by `local` in order while the next answers arrive. The peer's `end` is only its word: an empty
    answer ends the log. An answer shorter than asked (the peer's own limits) makes the requests after it
    start at the wrong seq: they are dropped and asked again, in steps of what the peer serves."""
    device = fetch.device_id
    flight: deque[tuple[int, int, asyncio.Task[bytes]]] = deque()
    taking: asyncio.Task[bool] | None = None
    asked = fetch.start  # next seq to ask for
    step: int | None = None  # what the peer serves a request, once an answer was shorter than asked
    try:
        while True:
            while asked < fetch.end and len(flight) < wire.depth(size):
                to = min(fetch.end, asked + (size.records if step is None else min(step, size.records)))
                flight.append((asked, to, asyncio.create_task(wire.send(
                    size, Code.GET, f"{base}/sync/records?d={device.hex()}&from={asked}&to={to}"))))
                asked = to
            if not flight:
                return
            first, to, task = flight.popleft()
            data = await task
            report.bytes_received += len(data)
            device_id, start, raws = decode_records(data, limits)
            if device_id != device or start != first or not raws:
                return
            if first + len(raws) < to:
                step = len(raws)
                await _drain([t for _, _, t in flight])
                flight.clear()
                asked = first + len(raws)
            if taking is not None and not await taking:
                return
            taking = asyncio.create_task(_receive(local, device, raws, report))
    finally:
        await _drain([t for _, _, t in flight])
        if taking is not None:
            await taking  # a thread cannot be stopped half-way: what it took in is counted


async def get_records(ctx: aiocoap.Context, base: str, device_id: bytes, start: int, end: int, *,
                      limits: Limits = Limits(), timeout: float = 30.0) -> list[bytes]:
    """Records [start, end) of one log as the node at `base` holds them: fewer (its own limits, or its log ends
    sooner), none past its end. Unverified: the caller's store verifies what it takes. A refusal raises
    SyncFailed with the node's code."""
    data = await _request(ctx, Code.GET, f"{base}/sync/records?d={device_id.hex()}&from={start}&to={end}",
                          timeout=timeout)
    got, first, raws = decode_records(data, limits)
    if raws and (got != device_id or first != start):
        raise SyncError(f"asked {base} for records of {device_id.hex()} from seq {start}, got {got.hex()} from "
                        f"seq {first}")
    return raws


async def present_checkpoint(ctx: aiocoap.Context, base: str, held: bytes, *, timeout: float = 30.0) -> bytes:
    """POST the hub checkpoint this node holds (its COSE_Sign1 bytes; empty when it holds none) to the hub at
    `base`; the answer's bytes (FORMAT.md §10.2), unverified. A refusal raises SyncFailed with the hub's code."""
    return await _request(ctx, Code.POST, f"{base}/checkpoint", held, timeout=timeout)


async def held_checkpoint(ctx: aiocoap.Context, base: str, *, timeout: float = 30.0) -> bytes | None:
    """GET the hub checkpoint the node at `base` holds (a hub: its latest; an edge: the one of its hub it verified
    last, FORMAT.md §10.2), as COSE_Sign1 bytes, unverified; None when it holds none."""
    try:
        return await _request(ctx, Code.GET, f"{base}/checkpoint", timeout=timeout)
    except SyncFailed as exc:
        if exc.code == "NOT_FOUND" or exc.code.startswith("4.04"):  # none held, or a node without the resource
            return None
        raise


async def consistency_answer(ctx: aiocoap.Context, base: str, first: int, second: int, *,
                             timeout: float = 30.0) -> bytes:
    """GET the hub's consistency proof between tree sizes `first` and `second`: the answer's bytes, unverified
    (`ledger.follow.decode_consistency_answer`)."""
    return await _request(ctx, Code.GET, f"{base}/proofs/consistency?from={first}&to={second}", timeout=timeout)


async def remote_heads(ctx: aiocoap.Context, base: str, limits: Limits = Limits(),
                       report: SyncReport | None = None, *, forked: bytes | None = None,
                       now: Callable[[], int] | None = None, boot: Callable[[], int] | None = None,
                       steps: Callable[[], Sequence[tuple[int, int]]] | None = None) -> list[Head]:
    """The peer's heads, a page at a time (a peer that does not page answers with all of them at once). With
    `forked` (a device id), the first page also asks whether the peer holds that log as forked, and `report`
    says (`report.forked`); with `now`, it also tells the peer this node's time, read as the request leaves,
    with `boot` this node's boot count, and with `steps` where its clock stepped in that boot (the last MAX_STEPS,
    when there are any). A peer from before it could refuses any of them (4.00), and is asked without the steps
    (`report.steps_refused`), then without the boot (`report.boot_refused`), then without the time
    (`report.now_refused`)."""
    heads: list[Head] = []
    after = b""
    body = encode_heads([])  # the peer answers with its own heads whatever ours are: spare the bytes
    while True:
        uri = f"{base}/sync/heads?after={after.hex()}"
        ask = forked is not None and not after
        ask_q = f"&forked={forked.hex()}" if ask and forked is not None else ""
        tell_q = f"&now={now()}" if now is not None and not after else ""
        boot_q = f"&boot={boot()}" if boot is not None and tell_q else ""
        stepped = list(steps())[-MAX_STEPS:] if steps is not None and boot_q else []
        steps_q = "&steps=" + ",".join(f"{at}:{seconds}" for at, seconds in stepped) if stepped else ""
        # A peer from before a query refuses it (4.00): the steps are dropped first, then the boot, then the time,
        # then the question.
        for query in dict.fromkeys((uri + ask_q + tell_q + boot_q + steps_q, uri + ask_q + tell_q + boot_q,
                                    uri + ask_q + tell_q, uri + ask_q, uri)):
            try:
                data = await _request(ctx, Code.POST, query, body)
                break
            except SyncFailed as exc:
                if query == uri or exc.code != "BAD_REQUEST":
                    raise
                if steps_q and query.endswith(steps_q) and report is not None:
                    report.steps_refused = True
                elif boot_q and query.endswith(boot_q) and report is not None:
                    report.boot_refused = True
                elif tell_q and query.endswith(tell_q) and report is not None:
                    report.now_refused = True
        if report is not None:
            report.bytes_sent += len(body)
            report.bytes_received += len(data)
        page, more, held = decode_heads_page_forked(data, after, limits)
        if ask and held is not None and report is not None:
            report.forked = forked in held
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


async def _fetch_many(wire: _Wire, base: str, local: LogHolder, fetches: list[Fetch], size: RequestSize,
                      limits: Limits, report: SyncReport) -> list[Fetch]:
    """Fetch the start of many logs' ranges, as many logs a request as `size` allows records; return what is
    left to fetch a log at a time (the rest of long ranges, logs the answer left out, all of them from a peer
    without /sync/ranges). Requests are in flight as many at once as `wire` carries for one log, and the next
    answers arrive while `local` takes in the last."""
    left: list[Fetch] = []
    flight: deque[tuple[list[Fetch], int, asyncio.Task[bytes]]] = deque()  # the logs asked, the body's size
    taking: asyncio.Task[None] | None = None
    waiting: asyncio.Task[None] | None = None  # the take before `taking`
    at = 0
    try:
        while True:
            while at < len(fetches) and len(flight) < wire.depth(size):
                chunk: list[Fetch] = []
                cut: list[Fetch] = []
                asked = 0  # as many records in all as one request of `size` carries
                while at < len(fetches) and (not chunk or asked < size.records):
                    f = fetches[at]
                    take = min(f.end - f.start, size.records - asked) if chunk else min(f.end - f.start,
                                                                                          size.records)
                    chunk.append(f)
                    cut.append(Fetch(f.device_id, f.start, f.start + take))
                    asked += take
                    at += 1
                body = encode_ranges_request(cut)
                flight.append((chunk, len(body), asyncio.create_task(
                    wire.send(size, Code.POST, f"{base}/sync/ranges", body))))
            if not flight:
                return left
            chunk, sent, task = flight.popleft()
            try:
                data = await task
            except SyncFailed:  # an older peer, or one that refuses: each log on its own, as before
                left.extend(chunk)
                left.extend(f for logs, _, _ in flight for f in logs)
                left.extend(fetches[at:])
                return left
            report.bytes_sent += sent
            report.bytes_received += len(data)
            served = {device_id: (start, raws) for device_id, start, raws in decode_ranges(data, limits)}
            wanted = [(f, served[f.device_id][1]) for f in chunk
                      if served.get(f.device_id, (-1, []))[0] == f.start and served[f.device_id][1]]
            left.extend(f for f in chunk if served.get(f.device_id, (-1, []))[0] != f.start)
            if waiting is not None:
                await waiting  # at most two answers taken in at once: one merged, the next checked ahead
            waiting = taking
            taking = asyncio.create_task(_take(local, wanted, left, report, after=taking))
    finally:
        await _drain([task for _, _, task in flight])
        if taking is not None:
            await taking  # a thread cannot be stopped half-way: what it took in is counted


async def _take(local: LogHolder, wanted: list[tuple[Fetch, list[bytes]]], left: list[Fetch],
                report: SyncReport, *, after: asyncio.Task[None] | None = None) -> None:
    """Take in one answer's ranges after the answer before (`after`). A holder that verifies many logs at once
    gets the ranges' signatures checked ahead first (`check_ahead`), so its workers check them while it merges
    and commits the answer before."""
    many = getattr(local, "receive_many", None)  # a holder that verifies many logs at once
    ahead = getattr(local, "check_ahead", None)
    items = [(f.device_id, raws) for f, raws in wanted]
    checks = await asyncio.to_thread(ahead, items) if many is not None and ahead is not None and items else None
    if after is not None:
        await after
    if many is not None:
        results = await asyncio.to_thread(many, items, checks)
    else:
        results = [await asyncio.to_thread(local.receive, f.device_id, raws) for f, raws in wanted]
    for (f, raws), result in zip(wanted, results, strict=True):
        if _count(f.device_id, result, report) and f.start + len(raws) < f.end:
            left.append(Fetch(f.device_id, f.start + len(raws), f.end))
