"""The HTTP connections edge and hub serve: a deadline for a connection's first request head, and requests aiohttp
cannot read refused with a JSON body instead of its plain-text page and a traceback in the log.

aiohttp 3.14 closes a connection that waits too long between requests (keepalive_timeout), but not one that has
not finished the head of its first request: a client that sends "GET / HTTP/1.1" and then one header line every
few seconds (slowloris) kept its connection, and a file descriptor of the server's, for as long as it went on, so
a few thousand of them took every descriptor the process had. A request line or header over aiohttp's limits
(8,190 bytes), or bytes that are not HTTP, were answered in plain text and logged at ERROR with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("jejak.http")

HEAD_S = 20.0  # from a connection's opening to the end of its first request's head


class _Connection(RequestHandler):
    """aiohttp's connection handler with a deadline on the first request's head; see the module's docstring."""

    __slots__ = ("_head_due",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_due: asyncio.TimerHandle | None = self._loop.call_later(HEAD_S, self._head_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_due is not None and self._request_count:  # a whole head arrived: later ones have
            self._head_due.cancel()                                 # aiohttp's keep-alive timeout
            self._head_due = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_due is not None:
            self._head_due.cancel()
            self._head_due = None
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


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


def guard(runner: web.BaseRunner) -> None:
    """Serve `runner`'s connections as above; call after `runner.setup()` and before its sites start."""
    server = runner.server
    if server is None:
        raise RuntimeError("guard(runner): set the runner up first")
    server.__class__ = _Server
