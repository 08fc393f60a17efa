"""The client side of the edge's CoAP interface: submit, list logs, fetch ranges, observe heads, status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code

from ledger.sync import Limits, decode_records

from .errors import CBOR, CoapError
from .resources import Submitted

# aiocoap 0.4.17 hangs once one client context has used all 65,536 message ids (DESIGN.md pitfalls), so a
# long-lived client starts a fresh context well before that.
RENEW_AFTER = 50_000


class _Ctx:
    __slots__ = ("context", "inflight", "used")

    def __init__(self, context: aiocoap.Context) -> None:
        self.context = context
        self.used = 0
        self.inflight = 0


class EdgeClient:
    """A client of one Jejak node at `base` (coap://host:port). Use `async with EdgeClient(...)`.

    Carry many observations per request (`submit_many`) where you can: it is faster and spends fewer
    message ids. The `context` property gives the current aiocoap context to other protocol drivers
    (e.g. coap_server.sync.sync_once).
    """

    def __init__(self, base: str, *, timeout: float = 30.0, renew_after: int = RENEW_AFTER) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.renew_after = renew_after
        self._ctx: _Ctx | None = None
        self._retired: list[_Ctx] = []
        self._lock = asyncio.Lock()
        self.renewals = 0

    async def __aenter__(self) -> EdgeClient:
        await self._current()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _current(self) -> _Ctx:
        async with self._lock:
            ctx = self._ctx
            if ctx is not None and ctx.used >= self.renew_after:
                self._retired.append(ctx)
                self._ctx = ctx = None
                self.renewals += 1
            if ctx is None:
                self._ctx = ctx = _Ctx(await aiocoap.Context.create_client_context())
            for old in [c for c in self._retired if c.inflight == 0]:
                self._retired.remove(old)
                await old.context.shutdown()
            return ctx

    @property
    def context(self) -> aiocoap.Context:
        if self._ctx is None:
            raise RuntimeError("client not started: use `async with EdgeClient(...)`")
        return self._ctx.context

    async def close(self) -> None:
        for ctx in [*self._retired, *([self._ctx] if self._ctx else [])]:
            with contextlib.suppress(Exception):
                await ctx.context.shutdown()
        self._retired.clear()
        self._ctx = None

    def _uri(self, path: str, query: Sequence[str] = ()) -> str:
        return self.base + path + ("?" + "&".join(query) if query else "")

    async def request(self, code: Code, path: str, payload: bytes = b"", *, query: Sequence[str] = (),
                      content_format: int | None = None) -> aiocoap.Message:
        """One request; an error response raises CoapError with the server's stable code."""
        ctx = await self._current()
        msg = aiocoap.Message(code=code, uri=self._uri(path, query), payload=payload)
        if payload or content_format is not None:
            msg.opt.content_format = CBOR if content_format is None else content_format
        ctx.used += 1
        ctx.inflight += 1
        try:
            async with asyncio.timeout(self.timeout):
                response = await ctx.context.request(msg).response
        finally:
            ctx.inflight -= 1
        if not response.code.is_successful():
            raise CoapError.from_response(response)
        return response

    async def _get_cbor(self, path: str, query: Sequence[str] = ()) -> Any:
        return cbor2.loads((await self.request(Code.GET, path, query=query)).payload)

    async def submit(self, kind: str, body: dict[str, Any]) -> Submitted:
        """Submit one observation; returns when the node has stored it durably."""
        response = await self.request(Code.POST, "/submit", cbor2.dumps({"kind": kind, "body": body}))
        return _submitted(cbor2.loads(response.payload))

    async def submit_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Submitted]:
        """Submit many observations in one request (one commit on the node)."""
        payload = cbor2.dumps([{"kind": k, "body": b} for k, b in items])
        response = await self.request(Code.POST, "/submit", payload)
        return [_submitted(x) for x in cbor2.loads(response.payload)]

    async def logs(self) -> list[dict[str, Any]]:
        return list(await self._get_cbor("/logs"))

    async def head(self, device: bytes | str = "own") -> dict[str, Any]:
        return dict(await self._get_cbor(f"/log/{_name(device)}"))

    async def range(self, device_id: bytes, start: int, end: int) -> list[bytes]:
        """Raw records [start, end) of a log, in as many requests as the node's limits need."""
        out: list[bytes] = []
        limits = Limits(records_per_request=1 << 20, bytes_per_request=1 << 30)
        while start < end:
            response = await self.request(Code.GET, f"/log/{device_id.hex()}/records",
                                          query=(f"from={start}", f"to={end}"))
            got_device, got_start, raws = decode_records(response.payload, limits)
            if got_device != device_id or got_start != start:
                raise CoapError("SYNC_PROTOCOL", f"asked for device {device_id.hex()} from {start}, got "
                                                 f"{got_device.hex()} from {got_start}")
            if not raws:
                break
            out.extend(raws)
            start += len(raws)
        return out

    async def observe_head(self, device: bytes | str = "own") -> AsyncIterator[dict[str, Any]]:
        """The head now, then each time the log grows (until the caller stops iterating)."""
        ctx = await self._current()
        msg = aiocoap.Message(code=Code.GET, uri=self._uri(f"/log/{_name(device)}"), observe=0)
        ctx.used += 1
        ctx.inflight += 1
        req = ctx.context.request(msg)
        try:
            async with asyncio.timeout(self.timeout):
                first = await req.response
            if not first.code.is_successful():
                raise CoapError.from_response(first)
            yield dict(cbor2.loads(first.payload))
            async for note in req.observation:
                if not note.code.is_successful():
                    raise CoapError.from_response(note)
                yield dict(cbor2.loads(note.payload))
        finally:
            ctx.inflight -= 1
            if not req.observation.cancelled:
                req.observation.cancel()

    async def status(self) -> dict[str, Any]:
        return dict(await self._get_cbor("/status"))

    async def metrics(self) -> str:
        return (await self.request(Code.GET, "/metrics")).payload.decode()

    async def well_known(self) -> str:
        return (await self.request(Code.GET, "/.well-known/core")).payload.decode()

    async def tap(self, uid: str) -> list[dict[str, Any]]:
        """Tap a tag on the node's simulated reader."""
        response = await self.request(Code.POST, "/sim/tap", cbor2.dumps({"uid": uid}))
        return list(cbor2.loads(response.payload))


def _name(device: bytes | str) -> str:
    return device.hex() if isinstance(device, bytes) else device


def _submitted(item: Any) -> Submitted:
    if not isinstance(item, dict) or not isinstance(item.get("id"), bytes) or not isinstance(item.get("seq"), int):
        raise CoapError("SYNC_PROTOCOL", f"expected {{id, seq}} in the answer, got {item!r:.100}")
    return Submitted(id=item["id"], seq=item["seq"], duplicate=bool(item.get("duplicate", False)))
