"""The HTTP connections edge and hub serve: a deadline for every request head, and requests aiohttp
cannot read refused with a JSON body instead of its plain-text page and a traceback in the log.

aiohttp 3.14 closes a connection that waits too long between requests (keepalive_timeout), but not one that has
not finished the head of its first request: a client that sends "GET / HTTP/1.1" and then one header line every
few seconds (slowloris) kept its connection, and a file descriptor of the server's, for as long as it went on, so
a few thousand of them took every descriptor the process had. Nor, on a connection kept alive, one that answered a
first request and then trickled the next one's head. A request line or header over aiohttp's limits
(8,190 bytes), or bytes that are not HTTP, were answered in plain text and logged at ERROR with a traceback.

Nor did aiohttp bound how many connections it holds: each one whose head came in time was kept for as long as its
request ran (a body sent a byte at a time, an event stream). `guard` takes a `Cap`: a connection over the total,
or over its address's share, is answered 503 TOO_MANY_CONNECTIONS with Retry-After before anything is read, and
closed; the refusals are counted and logged at most once a minute (coap_server/limits.py). Before refusing, a
connection that waits for a request (opened and not yet used, half a head sent, or kept alive after its answer)
gives its place up: the oldest of them, of the same address when that address's share is what is full. A few
hosts opening connections and sending nothing, or half a head, once held every place for HEAD_S at a time and
kept phones and operators out with a few connections a second; now they only push each other out, and a place
is refused only when every connection is busy with a request.

Nor did it bound how long a request's body may take once its head came: a POST whose body trickled in a byte
every few seconds held its connection, and a place under the cap, as long as the client liked. A body now comes
at the pace `BodyPace` sets or its request is answered 408 BODY_TOO_SLOW and its connection closed (counted and
logged as the refusals are). And a live event stream learns at once that its client left (`closed`), rather
than at its next write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler

from ledger.errors import CodedError

from .errors import BodyTooSlow, TooManyConnections
from .limits import Cap, Refusals, Slots

log = logging.getLogger("jejak.http")

HEAD_S = 20.0  # from a connection's opening, or a later request's first byte, to the end of the request's head
REFUSED_LINGER_S = 1.0  # a refused connection's answer has this long to be read before the socket closes


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyPace:
    """How slowly a request's body may come: all of it within `grace_s` of its head, plus a second for every
    `min_rate` bytes that came. A body sent at `min_rate` bytes a second or faster is never cut, whatever its
    size (a 4 MB push over a weak link), and one that stalls has `grace_s` and what it earned to resume; one
    trickled slower is closed, so holding a connection costs a client `min_rate` bytes a second."""

    grace_s: float = 30.0
    min_rate: int = 1024  # bytes a second

    def __post_init__(self) -> None:
        if not self.grace_s > 0:
            raise ValueError(f"grace_s: expected > 0 seconds, got {self.grace_s}")
        if self.min_rate < 1:
            raise ValueError(f"min_rate: expected at least 1 byte a second, got {self.min_rate}")


class _Connection(RequestHandler):
    """aiohttp's connection handler with a deadline on the first request's head and a pace for bodies; see the
    module's docstring."""

    __slots__ = ("_address", "_body", "_body_check", "_body_from", "_closed", "_head_due", "_head_from", "_heard",
                 "_held", "_open", "_pace", "_slots", "_slow")

    _slots: Slots
    _pace: BodyPace
    _slow: Refusals
    _open: dict[_Connection, None]  # the server's connections holding a place, the oldest first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._head_due: asyncio.TimerHandle | None = None
        self._head_from = 0  # requests whose head had ended when `_head_due` was set
        self._heard = False  # whether any byte came on this connection
        self._body: StreamReader | None = None  # the body being received, timed from `_body_from`
        self._body_from = 0.0
        self._body_check: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        peer = transport.get_extra_info("peername")
        self._address: str | None = str(peer[0]) if peer else "?"
        self._held = False  # whether it holds a place under the cap
        self._make_room(self._address)
        refused = self._slots.take(self._address)
        if refused is not None:  # answered and closed here: aiohttp never sees the connection
            self._address = None
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_answer(TooManyConnections(f"too many connections: {refused}; try again later")))
            _end(transport, self._loop)
            return
        self._held = True
        self._open[self] = None
        super().connection_made(transport)
        self._head_due = self._loop.call_later(HEAD_S, self._head_late)

    def _waiting(self) -> bool:
        """Whether it waits for a request: none read yet, or the last one answered and none begun, or a head under
        way. A request being handled, or its body coming, is not waiting."""
        waiter = self._waiter
        return self._body is None and not self._messages and not self._upgraded and (
            self._head_due is not None or (waiter is not None and not waiter.done()))

    def _make_room(self, address: str) -> None:
        """When the cap, or `address`'s share of it, is full: close the oldest connection that waits for a request
        (of `address`, when its share is what is full), so the new one takes its place."""
        slots, cap = self._slots, self._slots.cap
        if slots.held >= cap.total:
            mine = None
        elif slots.held_by(address) >= cap.per_address and address not in cap.shared:
            mine = address
        else:
            return
        for other in self._open:
            if (mine is None or other._address == mine) and other._waiting():
                other._release()
                other.force_close()
                log.debug("closed a connection from %s waiting for a request, for a new one from %s",
                          other._address, address)
                return

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._open.pop(self, None)
            assert self._address is not None
            self._slots.give(self._address)

    def data_received(self, data: bytes) -> None:
        if self._address is None:  # refused: whatever it sent before the close is not read
            return
        heads = self._request_count
        self._heard = self._heard or bool(data)
        super().data_received(data)
        if self._request_count > heads:  # a whole head arrived: later ones have aiohttp's keep-alive timeout
            if self._head_due is not None:
                self._head_due.cancel()
                self._head_due = None
            self._stop_body()
            body = self._messages[-1][1] if self._messages else None
            if body is not None and not body.is_eof():  # only the last head's body can still be coming
                self._body, self._body_from = body, self._loop.time()
                self._check_body()
        elif self._body is not None and self._body.is_eof():
            self._stop_body()
        elif self._body is None and self._head_due is None and self._payload_parser is None and not self._upgraded:
            # Bytes of a later request's head (not of a body, nor of a WebSocket), not ended yet: it has HEAD_S too.
            self._head_from = self._request_count
            self._head_due = self._loop.call_later(HEAD_S, self._head_late)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_due is not None:
            self._head_due.cancel()
            self._head_due = None
        self._stop_body()
        if not self._closed.done():
            self._closed.set_result(None)
        if self._address is None:
            return
        self._release()
        self._address = None
        super().connection_lost(exc)

    def _stop_body(self) -> None:
        self._body = None
        if self._body_check is not None:
            self._body_check.cancel()
            self._body_check = None

    def _check_body(self) -> None:
        """Close the connection if its body is behind its pace, else look again when it would be."""
        self._body_check = None
        body = self._body
        if body is None or body.is_eof():
            self._stop_body()
            return
        pace = self._pace
        due = self._body_from + pace.grace_s + body.total_bytes / pace.min_rate
        if due - self._loop.time() > 0.01:  # a timer may fire a little early
            self._body_check = self._loop.call_at(due, self._check_body)
            return
        self._body = None
        took = self._loop.time() - self._body_from
        err = BodyTooSlow(f"request body too slow: {body.total_bytes} bytes in {took:.0f} s after its head, "
                          f"at least {pace.min_rate} bytes a second wanted after the first {pace.grace_s:.0f} s",
                          hint="send the request again over a better link")
        self._slow.refuse(self._address or "?", err.message)
        request, transport = self._current_request, self.transport
        # Whatever the route answers from now on goes nowhere: the answer written here is the connection's last.
        self.transport = None
        self.force_close()
        body.set_exception(err)  # the route reading it stops with the coded error, not a reset
        if transport is None:
            return
        assert isinstance(transport, asyncio.WriteTransport)
        if request is not None and request.content is body and request.writer.output_size == 0:
            transport.write(_answer(err))  # else an answer, or another request's, is under way: only closed
        _end(transport, self._loop)

    def _head_late(self) -> None:
        self._head_due = None
        if self._request_count == self._head_from:
            if self._heard:
                log.warning("closed a connection whose request head took over %.0f s", HEAD_S)
            else:  # opened and never used: a browser opens spare connections ahead of the requests it may make
                log.debug("closed a connection that sent nothing in %.0f s", HEAD_S)
            self.force_close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, BodyTooSlow):  # a route stopped by `_check_body`, which answered already
            return web.json_response({"error": exc.to_dict()}, status=exc.http)
        if isinstance(exc, ConnectionResetError):  # the client left while its body came: nobody reads an answer
            log.debug("a client left before its request's body came: %s", exc)
            response = web.Response(status=400)
            response.force_close()
            return response
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        what = message or (str(exc) if exc is not None else "unreadable request")
        log.warning("refused an unreadable HTTP request (%d): %s", status, what[:200])
        body = {"error": {"code": "BAD_REQUEST", "message": f"unreadable HTTP request: {what[:200]}"}}
        response = web.Response(status=status, text=json.dumps(body), content_type="application/json")
        response.force_close()
        return response


