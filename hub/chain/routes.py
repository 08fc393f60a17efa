"""HTTP routes of the dashboard's chain side: device health and the front page's summary across domains."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..routing import json_route

if TYPE_CHECKING:
    from ..views import Views


class ChainRoutes:
    def __init__(self, views: Views) -> None:
        self.views = views

    def health(self) -> dict[str, Any]:
        v = self.views
        now = v.clock()
        with v.fresh():
            arrivals = dict(v.chain.last_arrival)
            times = dict(v.chain.last_time)
        return v.chain.health(v.hub, now, arrivals, times)

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/chain/health", json_route(lambda q, m: self.health()))
        r.add_get("/api/dashboard/summary", json_route(lambda q, m: self.views.summary()))
