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

from ledger import LedgerError, SyncError
from ledger.sync import (
    Fetch,
    Head,
    Limits,
    Push,
    RequestSize,
    decode_heads,
    decode_records,
    encode_heads,
    encode_records,
    plan,
)

from .errors import error_response

log = logging.getLogger("jejak.sync")
CBOR = 60


class LogHolder(Protocol):
    """What a node that holds logs offers to sync: the hub, or an edge with its replicas."""

    def heads(self) -> list[Head]: ...
    def log_range(self, device_id: bytes, start: int, end: int) -> list[bytes]: ...
    def receive(self, device_id: bytes, raws: Sequence[bytes]) -> dict[str, Any]:
        """Verify and store offered records; return {"accepted", "duplicates", "length", "problem"}."""
        ...


def _ok(code: Code, payload: bytes) -> aiocoap.Message:
    return aiocoap.Message(code=code, content_format=CBOR, payload=payload)


class HeadsResource(resource.Resource):
    """POST our heads, get theirs back."""

    def __init__(self, holder: LogHolder, limits: Limits,
                 visible: Callable[[aiocoap.Message, list[Head]], list[Head]] | None = None) -> None:
        super().__init__()
        self.holder, self.limits = holder, limits
        self.visible = visible  # security hook: only the heads of logs the asking peer may read

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            decode_heads(request.payload, self.limits)
            heads = await asyncio.to_thread(self.holder.heads)
        except LedgerError as exc:
            return error_response(exc)
        if self.visible is not None:
            heads = self.visible(request, heads)
        return _ok(Code.CONTENT, encode_heads(heads))


class RecordsResource(resource.Resource):
    """GET a range of a log (?d=<device hex>&from=N&to=M); POST records to be verified and stored."""

    def __init__(self, holder: LogHolder, limits: Limits) -> None:
        super().__init__()
        self.holder, self.limits = holder, limits

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            query = dict(q.split("=", 1) for q in request.opt.uri_query)
            device_id = bytes.fromhex(query["d"])
            if len(device_id) != 16:
                raise ValueError("device id")
            start = int(query.get("from", "0"))
            end = min(int(query.get("to", str(start + self.limits.records_per_request))),
                      start + self.limits.records_per_request)
        except (ValueError, KeyError):
            return error_response(SyncError("expected ?d=<device hex>&from=<seq>&to=<seq>"))
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


def _fit(raws: list[bytes], budget: int) -> list[bytes]:
    out, used = [], 0
    for raw in raws:
        used += len(raw) + 3
        if out and used > budget:
            break
        out.append(raw)
    return out


def add_sync_resources(site: resource.Site, holder: LogHolder, limits: Limits = Limits(), *,
                       visible: Callable[[aiocoap.Message, list[Head]], list[Head]] | None = None) -> None:
    site.add_resource(["sync", "heads"], HeadsResource(holder, limits, visible))
    site.add_resource(["sync", "records"], RecordsResource(holder, limits))


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


async def _request(ctx: aiocoap.Context, code: Code, uri: str, payload: bytes = b"",
                   timeout: float = 30.0) -> bytes:
    msg = aiocoap.Message(code=code, uri=uri, payload=payload, content_format=CBOR if payload else None)
    # Not wait_for: on Python 3.11 it drops a cancel that lands as the response arrives (CPython gh-86296),
    # and a sync loop told to stop would carry on.
    async with asyncio.timeout(timeout):
        response = await ctx.request(msg).response
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
    out = encode_heads(mine)
    theirs_raw = await _request(ctx, Code.POST, f"{base}/sync/heads", out)
    report.bytes_sent += len(out)
    report.bytes_received += len(theirs_raw)
    theirs = decode_heads(theirs_raw, limits)
    for action in plan({h.device_id: h for h in mine}, theirs, limits=limits, push=push, pull=pull,
                       blocked=blocked):
        if isinstance(action, Fetch):
            start = action.start
            while start < action.end:
                data = await _sized(ctx, size, Code.GET, f"{base}/sync/records?d={action.device_id.hex()}"
                                                         f"&from={start}&to={min(action.end, start + size.records)}")
                report.bytes_received += len(data)
                device_id, _, raws = decode_records(data, limits)
                if device_id != action.device_id or not raws:
                    break
                result = await asyncio.to_thread(local.receive, action.device_id, raws)
                report.fetched += result["accepted"]
                report.duplicates += result["duplicates"]
                if result.get("problem"):
                    report.problems.append(f"{action.device_id.hex()}: {result['problem']}")
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
