"""Client endpoints beside a context, so that several requests to one peer are on the wire at once over UDP.

aiocoap 0.4.17 keeps one confirmable exchange per remote endpoint in flight (NSTART = 1, RFC 7252 section 4.7;
its TransportTuning.NSTART is never read): every request that one client context sends a peer over UDP waits
for the one before, block by block. A lane is one more client context, with a socket (a source port), message
ids and that one-exchange budget of its own, so `Lanes` of width 4 carries four requests to a peer at once;
congestion-wise that is NSTART = 4, which RFC 7252 section 4.8 leaves to the application on a known network.

The peer sees one client on several ports. What it keys by the remote endpoint stays apart per lane: message
deduplication (coap_server/exchanges.py) and the blocks of a block-wise request (each request goes out on one
lane from its first block to its last). What spans the lanes is keyed by the log (a receiver's ordering of
pushed ranges, coap_server.sync.RecordsResource) or by the OSCORE context, which the lanes share with the
context they were opened beside: one sender sequence for all of them, and one replay window at the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiocoap

WIDTH = 4  # as many as a sync pusher keeps in flight (ledger.sync.RequestSize.window)


class _Sharing(aiocoap.Context):
    """A client context whose credentials are another's: the same map, so what is installed in it later (an
    OSCORE context for a new peer) reaches every lane."""

    credentials: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set, not passed: aiocoap keeps `client_credentials or CredentialsMap()`, and a map with nothing
        # installed yet is empty, so falsy: the lane would get a map of its own that later installs never reach,
        # and send what should be protected in the clear.
        self.client_credentials = self.credentials


class Lanes:
    """`ctx` and `width - 1` client contexts opened beside it; a request takes one that carries nothing else.

    Use `async with Lanes(ctx) as lanes` (the contexts opened here are shut on leaving; `ctx` stays the
    caller's), then `async with lanes.lane() as c: ... c.request(...)` for each request."""

    def __init__(self, ctx: aiocoap.Context, width: int = WIDTH) -> None:
        if width < 1:
            raise ValueError(f"lanes: expected a width of at least 1, got {width}")
        self.ctx = ctx
        self.width = width
        self.opened: list[aiocoap.Context] = []
        self._free: asyncio.Queue[aiocoap.Context] = asyncio.Queue()
        self._free.put_nowait(ctx)

    async def __aenter__(self) -> Lanes:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        class SharingContext(_Sharing):
            credentials = self.ctx.client_credentials

        try:
            while len(self.opened) < self.width - 1:
                # aiocoap's default transports, as `ctx` has: OSCORE among them, so a protected request stays so.
                lane = await SharingContext.create_client_context()
                self.opened.append(lane)
                self._free.put_nowait(lane)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        opened, self.opened = self.opened, []
        for lane in opened:
            with contextlib.suppress(Exception):
                await lane.shutdown()

    @property
    def contexts(self) -> list[aiocoap.Context]:
        return [self.ctx, *self.opened]

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[aiocoap.Context]:
        """A context that carries no other request of ours meanwhile (waits for one to be free)."""
        while (ctx := await self._free.get()) is not self.ctx and ctx not in self.opened:
            pass  # one that `close` shut: dropped
        try:
            yield ctx
        finally:
            if ctx is self.ctx or ctx in self.opened:
                self._free.put_nowait(ctx)
