"""MbgView: the hub's incremental entry point for MBG records and the queries the API and dashboard expose."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ledger.bodies import SCAN_EVENTS

from . import epcis
from .analysis import Analysis, ContainerTimeline, Delivery, Finding, FoodSafetyViolation, analyze
from .errors import InputError, NotFound
from .events import ScanEvent, StockMovement, from_record
from .plan import Plan, local_date
from .stock import StockCard, stock_cards, stock_findings

STATUSES = ("on_time", "late", "short", "receiving", "missing", "overdue", "in_transit", "pending")
# What seed 1 called the two statuses it logged, for dashboards that still read them.
LEGACY_STATUS = {"departed": "makanan_keluar", "received": "makanan_diterima"}


class MbgView:
    """Holds the MBG inputs the hub has verified; every answer is derived from them on demand.

    `ingest` is idempotent (a record id seen before is ignored) and never raises for bad input from
    outside: a malformed scan or stock body is counted in `rejected` with its reason. Derived state
    (deliveries, findings, stock) is rebuilt lazily after new records arrive, so nothing derived is ever
    stored as truth. `now` is rounded down to `granularity_s`, so dashboard polls within the same minute
    share one reconciliation instead of each paying for a new one.
    """

    def __init__(self, plan: Plan, *, granularity_s: int = 60) -> None:
        if isinstance(granularity_s, bool) or not isinstance(granularity_s, int) or granularity_s < 1:
            raise InputError(f"granularity_s: expected a whole number of seconds >= 1, got {granularity_s!r}")
        self.plan = plan
        self.granularity_s = granularity_s
        self.scans: list[ScanEvent] = []
        self.movements: list[StockMovement] = []
        self.rejected: list[dict[str, str]] = []
        self.ignored = 0  # other kinds and purged bodies
        self._ids: set[str] = set()
        self._devices: dict[str, int] = {}  # device -> last arrival
        self._cache: dict[tuple[int, tuple[str, ...]], Analysis] = {}
        self._cards: dict[tuple[str, str], StockCard] | None = None

    # --- input ---------------------------------------------------------------------------------------

    def ingest(self, record: Any, arrived_at: int) -> bool:
        """Take one verified record and the time it reached the hub; True if it added an MBG input."""
        try:
            item = from_record(record, arrived_at)
        except InputError as exc:
            self.rejected.append({"device": str(record.device), "seq": str(record.seq), **exc.to_dict()})
            return False
        if item is None:
            self.ignored += 1
            return False
        return self.ingest_event(item)

    def ingest_event(self, item: ScanEvent | StockMovement) -> bool:
        if item.record_id in self._ids:
            return False
        self._ids.add(item.record_id)
        if isinstance(item, ScanEvent):
            self.scans.append(item)
        else:
            self.movements.append(item)
            self._cards = None
        self._devices[item.device] = max(self._devices.get(item.device, item.arrived_at), item.arrived_at)
        self._cache.clear()
        return True

    def prune(self, now: int, keep_days: int) -> int:
        """Forget scans that reached the hub more than `keep_days` days before `now`; return how many.

        The hub's store keeps every record; the analytics only hold the recent days in memory, so a hub that
        runs for months does not grow without bound. Stock movements are all kept: stock on hand is derived
        by replaying every movement.
        """
        cutoff = now - keep_days * 86400
        old = [s for s in self.scans if s.arrived_at < cutoff]
        if old:
            self.scans = [s for s in self.scans if s.arrived_at >= cutoff]
            self._ids.difference_update(s.record_id for s in old)
            self._cache.clear()
        return len(old)

    # --- derivation ----------------------------------------------------------------------------------

    def analysis(self, now: int, dates: tuple[str, ...] = ()) -> Analysis:
        now -= now % self.granularity_s
        key = (now, dates)
        a = self._cache.get(key)
        if a is None:
            a = analyze(self.plan, self.scans, now=now, dates=dates)
            a.findings.extend(stock_findings(self.cards().values(), self.plan))
            self._cache[key] = a
        return a

    def today(self, now: int) -> str:
        return local_date(now, self.plan.tz_offset_s)

    def cards(self) -> dict[tuple[str, str], StockCard]:
        if self._cards is None:
            self._cards = stock_cards(self.movements, self.plan)
        return self._cards

    # --- queries -------------------------------------------------------------------------------------

    def deliveries(self, now: int, date: str | None = None, *, kitchen: str | None = None,
                   school: str | None = None) -> list[Delivery]:
        """Every planned or observed delivery on `date` (default: today), optionally for one kitchen or school."""
        date = date or self.today(now)
        a = self.analysis(now, (date,))
        return [d for (s, dd), d in sorted(a.deliveries.items()) if dd == date
                and (kitchen is None or d.kitchen == kitchen) and (school is None or s == school)]

    def deliveries_by_kitchen(self, now: int, date: str | None = None) -> dict[str, Any]:
        """Today's deliveries per kitchen and school with counts of on time, late, short and missing."""
        date = date or self.today(now)
        out: dict[str, Any] = {}
        for d in self.deliveries(now, date):
            k = out.setdefault(d.kitchen, {"kitchen": d.kitchen, "date": date, "counts": Counter(), "schools": []})
            k["schools"].append(d.to_dict())
            for status in d.statuses:
                k["counts"][status] += 1
        for k in out.values():
            k["counts"] = {s: k["counts"].get(s, 0)
                           for s in STATUSES}
        return out

    def late(self, now: int, date: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries(now, date) if "late" in d.statuses]

    def short(self, now: int, date: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries(now, date) if "short" in d.statuses]

    def missing(self, now: int, date: str | None = None) -> list[Delivery]:
        """Deliveries that have not arrived after their due time: missing, or overdue while the truck is out."""
        return [d for d in self.deliveries(now, date) if "missing" in d.statuses or "overdue" in d.statuses]

    def lost(self, now: int, date: str | None = None) -> list[dict[str, Any]]:
        """Containers reported lost or not back at the kitchen after its return time, one row per container."""
        rows = []
        for f in self.findings(now, date):
            if f.code in ("container_lost", "container_unreturned"):
                rows.extend({"tag": tag, "school": f.subject, "date": f.date, "reason": f.code} for tag in f.containers)
        return rows

    def container(self, tag: str, now: int) -> list[ContainerTimeline]:
        """The container's history, one timeline per day it travelled; NotFound if no tap ever named it."""
        timelines = self.analysis(now).timelines_of(tag)
        if not timelines:
            raise NotFound(f"container {tag!r}: no scan names this tag", hint="check the tag uid on the ompreng")
        return timelines

    def findings(self, now: int, date: str | None = None) -> list[Finding]:
        """All findings; with `date`, those of that day (device-level clock findings have the day of their worst record)."""
        a = self.analysis(now, (date,) if date else ())
        return [f for f in a.findings if date is None or f.date == date]

    def violations(self, now: int, date: str | None = None) -> list[FoodSafetyViolation]:
        a = self.analysis(now, (date,) if date else ())
        return [v for v in a.violations if date is None or v.date == date]

    def stock_on_hand(self, kitchen: str | None = None) -> list[dict[str, Any]]:
        """Stock on hand per kitchen and item, replayed from the movements."""
        return [{"kitchen": c.kitchen, "item": c.item, "unit": c.unit, "on_hand": c.on_hand,
                 "flags": sorted({f for line in c.lines for f in line.flags})}
                for (k, _), c in self.cards().items() if kitchen is None or k == kitchen]

    def stock_card(self, kitchen: str, item: str) -> StockCard:
        card = self.cards().get((kitchen, item))
        if card is None:
            raise NotFound(f"stock card {kitchen}/{item}: no movement recorded",
                           hint="list the cards with stock_on_hand(kitchen)")
        return card

    def epcis_document(self, now: int, date: str | None = None) -> dict[str, Any]:
        """Scans of `date` (default: all) as an EPCIS 2.0 JSON-LD document; a tap repeated at the same site adds
        no event."""
        a = self.analysis(now)
        timed = a.timed if date is None else a.scans_by_date.get(date, [])
        return epcis.document((epcis.scan_event(t, self.plan) for t in timed if not t.repeat), created_at=now)

    def summary(self, now: int) -> dict[str, Any]:
        """The dashboard summary (seed 1's /api/dashboard/summary, extended): today's scans per status,
        devices, last sync, and today's deliveries and alerts."""
        date = self.today(now)
        a = self.analysis(now, (date,))
        todays = a.scans_by_date.get(date, [])
        per_status = Counter(t.scan.event for t in todays)
        deliveries = [d for (_, dd), d in a.deliveries.items() if dd == date]
        counts = Counter(s for d in deliveries for s in d.statuses)
        findings = [f for f in a.findings if f.date == date]
        return {
            "date": date,
            "total_scans_today": len(todays),
            "scans_today": {e: per_status.get(e, 0) for e in SCAN_EVENTS},
            "legacy_status_today": {legacy: per_status.get(e, 0) for e, legacy in LEGACY_STATUS.items()},
            "devices": len(self._devices),
            "devices_today": len({t.scan.device for t in todays}),
            "last_sync": max(self._devices.values(), default=None),
            "deliveries": {"expected": sum(1 for d in deliveries if d.expected > 0),
                           **{s: counts.get(s, 0) for s in STATUSES}},
            "portions": {"expected": sum(d.expected for d in deliveries),
                         "received": sum(d.received_portions for d in deliveries)},
            "food_safety_violations": sum(1 for v in a.violations if v.date == date),
            "alerts": sum(1 for f in findings if f.severity == "alert"),
            "findings": len(findings),
            "stock_movements": len(self.movements),
            "rejected_records": len(self.rejected),
        }
