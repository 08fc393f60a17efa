"""CoAP over TCP (RFC 8323) served within limits: connections in all and from one address, and an idle timeout.

aiocoap's "tcpserver" takes every connection offered and keeps it until the peer closes it, so a host on the LAN
that opened connections and sent nothing, or half a message, held them (and a file descriptor each) for as
long as it liked. `serve_tcp` binds the same transport with `GuardedConnection`, aiocoap's connection with three
additions: a connection over `TcpLimits.connections` open, or over `per_address` from one address, is sent an
Abort with the reason (RFC 8323 §5.6) after its CSM and closed; a connection that neither completes a message
nor is sent one for `idle_s` is sent a Release (§5.5) and closed, a message begun and never finished being no
activity; and the refusals are counted and logged at most once a minute (`coap_server.limits`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from aiocoap import COAP_PORT, Message, defaults
from aiocoap import error as coap_error
from aiocoap.numbers.codes import ABORT, RELEASE
from aiocoap.transports.tcp import TcpConnection, TCPServer, _serialize  # aiocoap's framing of a message

from .limits import Cap, Slots

log = logging.getLogger("jejak.coap.tcp")


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpLimits:
    """What a CoAP-over-TCP server holds. A LAN's honest clients keep one connection each (aiocoap pools one per
    server) and send within a sync round (30 s by default), so `idle_s` outlasts a few rounds; a connection
    closed for idleness is opened again by the client's next request."""

    connections: int = 512
    per_address: int = 16
    idle_s: float = 120.0

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError(f"connections: expected at least 1, got {self.connections}")
        if self.per_address < 1:
            raise ValueError(f"per_address: expected at least 1, got {self.per_address}")
        if not self.idle_s > 0:
            raise ValueError(f"idle_s: expected > 0 seconds, got {self.idle_s}")


class GuardedConnection(TcpConnection):
    """aiocoap's server-side TCP connection that takes a place in its server's `Slots` and closes when idle."""

    _ctx: GuardedTCPServer

    def __init__(self, ctx: GuardedTCPServer, log: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(ctx, log, loop, is_server=True)
        self._address: str | None = None  # the place held, given back once
        self._active_at = loop.time()
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # sends our CSM, which RFC 8323 wants first even before an Abort
        server = self._ctx
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        refused = server.slots.take(address)
        if refused is not None:
            self._signal(ABORT, f"too many connections: {refused}")
            transport.close()
            return
        self._address = address
        server._pool.add(self)
        self._idle = self.loop.call_later(server.limits.idle_s, self._check_idle)

    def data_received(self, data: bytes) -> None:
        before = len(self._spool) + len(data)
        super().data_received(data)
        if len(self._spool) < before:  # a whole message was taken off the spool: a half one is no activity
            self._active_at = self.loop.time()

    def _send_message(self, msg: Message) -> None:
        super()._send_message(msg)
        self._active_at = self.loop.time()  # an answer going out: the peer is waiting on it, not idle

    def _check_idle(self) -> None:
        idle_s = self._ctx.limits.idle_s
        quiet = self.loop.time() - self._active_at
        if quiet < idle_s:
            self._idle = self.loop.call_later(idle_s - quiet, self._check_idle)
            return
        self._idle = None
        log.debug("closing CoAP-TCP connection from %s: idle for %.0f s", self._address, quiet)
        self._signal(RELEASE, f"idle for {quiet:.0f} s")
        if self._transport is not None:
            self._transport.close()

    def _signal(self, code: Any, diagnostic: str) -> None:
        """Send a Release or Abort with a diagnostic payload (aiocoap's `abort` logs a warning each time)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_serialize(Message(code=code, payload=diagnostic.encode())))

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._address is not None:
            self._ctx.slots.give(self._address)
            self._address = None
        super().connection_lost(exc)


class GuardedTCPServer(TCPServer):
    """aiocoap's "tcpserver" transport whose connections are `GuardedConnection`s under `limits`."""

    limits: TcpLimits
    slots: Slots

    @classmethod
    async def create_guarded(cls, bind: tuple[str, int], tman: Any, log_: Any, loop: asyncio.AbstractEventLoop,
                             limits: TcpLimits, *, setting: str = "",
                             tally: MutableMapping[str, int] | None = None) -> GuardedTCPServer:
        """As aiocoap's `TCPServer.create_server`, making `GuardedConnection`s (which join the pool once admitted);
        refusals are counted in `tally` by reason (for /metrics)."""
        self = cls()
        self._tokenmanager = tman
        self.log = log_
        self.limits = limits
        self.slots = Slots(Cap(total=limits.connections, per_address=limits.per_address), "CoAP-TCP connections",
                           log=log, setting=setting, tally=tally)
        host, port = bind
        try:
            self.server = await loop.create_server(
                lambda: GuardedConnection(self, log_, loop), host,
                port + (self._default_port - COAP_PORT) if port else self._default_port,
                reuse_port=defaults.has_reuse_port())
        except socket.gaierror as exc:
            raise coap_error.ResolutionError(f"No local bindable address found for {host}") from exc
        return self


async def serve_tcp(context: Any, bind: tuple[str, int], limits: TcpLimits, *, setting: str = "",
                    tally: MutableMapping[str, int] | None = None) -> GuardedTCPServer:
    """Add CoAP over TCP on `bind` to the server `context` (as transports=["tcpserver"] would), within `limits`,
    its refusals counted in `tally`."""
    loop = asyncio.get_running_loop()
    made: list[GuardedTCPServer] = []

    async def transport(tman: Any) -> GuardedTCPServer:
        made.append(await GuardedTCPServer.create_guarded(bind, tman, context.log, loop, limits, setting=setting,
                                                          tally=tally))
        return made[0]

    await context._append_tokenmanaged_transport(transport)
    return made[0]


__all__ = ["GuardedConnection", "GuardedTCPServer", "TcpLimits", "serve_tcp"]
