"""The HTTP connections edge and hub serve: a deadline for a connection's first request head, and requests aiohttp
cannot read refused with a JSON body instead of its plain-text page and a traceback in the log.

aiohttp 3.14 closes a connection that waits too long between requests (keepalive_timeout), but not one that has
not finished the head of its first request: a client that sends "GET / HTTP/1.1" and then one header line every
few seconds (slowloris) kept its connection, and a file descriptor of the server's, for as long as it went on, so
a few thousand of them took every descriptor the process had. A request line or header over aiohttp's limits
(8,190 bytes), or bytes that are not HTTP, were answered in plain text and logged at ERROR with a traceback.

Nor did aiohttp bound how many connections it holds: each one whose head came in time was kept for as long as its
request ran (a body sent a byte at a time, an event stream). `guard` takes a `Cap`: a connection over the total,
or over its address's share, is answered 503 TOO_MANY_CONNECTIONS with Retry-After before anything is read, and
closed; the refusals are counted and logged at most once a minute (coap_server/limits.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .errors import TooManyConnections
from .limits import Cap, Slots

log = logging.getLogger("jejak.http")

HEAD_S = 20.0  # from a connection's opening to the end of its first request's head
REFUSED_LINGER_S = 1.0  # a refused connection's answer has this long to be read before the socket closes


class _Connection(RequestHandler):
    """aiohttp's connection handler with a deadline on the first request's head; see the module's docstring."""

    __slots__ = ("_address", "_head_due", "_slots")

    _slots: Slots

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._head_due: asyncio.TimerHandle | None = None
        peer = transport.get_extra_info("peername")
        self._address: str | None = str(peer[0]) if peer else "?"
        refused = self._slots.take(self._address)
        if refused is not None:  # answered and closed here: aiohttp never sees the connection
            self._address = None
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_refusal(refused))
            # Closed at once, a socket with the request unread in it resets, and the client may lose the answer
            # before reading it: the answer is ended, what comes is dropped, and it closes at the client's end or
            # in REFUSED_LINGER_S, whichever is first.
            if transport.can_write_eof():
                transport.write_eof()
                self._loop.call_later(REFUSED_LINGER_S, transport.close)
            else:
                transport.close()
            return
        super().connection_made(transport)
        self._head_due = self._loop.call_later(HEAD_S, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self._address is None:  # refused: whatever it sent before the close is not read
            return
        super().data_received(data)
        if self._head_due is not None and self._request_count:  # a whole head arrived: later ones have
            self._head_due.cancel()                                 # aiohttp's keep-alive timeout
            self._head_due = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_due is not None:
            self._head_due.cancel()
            self._head_due = None
        if self._address is None:
            return
        self._slots.give(self._address)
        self._address = None
        super().connection_lost(exc)

    def _head_late(self) -> None:
        self._head_due = None
        if not self._request_count:
            log.warning("closed a connection whose first request head took over %.0f s", HEAD_S)
            self.force_close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        what = message or (str(exc) if exc is not None else "unreadable request")
        log.warning("refused an unreadable HTTP request (%d): %s", status, what[:200])
        body = {"error": {"code": "BAD_REQUEST", "message": f"unreadable HTTP request: {what[:200]}"}}
        response = web.Response(status=status, text=json.dumps(body), content_type="application/json")
        response.force_close()
        return response


def _refusal(why: str) -> bytes:
    """A whole HTTP/1.1 answer 503 TOO_MANY_CONNECTIONS, written before the request is read."""
    err = TooManyConnections(f"too many connections: {why}; try again later")
    body = json.dumps({"error": err.to_dict()}).encode()
    return (f"HTTP/1.1 {err.http} Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {err.retry_after_s}\r\nConnection: close\r\n\r\n"
            ).encode() + body


class _Server(web.Server):
    slots: Slots

    def __call__(self) -> RequestHandler:
        connection = _Connection(self, loop=self._loop, **self._kwargs)
        connection._slots = self.slots
        return connection


def guard(runner: web.BaseRunner, cap: Cap, *, setting: str = "") -> Slots:
    """Serve `runner`'s connections as above, at most `cap` of them (`setting` names where to raise it); call
    after `runner.setup()` and before its sites start. The connections' count is returned."""
    server = runner.server
    if server is None:
        raise RuntimeError("guard(runner): set the runner up first")
    slots = Slots(cap, "HTTP connections", log=log, setting=setting)
    server.__class__ = type("_GuardedServer", (_Server,), {"slots": slots})
    return slots