def _answer(err: CodedError) -> bytes:
    """A whole HTTP/1.1 answer of `err` as its class declares it, written on the transport past aiohttp."""
    body = json.dumps({"error": err.to_dict()}).encode()
    retry = f"Retry-After: {err.retry_after_s}\r\n" if err.retry_after_s is not None else ""
    return (f"HTTP/1.1 {err.http} {HTTPStatus(err.http).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n").encode() + body


def _end(transport: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop) -> None:
    """Close a connection after its last answer. Closed at once, a socket with the request unread in it resets,
    and the client may lose the answer before reading it: the answer is ended, what comes is dropped, and it
    closes at the client's end or in REFUSED_LINGER_S, whichever is first."""
    if transport.can_write_eof():
        transport.write_eof()
        loop.call_later(REFUSED_LINGER_S, transport.close)
    else:
        transport.close()


def closed(request: web.BaseRequest) -> asyncio.Future[None]:
    """Done when `request`'s connection is lost: a route that holds its answer open (a live event stream) ends
    when its client leaves, not at its next write. Never done for a connection `guard` does not serve."""
    connection = request.protocol
    if isinstance(connection, _Connection):
        return connection._closed
    return asyncio.get_running_loop().create_future()


class _Server(web.Server):
    slots: Slots
    pace: BodyPace
    slow: Refusals
    open: dict[_Connection, None]

    def __call__(self) -> RequestHandler:
        connection = _Connection(self, loop=self._loop, **self._kwargs)
        connection._slots, connection._pace, connection._slow = self.slots, self.pace, self.slow
        connection._open = self.open
        return connection


def guard(runner: web.BaseRunner, cap: Cap, *, pace: BodyPace = BodyPace(), setting: str = "",
          pace_setting: str = "", tally: MutableMapping[str, int] | None = None) -> Slots:
    """Serve `runner`'s connections as above, at most `cap` of them, their bodies at `pace` (`setting` and
    `pace_setting` name where to change them), the refusals and slow bodies counted in `tally` by reason (for
    /metrics); call after `runner.setup()` and before its sites start. The connections' count is returned."""
    server = runner.server
    if server is None:
        raise RuntimeError("guard(runner): set the runner up first")
    slots = Slots(cap, "HTTP connections", log=log, setting=setting, tally=tally)
    slow = Refusals("slow HTTP request bodies", log=log, setting=pace_setting, tally=slots.refusals.tally)
    server.__class__ = type("_GuardedServer", (_Server,), {"slots": slots, "pace": pace, "slow": slow, "open": {}})
    return slots


async def read_at_most(request: web.BaseRequest, limit: int) -> bytes:
    """`request`'s body, or its first `limit` + 1 bytes when it is longer (for the caller to refuse as too large):
    every byte sent up to there, however the network cut the body into packets (one `content.read(n)` returns
    what has arrived, which may be its first byte alone)."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)
