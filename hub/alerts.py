"""Read model of the hub's alerts across domains: MBG findings, early warnings and held prices, as raised,
resolved and pruned; live events for the dashboard and webhook deliveries to subscribers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aggregates import KeptAlert, KeptAlerts
from .journal import Journal, Lines, carried_over
from .markets import Alert, Redelivery, RetryPolicy, Subscriber, Told, WebhookSender
from .markets.calendar import date_of
from .markets.model import day_of
from .markets.warning import HELD, held_message
from .markets.webhooks import shown_url
from .store import StoreError

if TYPE_CHECKING:
    from .views import Views

log = logging.getLogger("jejak.hub.alerts")


@dataclass(frozen=True, slots=True, kw_only=True)
class Raised:
    """When an alert was first raised and, for an early warning, the band it was raised from: kept with the alert
    in the hub's store, or a line of the alerts' state journal (raised.jsonl) on a hub without one (and on one
    that kept them there before the store did). Lines written before the band was kept have none."""

    id: str
    time: int
    previous: str | None = None

    @classmethod
    def from_line(cls, item: dict[str, Any]) -> Raised | None:
        alert_id, time, previous = item.get("id"), item.get("time"), item.get("previous")
        if not isinstance(alert_id, str) or not isinstance(time, int) or isinstance(time, bool):
            return None
        return cls(id=alert_id, time=time, previous=previous if isinstance(previous, str) else None)

    def to_line(self) -> dict[str, Any]:
        line: dict[str, Any] = {"id": self.id, "time": self.time}
        if self.previous is not None:
            line["previous"] = self.previous
        return line


# The markets' alerts that hold while their cause does (a price held, a series' run of held reports), resolved
# when it ends; the early warnings are events.
DERIVED_MARKET_CODES = frozenset({"quarantined", "held_series"})


def _derived(alert: dict[str, Any]) -> bool:
    """Whether the alert holds while its cause does (an MBG finding, a held price): it says what holds now and is
    resolved when it ends. Early warnings and operators' alerts are events: they stay as raised."""
    return alert["domain"] == "mbg" or alert["code"] in DERIVED_MARKET_CODES


def _alert_id(alert: Alert) -> str:
    """The id an early warning's alert is listed under."""
    return f"{alert.indicator.lower()}/{alert.id}"


