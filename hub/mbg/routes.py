"""HTTP routes of the MBG dashboard: deliveries, containers, violations, exception lists, stock and EPCIS."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..markets.errors import NotFound
from ..routing import json_route
from .errors import InputError, PlanError
from .plan import local_midnight
from .stock import cards_on

if TYPE_CHECKING:
    from ..views import Views


FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(2999, 12, 31)  # the days a `date` parameter may name


def checked_date(text: str | None) -> str | None:
    """A `date` query parameter, checked: an ISO date from 1970 to 2999, as YYYY-MM-DD, or nothing. (Python's
    dates end at 9999-12-31: the day after it, which a day's answer reads, was a 500 for anyone asking.)"""
    if not text:
        return None
    try:
        local_midnight(text, 0)
        day = dt.date.fromisoformat(text)
    except PlanError:
        raise InputError(f"date: expected YYYY-MM-DD, got {text[:40]!r}", hint="e.g. ?date=2026-03-02") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InputError(f"date: expected a day from {FIRST_DAY} to {LAST_DAY}, got {day}",
                         hint="e.g. ?date=2026-03-02")
    return day.isoformat()


class MbgRoutes:
    """Answers from the MBG read model (`views.mbg`), with every queued input folded in first."""

    def __init__(self, views: Views) -> None:
        self.views = views

    def deliveries(self, date: str | None = None) -> dict[str, Any]:
        v = self.views
        now = v.clock()
        with v.fresh():
            date = checked_date(date) or v.mbg.today(now)
            per_kitchen = v.mbg.deliveries_by_kitchen(now, date)
        totals: dict[str, int] = defaultdict(int)
        kitchens = []
        for kid, k in sorted(per_kitchen.items()):
            kitchen = v.mbg.plan.kitchen(kid)
            kitchens.append({**k, "name": kitchen.name if kitchen else kid})
            for s, n in k["counts"].items():
                totals[s] += n
        return {"date": date, "now": now, "kitchens": kitchens, "totals": dict(totals)}

    def containers(self) -> dict[str, Any]:
        v = self.views
        now = v.clock()
        with v.fresh():
            date = v.mbg.today(now)
            a = v.mbg.analysis(now, (date,))
            rows = []
            for (tag, d) in sorted(a.trips):
                if d != date:
                    continue
                t = a.timeline(tag, d)
                if t is not None:
                    rows.append({"tag": tag, "school": t.school, "stage": t.stage, "steps": len(t.steps)})
        return {"date": date, "containers": rows}

    def container(self, tag: str) -> dict[str, Any]:
        v = self.views
        now = v.clock()
        with v.fresh():
            return {"tag": tag, "timelines": [t.to_dict() for t in v.mbg.container(tag, now)]}

    def violations(self, date: str | None = None) -> dict[str, Any]:
        v = self.views
        now = v.clock()
        with v.fresh():
            date = checked_date(date) or v.mbg.today(now)
            return {"date": date, "violations": [x.to_dict() for x in v.mbg.violations(now, date)],
                    "findings": [f.to_dict() for f in v.mbg.findings(now, date)]}

    def exceptions(self, kind: str, date: str | None) -> dict[str, Any]:
        """Today's (or `date`'s) late, short or missing deliveries, or lost containers."""
        v = self.views
        now = v.clock()
        if kind not in ("late", "short", "missing", "lost"):
            raise NotFound(f"no such list {kind!r}: expected late, short, missing or lost")
        with v.fresh():
            date = checked_date(date) or v.mbg.today(now)
            rows = getattr(v.mbg, kind)(now, date)
        return {"date": date, kind: [r if isinstance(r, dict) else r.to_dict() for r in rows]}

    def epcis(self, date: str | None) -> dict[str, Any]:
        v = self.views
        now = v.clock()
        with v.fresh():
            return v.mbg.epcis_document(now, checked_date(date) or v.mbg.today(now))

    def stock(self, date: str | None = None) -> dict[str, Any]:
        """Stock on hand per kitchen and item: every movement recorded, or with `date` those up to the end of that
        day at each kitchen (its own time zone), as the book stood then. The answer's `date` is the day asked, or
        null."""
        v = self.views
        day = checked_date(date)
        with v.fresh():
            cards = list(v.mbg.cards().values())
            if day is not None:
                cards = cards_on(cards, day, v.mbg.plan)
            return {"date": day, "on_hand": [c.on_hand_row() for c in cards], "cards": [c.to_dict() for c in cards]}

    def names(self) -> dict[str, Any]:
        """What people call the plan's kitchens and schools and the enrolled devices, for answers in plain words."""
        v = self.views
        plan = v.mbg.plan
        devices = {d.device_id.hex(): {"name": d.name or "", "site": d.site, "role": d.role}
                   for d in v.hub.store.devices() if d.status != "pending"}  # unapproved claims: DeviceInfo.to_json
        return {"planned": bool(plan.kitchens or plan.schools), "tz_offset_s": plan.tz_offset_s,
                # Each site's own time zone: a WIT school's 09:00 deadline is said as 09:00, not as 07:00 WIB.
                "kitchens": {k.id: {"name": k.name, "tz_offset_s": k.tz_offset_s} for k in plan.kitchens},
                "schools": {s.id: {"name": s.name, "kitchen": s.kitchen, "portions": s.portions,
                                   "deadline_s": s.deadline_s, "tz_offset_s": s.tz_offset_s} for s in plan.schools},
                "devices": devices, "now": v.clock(), "today": v.mbg.today(v.clock()), "counting": _counting(v)}

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/mbg/deliveries", json_route(lambda q, m: self.deliveries(q.get("date"))))
        r.add_get("/api/mbg/containers", json_route(lambda q, m: self.containers()))
        r.add_get("/api/mbg/containers/{tag}", json_route(lambda q, m: self.container(m["tag"])))
        r.add_get("/api/mbg/violations", json_route(lambda q, m: self.violations(q.get("date"))))
        r.add_get("/api/mbg/names", json_route(lambda q, m: self.names()))
        r.add_get("/api/mbg/stock", json_route(lambda q, m: self.stock(q.get("date"))))
        r.add_get("/api/mbg/epcis", json_route(lambda q, m: self.epcis(q.get("date"))))
        r.add_get("/api/mbg/{kind:late|short|missing|lost}",
                  json_route(lambda q, m: self.exceptions(m["kind"], q.get("date"))))


def _counting(views: Views) -> int:
    """Stored log entries a restarted hub has still to count into its answers (0 once it has): until then the
    answers hold part of the day, and whoever reads them is told."""
    progress = views.refill_progress
    return max(progress.total - progress.done, 1) if progress.running else 0
