"""HTTP routes for the domain views (MBG, markets, chain health) that the dashboard reads, fed as records arrive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from coap_server.errors import RequestError
from ledger import Record

from .auth import Auth
from .http import error_response
from .markets import MarketService, Subscriber, WebhookSender
from .markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from .markets.errors import MarketError, NotFound
from .markets.model import DAY_S, WIB_OFFSET_S, PriceObservation, day_of
from .markets.validate import Verdict
from .markets.warning import ALPS_BANDS
from .mbg import MbgError, MbgView, Plan
from .service import Hub

log = logging.getLogger("jejak.hub.views")

# Kitchen stock items (as MBG stock records name them) and the market commodity their demand moves.
ITEM_COMMODITIES = {"beras": "beras-medium", "ayam": "daging-ayam", "telur": "telur-ayam", "cabai": "cabai-merah",
                    "bawang": "bawang-merah", "minyak": "minyak-goreng", "gula": "gula-pasir"}
BACKLOG_S = 2 * DAY_S  # prices that arrive later than this after they were taken are not streamed live
IMPACT_DAYS = 7  # days of impact shown per series on the price chart


class Publisher(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...


class HubMarkets(MarketService):
    """The hub's MarketService, fed from its record listener: keeps each observation's verdict so the
    dashboard and the public API can show accepted and quarantined values side by side."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.observed: dict[str, tuple[PriceObservation, Verdict]] = {}

    def ingest(self, record: Any, arrived_at: int) -> dict[str, Any] | None:
        """Like MarketService.ingest, but a body that does not hold is logged and dropped (a listener must
        not fail the hub's ingest) and an observation seen before is not counted twice."""
        rid = record.id.hex() if isinstance(record.id, bytes | bytearray) else str(record.id)
        if record.kind == "price" and rid in self.observed:
            return None
        try:
            return super().ingest(record, arrived_at)
        except (MarketError, KeyError, TypeError, ValueError) as exc:
            log.warning("market input %s dropped: %s", rid[:16], exc)
            return None

    def add_observation(self, obs: PriceObservation) -> Verdict:
        if obs.arrived_at - obs.time > BACKLOG_S and self._listeners:
            # A device's backlog of old prices is history, not a live update: no impact per value on the stream.
            listeners, self._listeners = self._listeners, []
            try:
                verdict = super().add_observation(obs)
            finally:
                self._listeners = listeners
        else:
            verdict = super().add_observation(obs)
        self.observed[obs.id] = (obs, verdict)
        return verdict

    def on_verdict(self, obs: PriceObservation, verdict: Verdict) -> None:
        self.observed[obs.id] = (obs, verdict)

    def checked(self) -> list[dict[str, Any]]:
        """Every observation with its day, whether it is out of the analyses now, and the reasons why."""
        states = {e.observation.id: e.state for e in self.quarantine.store.entries(None)}
        out = []
        for obs, verdict in self.observed.values():
            state = states.get(obs.id)
            out.append({**obs.to_dict(), "day": day_of(obs.time, self.config.tz_offset_s),
                        "quarantined": state is not None and state not in ("released", "cleared"), "state": state or "accepted",
                        "reasons": [f"{c.name}: {c.reason}" for c in verdict.checks if c.fired]})
        out.sort(key=lambda o: (o["time"], o["id"]))
        return out