class Alerts:
    """`subscribers` are the webhooks (generic JSON, Telegram, WhatsApp) that get ALPS alerts when a series'
    band worsens; `sender` delivers them from the event loop that `bind` names, and a delivery that failed is
    sent again while its alert is open (`Redelivery`, after `retry`).

    With `kept` (the hub's store, `AggregateStore.alerts`), the alerts themselves survive a restart: each one,
    open or resolved, with when it was raised, updated and resolved and the band it was raised from, is written
    there as it changes and listed again after a restart, where an alert derived again is the one kept (it keeps
    its time and band, and is not published or raised again; a restarted hub judges each series afresh, from
    normal). Without a store, when each alert was first raised is kept in `state_dir` (raised.jsonl).

    What each subscriber was told (`Told`), so alerts derived again are not sent again, and the deliveries
    waiting to be sent again (`Redelivery`), so they keep their rounds and due times, survive a restart too: kept
    with the alerts in a store that keeps them (PostgreSQL: a hub that moves host, or loses its state dir, tells
    nobody twice and drops no waiting delivery), else in `state_dir` (told.jsonl, redelivery.jsonl)."""

    def __init__(self, views: Views, *, subscribers: Sequence[Subscriber] = (),
                 sender: WebhookSender | None = None, state_dir: Path | None = None,
                 retry: RetryPolicy | None = None, kept: KeptAlerts | None = None) -> None:
        self.views = views
        self.subscribers = tuple(subscribers)
        self.sender = sender
        self.kept = kept
        self.told = Told(self._journal(state_dir, "told.jsonl"))
        self.redelivery = (Redelivery(sender, self.told, still_open=self._still_open, policy=retry,
                                      subscribers=self.subscribers, journal=self._journal(state_dir, "redelivery.jsonl"))
                           if sender is not None else None)
        # Set on the event loop once alerts are derived (after the refill): whether an alert is still open is
        # not known before, and a delivery waiting from before a restart must not be dropped as closed.
        self._derived: asyncio.Event | None = None
        self._derived_once = False
        # With a store, raised.jsonl is only read (what a hub wrote before its store kept the alerts) and pruned.
        self._raised_journal = Journal(state_dir / "raised.jsonl") if state_dir is not None else None
        self._raised_at: dict[str, Raised] = self._kept_raise_times()
        self._alerts: list[dict[str, Any]] = []
        self._listed: set[str] = set()  # the ids in _alerts
        self._seqs: dict[str, int] = {}  # each listed alert's place in the order raised
        self._seq = 0
        self._judged: set[str] = set()  # early warnings judged since the start: their band recalled once
        self._list_kept()
        # The held runs as last derived, and the ended ones of series told held (`MarketService.held_alerts`).
        self._held: dict[tuple[str, str], Alert] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sends: set[concurrent.futures.Future[Any]] = set()

    def _journal(self, state_dir: Path | None, name: str) -> Lines | None:
        """The journal `name` of the webhook deliveries: in the store where it keeps them (PostgreSQL, carrying
        over once what a file in `state_dir` held), else that file."""
        file = Journal(state_dir / name) if state_dir is not None else None
        in_store = self.kept.journal(name) if self.kept is not None else None
        if in_store is None:
            return file
        return carried_over(in_store, file) if file is not None else in_store

    def _kept_raise_times(self) -> dict[str, Raised]:
        """When each alert still within the kept window was first raised, and from which band, from earlier
        runs."""
        if self._raised_journal is None:
            return {}
        lines = self._raised_journal.read()
        cutoff = int(self.views.clock()) - self.views.keep_days * 86400
        kept = {}
        for item in lines:
            raised = Raised.from_line(item)
            if raised is not None and raised.time >= cutoff:
                kept[raised.id] = raised
        if len(kept) < len(lines):
            self._raised_journal.rewrite(r.to_line() for r in kept.values())
        return kept

    def _list_kept(self) -> None:
        """List the alerts kept in the store by earlier runs, in the order they were raised."""
        if self.kept is None:
            return
        try:
            kept = self.kept.read()
        except StoreError as exc:
            log.error("the alerts kept in the store cannot be read (%s: %s); the alert history starts again and "
                      "alerts open before are raised again. %s", exc.code, exc.message, exc.hint or "")
            return
        for k in kept:
            self._list(k.alert, seq=k.seq)
            previous = k.alert.get("previous")
            self._raised_at[k.id] = Raised(id=k.id, time=int(k.alert["time"]),
                                           previous=previous if isinstance(previous, str) else None)

    def _list(self, alert: dict[str, Any], *, seq: int | None = None) -> None:
        if seq is None:
            seq = self._seq + 1
        self._seq = max(self._seq, seq)
        self._seqs[alert["id"]] = seq
        self._listed.add(alert["id"])
        self._alerts.append(alert)

    def _keep(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Write the alerts that changed to the store, each as it stands now."""
        if self.kept is None or not alerts:
            return
        try:
            self.kept.put([KeptAlert(seq=self._seqs[a["id"]], alert=dict(a)) for a in alerts])
        except StoreError as exc:
            log.error("%d alerts could not be kept in the store (%s: %s); a restart before they are written again "
                      "forgets what changed. %s", len(alerts), exc.code, exc.message, exc.hint or "")

    def _as_raised_before(self, raised: Sequence[Alert]) -> list[Alert]:
        """The early warning's alerts, each one raised before a restart with the band it was raised from then
        (judged again, it would say from normal); the tracker's live alerts follow."""
        out = []
        for a in raised:
            kept = self._raised_at.get(_alert_id(a)) if _alert_id(a) not in self._judged else None
            self._judged.add(_alert_id(a))
            if kept is not None and kept.previous is not None and kept.previous != a.previous:
                a = a.since(kept.previous)
                self.views.markets.tracker.recall(a)
            out.append(a)
        return out

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver from `loop` (call on it): the waiting deliveries kept before a restart carry on."""
        self._loop = loop
        if self._derived is None:
            self._derived = asyncio.Event()
            if self._derived_once:
                self._derived.set()
        if self.redelivery is not None:
            self.redelivery.resume()

    async def close(self) -> None:
        self._loop = None  # a derivation meanwhile sends nothing more
        for fut in list(self._sends):
            fut.cancel()
        if self.redelivery is not None:
            await self.redelivery.close()
        if self.sender is not None:
            await self.sender.close()

    def refresh(self) -> list[dict[str, Any]]:
        """Run the early warning and the MBG rules; publish and return the alerts not seen before, and send
        the ALPS/IFPA ones that worsened to the webhook subscribers."""
        v = self.views
        with v.fresh():
            v.markets.settle(int(v.clock()))  # days past their cut-off get final verdicts
            raised = self._as_raised_before(v.markets.early_warning())
        fresh = []
        current = self.current(raised)
        first_raised = []
        for alert in current:
            # An alert kept from before a restart is listed already: derived again, it is the same one.
            if alert["id"] not in self._listed:
                # One whose raise time outlived it (raised.jsonl) keeps its time.
                kept = self._raised_at.get(alert["id"])
                if kept is None:
                    kept = Raised(id=alert["id"], time=int(alert["time"]), previous=alert.get("previous"))
                    self._raised_at[alert["id"]] = kept
                    first_raised.append(kept.to_line())
                else:
                    alert["time"] = kept.time
                self._list(alert)
                fresh.append(alert)
        if self._raised_journal is not None and self.kept is None:
            self._raised_journal.append(*first_raised)
        # A finding or a held price that no longer holds (the containers came back, an operator released the
        # price) is resolved; early-warning alerts are events and stay as raised.
        holding = {a["id"]: a for a in current}
        updated, resolved = [], []
        for alert in self._alerts:
            if "resolved_at" in alert:
                continue
            if not _derived(alert):
                continue  # an event: derived again after a restart, it is listed as it was raised
            now_alert = holding.get(alert["id"])
            if now_alert is None:
                alert["resolved_at"] = int(v.clock())
                resolved.append(alert)
            elif now_alert["text"] != alert["text"]:
                # An open alert says what holds now (a timer still running keeps counting), not what held
                # when it was raised.
                alert["text"] = now_alert["text"]
                alert["updated_at"] = now_alert["time"]
                updated.append(alert)
        self._keep(fresh + updated + resolved)
        if v.events is not None:
            for alert in fresh + updated:  # a copy: the stored alert changes as its values do
                v.events.publish({"type": "alert", "alert": dict(alert)})
        if self.subscribers and self.sender is not None and self._loop is not None:
            with v.fresh():
                latest = dict(v.markets.tracker.latest)
                # Held runs are told as a band of their own, and their end to whoever was told them.
                self._held = v.markets.held_alerts(self.told.series(HELD, "held"))
            latest.update(self._held)
            outbox = self.told.outbox(self.subscribers, [*raised, *(a for a in self._held.values() if a.held)],
                                      latest, self.redelivery.held if self.redelivery is not None else None)
            if outbox:
                fut = asyncio.run_coroutine_threadsafe(self._deliver(self.sender, outbox), self._loop)
                self._sends.add(fut)
                fut.add_done_callback(self._sends.discard)
        if not self._derived_once:
            self._derived_once = True
            if self._loop is not None and self._derived is not None:
                self._loop.call_soon_threadsafe(self._derived.set)
        return fresh

    async def _deliver(self, sender: WebhookSender, outbox: list[tuple[Subscriber, Alert, str | None]],
                       concurrency: int = 8) -> None:
        """Send each alert to its subscriber, a few at a time, and keep what was told."""
        gate = asyncio.Semaphore(concurrency)

        async def one(sub: Subscriber, alert: Alert, told_before: str | None) -> None:
            async with gate:
                delivery = await sender.send(sub, alert)
            await asyncio.to_thread(self.told.settle, delivery, alert, told_before)
            if self.redelivery is not None:
                self.redelivery.add(sub, alert, delivery)

        await asyncio.gather(*(one(*job) for job in outbox))

    async def _still_open(self, alert: Alert) -> bool:
        """Whether `alert` still says where its series stands (its band is the one last judged): what a failed
        delivery is sent again for. Not before the alerts are first derived."""
        if self._derived is not None:
            await self._derived.wait()

        def judged() -> bool:
            if alert.indicator == HELD:
                now = self._held.get((alert.series, alert.indicator))
            else:
                with self.views.fresh():
                    now = self.views.markets.tracker.latest.get((alert.series, alert.indicator))
            return now is not None and now.band == alert.band

        return await asyncio.to_thread(judged)

    def trigger(self, *, text: str, level: str, subject: str, by: str) -> dict[str, Any]:
        """An alert an operator raises by hand: kept and listed like the derived ones, pushed live at once."""
        v = self.views
        now = int(v.clock())
        severity = {"critical": "alert", "warning": "warning"}.get(level, "info")
        with v.fresh():
            alert: dict[str, Any] = {"id": f"operator/{now}/{self._seq + 1}", "domain": "operator",
                                     "code": "operator_alert", "subject": subject, "severity": severity,
                                     "level": level, "text": text, "time": now, "by": by}
            self._list(alert)
        self._keep([alert])
        if v.events is not None:
            v.events.publish({"type": "alert", "alert": dict(alert)})
        return alert

    def current(self, raised: Sequence[Any] = ()) -> list[dict[str, Any]]:
        v = self.views
        now = int(v.clock())
        with v.fresh():
            findings = [f for f in v.mbg.findings(now, v.mbg.today(now)) if f.severity == "alert"]
            quarantined = v.markets.quarantined("pending")
            held = v.markets.held_runs()
        out = []
        for f in findings:
            out.append({"id": f"mbg/{f.ref}", "domain": "mbg", "code": f.code,
                        "subject": f.subject, "severity": f.severity, "text": f.detail, "time": now})
        for a in raised:
            out.append({"id": _alert_id(a), "domain": "markets",
                        "code": f"{a.indicator.lower()}_{a.band.replace(' ', '_')}", "subject": a.series,
                        "severity": "alert" if a.band in ("alert", "crisis", "abnormally high") else "warning",
                        "text": a.message, "time": now, "band": a.band, "previous": a.previous,
                        **({"stale_days": a.stale_days} if a.stale else {})})
        for key, run in held:
            # One alert for the run, open while it lasts: a lone market's honest move that nobody nearby vouches
            # for is held day after day, and its series counts as silent until an operator decides.
            market, commodity, grade = key[0], key[1], key[2]
            since = date_of(run.first_day).isoformat()
            out.append({"id": f"held/{market}/{commodity}{f'/{grade}' if grade else ''}/{since}", "domain": "markets",
                        "code": "held_series", "subject": f"{market}/{commodity}", "severity": "warning",
                        "text": held_message(market, commodity, reports=run.reports, days=run.days,
                                             since=run.first_day),
                        "time": now, "held_reports": run.reports, "held_days": run.days, "held_since": since})
        for e in quarantined:
            o = e["observation"]
            if day_of(o["time"]) >= day_of(now) - 1:
                fired = [c["reason"] for c in e["verdict"]["checks"] if c["fired"]]
                out.append({"id": f"quarantine/{o['id']}", "domain": "markets", "code": "quarantined",
                            "subject": f"{o['market']}/{o['commodity']}", "severity": "warning",
                            "text": f"{o['price_idr']} IDR quarantined: {'; '.join(fired)}", "time": now})
        return out

    def prune(self, cutoff: int) -> None:
        """Forget alerts resolved before `cutoff`, and early warnings (events, never resolved) raised before
        it. Open ones stay however old. A forgotten MBG finding cannot come back: its id names its date, and
        only today's findings are derived."""
        def stale(alert: dict[str, Any]) -> bool:
            if "resolved_at" in alert:
                return int(alert["resolved_at"]) < cutoff
            # Early warnings and operators' alerts are events: they go with their time.
            return not _derived(alert) and int(alert["time"]) < cutoff

        gone = [a for a in self._alerts if stale(a)]
        if gone:
            self._alerts = [a for a in self._alerts if not stale(a)]
            self._listed.difference_update(a["id"] for a in gone)
            self._judged.difference_update(a["id"] for a in gone)
            for a in gone:
                self._raised_at.pop(a["id"], None)
                self._seqs.pop(a["id"], None)
            if self.kept is not None:
                try:
                    self.kept.delete(a["id"] for a in gone)
                except StoreError as exc:
                    log.error("alerts pruned could not be deleted from the store (%s: %s); they are listed again "
                              "after a restart, until the next prune. %s", exc.code, exc.message, exc.hint or "")

    def open_count(self) -> int:
        return sum(1 for a in self._alerts if "resolved_at" not in a)

    def listing(self) -> dict[str, Any]:
        """The last 200 alerts, open and resolved, and the early warning's live state."""
        with self.views.fresh():
            live = self.views.markets.live_alerts()
        return {"alerts": [a for a in reversed(self._alerts[-200:]) if "resolved_at" not in a],
                "resolved": [a for a in reversed(self._alerts[-200:]) if "resolved_at" in a], "live": live}

    def webhooks(self) -> dict[str, Any]:
        log_ = list(self.sender.log) if self.sender is not None else []
        again = self.redelivery
        return {"subscribers": [{"id": s.id, "kind": s.kind, "url": shown_url(s.url, s.token),
                                 "commodities": list(s.commodities),
                                 "regions": list(s.regions), "min_band": s.min_band} for s in self.subscribers],
                "deliveries": [d.to_dict() for d in reversed(log_[-500:])],
                "redelivery": {"waiting": again.waiting() if again else 0, "delivered": again.delivered if again else 0,
                               "dropped": dict(again.dropped) if again else {}}}


