"""What every domain route module shares: a query run off the event loop, answered as JSON or as its typed error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from coap_server.errors import RequestError

from .http import error_response
from .markets.errors import MarketError
from .mbg import MbgError

Query = Callable[[Any, Any], dict[str, Any]]


def json_route(fn: Query, doc: str = "") -> Callable[[web.Request], Any]:
    """A GET handler: `fn(query, match_info)` runs in a worker thread (the analytics are CPU work); a domain's
    typed error or a bad query parameter (coap_server.params) is answered as that error."""
    async def handler(request: web.Request) -> web.Response:
        try:
            body = await asyncio.to_thread(fn, request.query, request.match_info)
        except (MbgError, MarketError, RequestError) as exc:
            return error_response(exc)
        return web.json_response(body)
    handler.__doc__ = doc or None  # hub/apidoc.py describes the route for /api/openapi.json
    return handler