class Views:
    """The hub's domain views and their routes; `on_records` is the hub listener that feeds them.

    `kitchen_regions` names the market region (as price records name it) of each MBG kitchen, so the
    kitchens' stock "use" records become MBG demand for the impact analysis. `subscribers` are the webhooks
    (generic JSON, Telegram, WhatsApp) that get ALPS alerts when a series' band worsens.
    """

    def __init__(self, hub: Hub, *, plan: Plan, clock: Callable[[], int] | None = None,
                 events: Publisher | None = None, auth: Auth | None = None, markets: HubMarkets | None = None,
                 kitchen_regions: Mapping[str, str] | None = None, subscribers: Sequence[Subscriber] = (),
                 sender: WebhookSender | None = None, keep_days: int = 8, rederive_s: float = 60.0) -> None:
        self.hub = hub
        # Findings that follow the clock (overdue, unreturned, a timer still open) appear without new records.
        self.rederive_s = rederive_s
        self.clock = clock or hub.clock
        self.events = events
        self.auth = auth or Auth()
        self.mbg = MbgView(plan)
        self.markets = markets or HubMarkets(clock=lambda: self.clock())
        self.kitchen_regions = dict(kitchen_regions or {})
        self.subscribers = tuple(subscribers)
        self.sender = sender
        self.mbg_demand: dict[tuple[str, str, int], float] = defaultdict(float)  # (region, commodity, day) -> kg
        self.last_arrival: dict[str, int] = {}
        self.last_time: dict[str, int] = {}
        self.records_by_kind: dict[str, int] = defaultdict(int)
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._seen_alerts: set[str] = set()
        self._alerts: list[dict[str, Any]] = []
        self._pending: deque[Callable[[], None]] = deque()
        self._last_derive_s = 0.0
        self._pruned_at = 0
        self.keep_days = keep_days
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._sends: set[asyncio.Future[Any]] = set()
        hub.listeners.on_records.append(self.on_records)

    # --- feeding ---------------------------------------------------------------------------------------
    def on_records(self, records: list[Record], arrived_at: int) -> None:
        """Hub listener (runs on the ingest thread): queue the records and return at once.

        Ingest must never wait for an analysis that is running; the queue is folded in by the worker, and by any
        query before it answers, so answers are never staler than the records accepted.
        """
        self.defer(lambda: self._take(records, arrived_at))

    def defer(self, work: Callable[[], None]) -> None:
        """Queue work on the views (feeding inputs) to run under their lock before the next derivation or
        query, without making the caller wait for one in progress."""
        self._pending.append(work)
        if self._lock.acquire(blocking=False):  # nobody is deriving: fold it in now
            try:
                while self._pending:
                    self._pending.popleft()()
            finally:
                self._lock.release()
        self._dirty.set()

    @contextlib.contextmanager
    def fresh(self) -> Iterator[None]:
        """Hold the views' lock with every queued input folded in."""
        with self._lock:
            while self._pending:
                self._pending.popleft()()
            yield

    def _take(self, records: list[Record], arrived_at: int) -> None:
        for rec in records:
            self.records_by_kind[rec.kind] += 1
            self.last_arrival[rec.device] = arrived_at
            self.last_time[rec.device] = max(self.last_time.get(rec.device, rec.time), rec.time)
            if rec.kind in ("scan", "stock"):
                if self.mbg.ingest(rec, arrived_at) and rec.kind == "stock":
                    self._demand(rec)
            elif rec.kind in ("price", "reading", "note"):
                self.markets.ingest(rec, arrived_at)

    def _demand(self, rec: Record) -> None:
        """A kitchen's "use" of an item is MBG demand for the matching commodity in the kitchen's region."""
        body = rec.body or {}
        if body.get("movement") != "use":
            return
        region = self.kitchen_regions.get(body.get("site", ""))
        item = str(body.get("item", ""))
        commodity = item if item in COMMODITIES_BY_ID else ITEM_COMMODITIES.get(item.split("-")[0])
        scale = {"g": 0.001, "kg": 1.0}.get(body.get("unit", ""))
        if region is None or commodity is None or scale is None:
            return
        key = (region, commodity, day_of(rec.time))
        self.mbg_demand[key] += body["qty"] * scale
        self.markets.set_mbg_demand(region, commodity, key[2], self.mbg_demand[key])

    def start(self) -> None:
        """Start the worker that derives alerts after records arrive, and stream price updates."""
        if self._unsubscribe is None:
            self._unsubscribe = self.markets.subscribe(self._price_update)
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="jejak-views", daemon=True)
            self._worker.start()

    def _price_update(self, update: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(update)

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._worker is not None:
            self._worker.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.rederive_s)
            if self._stop.is_set():
                return
            # Let a burst of pushes land first, and keep derivation to about a third of one core however
            # large the day grows: ingest shares the interpreter with this thread.
            self._stop.wait(max(0.3, 2 * self._last_derive_s))
            self._dirty.clear()
            started = time.perf_counter()
            try:
                self.refresh_alerts()
            except Exception:
                log.exception("deriving alerts failed")
            self._last_derive_s = time.perf_counter() - started
            self.prune()

    def prune(self) -> int:
        """At most once an hour of the hub's clock, forget the scans that arrived more than `keep_days`
        ago (the store keeps them) and the alerts over by then: what the views hold follows the window, not
        the hub's age."""
        if self.clock() - self._pruned_at < 3600:
            return 0
        with self.fresh():
            self._pruned_at = self.clock()
            self._prune_alerts(self._pruned_at - self.keep_days * 86400)
            return self.mbg.prune(self._pruned_at, self.keep_days)

    def _prune_alerts(self, cutoff: int) -> None:
        """Forget alerts resolved before `cutoff`, and early warnings (events, never resolved) raised before
        it. Open ones stay however old. A forgotten MBG finding cannot come back: its id names its date, and
        only today's findings are derived."""
        def stale(alert: dict[str, Any]) -> bool:
            if "resolved_at" in alert:
                return int(alert["resolved_at"]) < cutoff
            return alert["domain"] == "markets" and alert["code"] != "quarantined" and int(alert["time"]) < cutoff

        gone = [a for a in self._alerts if stale(a)]
        if gone:
            self._alerts = [a for a in self._alerts if not stale(a)]
            self._seen_alerts.difference_update(a["id"] for a in gone)

    def refresh_alerts(self) -> list[dict[str, Any]]:
        """Run the early warning and the MBG rules; publish and return the alerts not seen before, and send
        the ALPS/IFPA ones that worsened to the webhook subscribers."""
        with self.fresh():
            self.markets.settle(int(self.clock()))  # days past their cut-off get final verdicts
            raised = self.markets.early_warning()
        fresh = []
        current = self.current_alerts(raised)
        for alert in current:
            if alert["id"] not in self._seen_alerts:
                self._seen_alerts.add(alert["id"])
                self._alerts.append(alert)
                fresh.append(alert)
        # A finding or a held price that no longer holds (the containers came back, an operator released the
        # price) is resolved; early-warning alerts are events and stay as raised.
        holding = {a["id"]: a for a in current}
        updated = []
        for alert in self._alerts:
            if "resolved_at" in alert:
                continue
            now_alert = holding.get(alert["id"])
            if now_alert is None and (alert["domain"] == "mbg" or alert["code"] == "quarantined"):
                alert["resolved_at"] = self.clock()
            elif now_alert is not None and now_alert["text"] != alert["text"]:
                # An open alert says what holds now (a timer still running keeps counting), not what held
                # when it was raised.
                alert["text"] = now_alert["text"]
                alert["updated_at"] = now_alert["time"]
                updated.append(alert)
        if self.events is not None:
            for alert in fresh + updated:  # a copy: the stored alert changes as its values do
                self.events.publish({"type": "alert", "alert": dict(alert)})
        if raised and self.subscribers and self.sender is not None and self._loop is not None:
            fut = asyncio.run_coroutine_threadsafe(
                self.markets.notify(self.sender, self.subscribers, raised), self._loop)
            self._sends.add(fut)
            fut.add_done_callback(self._sends.discard)
        return fresh

    def current_alerts(self, raised: Sequence[Any] = ()) -> list[dict[str, Any]]:
        now = self.clock()
        with self.fresh():
            findings = [f for f in self.mbg.findings(now, self.mbg.today(now)) if f.severity == "alert"]
            quarantined = self.markets.quarantined("pending")
        out = []
        for f in findings:
            out.append({"id": f"mbg/{f.code}/{f.subject}/{f.date}", "domain": "mbg", "code": f.code,
                        "subject": f.subject, "severity": f.severity, "text": f.detail, "time": now})
        for a in raised:
            out.append({"id": f"{a.indicator.lower()}/{a.id}", "domain": "markets",
                        "code": f"{a.indicator.lower()}_{a.band.replace(' ', '_')}", "subject": a.series,
                        "severity": "alert" if a.band in ("alert", "crisis", "abnormally high") else "warning",
                        "text": a.message, "time": now, "band": a.band, "previous": a.previous})
        for e in quarantined:
            o = e["observation"]
            if day_of(o["time"]) >= day_of(now) - 1:
                fired = [c["reason"] for c in e["verdict"]["checks"] if c["fired"]]
                out.append({"id": f"quarantine/{o['id']}", "domain": "markets", "code": "quarantined",
                            "subject": f"{o['market']}/{o['commodity']}", "severity": "warning",
                            "text": f"{o['price_idr']} IDR quarantined: {'; '.join(fired)}", "time": now})
        return out

    # --- queries ---------------------------------------------------------------------------------------
    def chain_health(self) -> dict[str, Any]:
        store = self.hub.store
        now = self.clock()
        devices = []
        with self.fresh():
            arrivals = dict(self.last_arrival)
            times = dict(self.last_time)
        for d in store.devices():
            state = store.chain_state(d.device_id)
            dev = d.device_id.hex()
            item = d.to_json()
            arrived = arrivals.get(dev)
            item.update({"length": state.length if state else 0, "head": state.head.hex() if state else None,
                         "last_time": times.get(dev), "last_seen": arrived,
                         "sync_lag_s": (arrived - times[dev]) if arrived is not None and dev in times else None,
                         "idle_s": (now - arrived) if arrived is not None else None})
            devices.append(item)
        status = self.hub.status()
        counters = status["counters"]
        refused = {k[len("refused_"):]: v for k, v in counters.items() if k.startswith("refused_")}
        return {"now": now, "hub": status["hub"], "size": status["size"], "checkpoint": status["checkpoint"],
                "forks": status["forks"], "refused": refused, "refused_total": sum(refused.values()),
                "duplicates": counters.get("duplicates", 0), "devices": devices,
                "records_by_kind": dict(self.records_by_kind)}

    def deliveries(self) -> dict[str, Any]:
        now = self.clock()
        with self.fresh():
            date = self.mbg.today(now)
            per_kitchen = self.mbg.deliveries_by_kitchen(now, date)
        totals: dict[str, int] = defaultdict(int)
        kitchens = []
        for kid, k in sorted(per_kitchen.items()):
            kitchen = self.mbg.plan.kitchen(kid)
            kitchens.append({**k, "name": kitchen.name if kitchen else kid})
            for s, n in k["counts"].items():
                totals[s] += n
        return {"date": date, "now": now, "kitchens": kitchens, "totals": dict(totals)}

    def containers(self) -> dict[str, Any]:
        now = self.clock()
        with self.fresh():
            date = self.mbg.today(now)
            a = self.mbg.analysis(now, (date,))
            rows = []
            for (tag, d) in sorted(a.trips):
                if d != date:
                    continue
                t = a.timeline(tag, d)
                if t is not None:
                    rows.append({"tag": tag, "school": t.school, "stage": t.stage, "steps": len(t.steps)})
        return {"date": date, "containers": rows}

    def container(self, tag: str) -> dict[str, Any]:
        now = self.clock()
        with self.fresh():
            return {"tag": tag, "timelines": [t.to_dict() for t in self.mbg.container(tag, now)]}

    def violations(self) -> dict[str, Any]:
        now = self.clock()
        with self.fresh():
            date = self.mbg.today(now)
            return {"date": date, "violations": [v.to_dict() for v in self.mbg.violations(now, date)],
                    "findings": [f.to_dict() for f in self.mbg.findings(now, date)]}

    def exceptions(self, kind: str, date: str | None) -> dict[str, Any]:
        """Today's (or `date`'s) late, short or missing deliveries, or lost containers."""
        now = self.clock()
        if kind not in ("late", "short", "missing", "lost"):
            raise NotFound(f"no such list {kind!r}: expected late, short, missing or lost")
        with self.fresh():
            date = date or self.mbg.today(now)
            rows = getattr(self.mbg, kind)(now, date)
        return {"date": date, kind: [r if isinstance(r, dict) else r.to_dict() for r in rows]}

    def epcis(self, date: str | None) -> dict[str, Any]:
        now = self.clock()
        with self.fresh():
            return self.mbg.epcis_document(now, date or self.mbg.today(now))

    def stock(self) -> dict[str, Any]:
        with self.fresh():
            return {"on_hand": self.mbg.stock_on_hand(),
                    "cards": [c.to_dict() for c in self.mbg.cards().values()]}

    def summary(self) -> dict[str, Any]:
        now = self.clock()
        with self.fresh():
            out = self.mbg.summary(now)
            bands = self.markets.bands()
            observed = len(self.markets.observed)
            held = len(self.markets.quarantined("pending"))
        status = self.hub.status()
        out.update({"now": now, "chain": {"size": status["size"], "devices": status["devices"],
                                          "forks": status["forks"], "checkpoint": status["checkpoint"]},
                    "markets": {"observations": observed, "quarantined": held,
                                "alps": {band: sum(1 for a in bands if a["band"] == band) for band in ALPS_BANDS}},
                    "live_alerts": sum(1 for a in self._alerts if "resolved_at" not in a)})
        return out

    # --- markets ---------------------------------------------------------------------------------------
    def prices(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        """Every observation of the commodity (accepted and quarantined, with reasons) and the impact of
        the last days of each series, for the price chart."""
        with self.fresh():
            checked = self.markets.checked()
        rows = [o for o in checked if (not commodity or o["commodity"] == commodity)
                and (not market or o["market"] == market)]
        series: dict[str, dict[str, Any]] = {}
        for o in rows:
            s = series.setdefault(f"{o['market']}/{o['commodity']}", {
                "market": o["market"], "commodity": o["commodity"], "unit": o["unit"], "points": []})
            s["points"].append({"id": o["id"], "time": o["time"], "day": o["day"], "price_idr": o["price_idr"],
                                "quarantined": o["quarantined"], "reasons": o["reasons"]})
        impact = self._impact_rows(commodity, market) if commodity else []
        return {"commodities": sorted({o["commodity"] for o in checked}),
                "markets": sorted({o["market"] for o in checked}),
                "names": {c: COMMODITIES_BY_ID[c].name for c in {o["commodity"] for o in checked}
                          if c in COMMODITIES_BY_ID},
                "series": list(series.values()), "impact": impact,
                "quarantined": [o for o in rows if o["quarantined"]]}

    def _series_markets(self, commodity: str, market: str | None) -> list[str]:
        return sorted({p["market"] for p in self.markets.live_prices(commodity, market)})

    def _impact_rows(self, commodity: str, market: str | None, days: int = IMPACT_DAYS) -> list[dict[str, Any]]:
        out = []
        with self.fresh():
            for m in self._series_markets(commodity, market):
                last = max(h["day"] for h in self.markets.history(commodity, m))
                for day in range(last - days + 1, last + 1):
                    try:
                        out.append(self.markets.impact(commodity, m, day=day))
                    except (MarketError, ValueError):
                        continue  # too little history before this day
        return out

    def impact(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        """Impact of the latest price change of each series of the commodity: score, factors with their
        weights, dominant factor, and how it was computed."""
        if not commodity:
            raise NotFound("impact: name a commodity", hint="add ?commodity=cabai-merah")
        with self.fresh():
            markets = self._series_markets(commodity, market)
            rows, missing = [], []
            for m in markets:
                try:
                    rows.append(self.markets.impact(commodity, m))
                except (MarketError, ValueError) as exc:
                    missing.append({"market": m, "reason": str(exc)})
        return {"commodity": commodity, "market": market, "impact": rows, "not_computed": missing,
                "weights": {f"{r['market']}/{r['commodity']}": r["weights"] for r in rows},
                "dominant": {f"{r['market']}/{r['commodity']}": r["dominant"] for r in rows}}

    def forecast(self, commodity: str, market: str | None) -> dict[str, Any]:
        """7-day forecast with 80 % and 95 % intervals; without a market, the first market whose series is
        long enough (named in the answer)."""
        with self.fresh():
            markets = [market] if market else self._series_markets(commodity, None)
            if not markets:
                raise NotFound(f"forecast: no accepted prices for {commodity!r}",
                               hint="check the commodity id (e.g. 'cabai-merah')")
            error: MarketError | None = None
            for m in markets:
                try:
                    out = self.markets.forecast(commodity, m)
                except MarketError as exc:
                    error = error or exc
                    continue
                history = self.markets.history(commodity, m)[-28:]
                break
            else:
                assert error is not None
                raise error
        out["forecast"] = [{"day": p["day"], "date": p["date"], "mean": p["price_idr"], "low": p["lo95"],
                            "high": p["hi95"], "low80": p["lo80"], "high80": p["hi80"]} for p in out["points"]]
        out["history"] = [{"day": h["day"], "price": h["price_idr"]} for h in history]
        out["interval"] = "95 % (shaded), 80 % in the points; from the chosen model's residuals"
        return out

    def live_prices(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        with self.fresh():
            return {"prices": self.markets.live_prices(commodity, market)}

    def history(self, commodity: str, market: str | None, since: str | None, until: str | None) -> dict[str, Any]:
        def day(text: str | None, name: str) -> int | None:
            if text is None:
                return None
            if not text.lstrip("-").isdigit():
                raise NotFound(f"{name}: expected a day number, got {text[:20]!r}")
            return int(text)
        with self.fresh():
            return {"commodity": commodity, "market": market,
                    "history": self.markets.history(commodity, market, since_day=day(since, "since_day"),
                                                    until_day=day(until, "until_day"))}

    def alerts(self) -> dict[str, Any]:
        with self.fresh():
            live = self.markets.live_alerts()
        return {"alerts": [a for a in reversed(self._alerts[-200:]) if "resolved_at" not in a],
                "resolved": [a for a in reversed(self._alerts[-200:]) if "resolved_at" in a], "live": live}

    def market_map(self) -> dict[str, Any]:
        with self.fresh():
            bands = self.markets.bands()
            seen = {p["market"] for p in self.markets.live_prices()}
        order = {band: i for i, band in enumerate(ALPS_BANDS)}
        markets = []
        for mid in sorted(seen):
            m = MARKETS_BY_ID.get(mid)
            if m is None:
                continue
            mine = [a for a in bands if a["market"] == mid]
            worst = max(mine, key=lambda a: (order[a["band"]], a["alps"]), default=None)
            markets.append({"id": mid, "name": m.name, "province": m.admin1, "city": m.admin2,
                            "lat": m.latitude, "lon": m.longitude, "alps": mine,
                            "band": worst["band"] if worst else "normal", "worst": worst})
        return {"markets": markets, "bands": list(ALPS_BANDS)}

    def quarantine(self, state: str | None) -> dict[str, Any]:
        if state not in (None, "all", "pending", "released", "confirmed"):
            raise NotFound(f"state: expected pending, released, confirmed or all, got {state[:20]!r}")
        with self.fresh():
            return {"state": state or "pending",
                    "entries": self.markets.quarantined(None if state == "all" else state or "pending")}

    def decide(self, observation_id: str, action: str, by: str, why: str) -> dict[str, Any]:
        with self.fresh():
            decision = self.markets.decide(observation_id, action, by=by, why=why)
            audit = self.markets.audit(observation_id)
        self._dirty.set()
        return {"decision": decision, "audit": audit}

    def audit(self, observation_id: str | None) -> dict[str, Any]:
        with self.fresh():
            return {"audit": self.markets.audit(observation_id)}

    def webhooks(self) -> dict[str, Any]:
        log_ = list(self.sender.log) if self.sender is not None else []
        return {"subscribers": [{"id": s.id, "kind": s.kind, "commodities": list(s.commodities),
                                 "regions": list(s.regions), "min_band": s.min_band} for s in self.subscribers],
                "deliveries": [d.to_dict() for d in reversed(log_[-500:])]}

    # --- routes ----------------------------------------------------------------------------------------
    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/chain/health", self._h(lambda q, m: self.chain_health()))
        r.add_get("/api/dashboard/summary", self._h(lambda q, m: self.summary()))
        r.add_get("/api/mbg/deliveries", self._h(lambda q, m: self.deliveries()))
        r.add_get("/api/mbg/containers", self._h(lambda q, m: self.containers()))
        r.add_get("/api/mbg/containers/{tag}", self._h(lambda q, m: self.container(m["tag"])))
        r.add_get("/api/mbg/violations", self._h(lambda q, m: self.violations()))
        r.add_get("/api/mbg/stock", self._h(lambda q, m: self.stock()))
        r.add_get("/api/mbg/epcis", self._h(lambda q, m: self.epcis(q.get("date"))))
        r.add_get("/api/mbg/{kind:late|short|missing|lost}",
                  self._h(lambda q, m: self.exceptions(m["kind"], q.get("date"))))
        r.add_get("/api/markets/prices", self._h(lambda q, m: self.prices(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/live", self._h(lambda q, m: self.live_prices(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/history/{commodity}", self._h(lambda q, m: self.history(
            m["commodity"], q.get("market"), q.get("since_day"), q.get("until_day"))))
        r.add_get("/api/markets/impact", self._h(lambda q, m: self.impact(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/forecast/{commodity}",
                  self._h(lambda q, m: self.forecast(m["commodity"], q.get("market"))))
        r.add_get("/api/markets/alerts", self._h(lambda q, m: self.alerts()))
        r.add_get("/api/markets/map", self._h(lambda q, m: self.market_map()))
        r.add_get("/api/markets/quarantine", self._h(lambda q, m: self.quarantine(q.get("state"))))
        r.add_get("/api/markets/quarantine/audit", self._h(lambda q, m: self.audit(q.get("id"))))
        r.add_post("/api/markets/quarantine/{id}/decide", self.decide_route)
        r.add_get("/api/markets/webhooks", self.webhooks_route)
        app.on_startup.append(self._bind)
        app.on_cleanup.append(self._cleanup)

    async def _bind(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()

    async def _cleanup(self, app: web.Application) -> None:
        for fut in list(self._sends):
            fut.cancel()
        if self.sender is not None:
            await self.sender.close()

    def _operator(self, request: web.Request) -> None:
        self.auth.require(request, "operator")

    async def decide_route(self, request: web.Request) -> web.Response:
        """Operator: release, confirm or reopen a quarantined price; the decision joins its audit trail"""
        self._operator(request)
        try:
            value = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) and value[k].strip()
                                                  for k in ("action", "by", "why")):
            return error_response(RequestError("expected JSON {action: release|confirm|reopen, by, why}"))
        try:
            body = await asyncio.to_thread(self.decide, request.match_info["id"], value["action"],
                                           value["by"][:200], value["why"][:2000])
        except MarketError as exc:
            return error_response(exc)
        return web.json_response(body)

    async def webhooks_route(self, request: web.Request) -> web.Response:
        """Operator: the webhook subscribers and the record of every alert delivery (attempts, statuses)"""
        self._operator(request)
        return web.json_response(self.webhooks())

    def _h(self, fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            try:
                body = await asyncio.to_thread(fn, request.query, request.match_info)
            except (MbgError, MarketError) as exc:
                return error_response(exc)
            return web.json_response(body)
        handler.__doc__ = "Domain view for the dashboard"
        return handler


def register(app: web.Application, hub: Hub, events: Publisher | None, *, plan: Plan,
             clock: Callable[[], int] | None = None) -> Views:
    """Build the views over `hub`, feed them from its listeners, add their routes to `app`."""
    views = Views(hub, plan=plan, clock=clock, events=events)
    views.register(app)
    views.start()
    return views


__all__ = ["DAY_S", "ITEM_COMMODITIES", "WIB_OFFSET_S", "HubMarkets", "Views", "register"]
