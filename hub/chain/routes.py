"""HTTP routes of the dashboard's chain side: device health and the front page's summary across domains."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..mbg.routes import checked_date
from ..paging import page_query
from ..routing import json_route
from .view import chain_health

if TYPE_CHECKING:
    from ..views import Views


class ChainRoutes:
    def __init__(self, views: Views) -> None:
        self.views = views

    def health(self, query: Any) -> dict[str, Any]:
        after, limit = page_query(query.items())
        return chain_health(self.views.hub, self.views.clock(), after=after, limit=limit)

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/chain/health", json_route(lambda q, m: self.health(q)))
        r.add_get("/api/dashboard/summary", json_route(lambda q, m: self.views.summary(checked_date(q.get("date")))))
