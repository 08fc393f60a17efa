"""HTTP routes for the domain views (MBG, markets, chain health) that the dashboard reads, fed as records arrive."""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from ledger import Record

from .markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from .markets.errors import MarketError
from .markets.model import DAY_S, WIB_OFFSET_S, PriceObservation, SensorReading, day_of
from .markets.model import from_record as market_input
from .mbg import MbgError, MbgView, Plan
from .service import Hub

log = logging.getLogger("jejak.hub.views")

# WFP ALPS bands: normal < 0.25 <= stress < 1 <= alert < 2 <= crisis.
ALPS_BANDS = ((0.25, "normal"), (1.0, "stress"), (2.0, "alert"), (math.inf, "crisis"))
# Impact weights: what moves a market's price risk today, and how much each counts. Shown in every tooltip.
IMPACT_WEIGHTS = {"price_change": 0.5, "crowd": 0.2, "temperature": 0.15, "humidity": 0.15}


class Publisher(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...


def alps_band(value: float) -> str:
    for limit, name in ALPS_BANDS:
        if value < limit:
            return name
    return "crisis"


class InterimMarkets:
    """Market analytics for the dashboard until hub.markets offers its service facade.

    Keeps the verified price observations and sensor readings and derives, on demand: quarantine with
    reasons (Hampel over the series' last 14 days, cross-market disagreement, a ceiling), an impact score
    per observation day with its factors and weights, a 7-day damped-trend forecast with intervals, and
    ALPS bands per market and commodity.
    """

    def __init__(self) -> None:
        self.prices: list[PriceObservation] = []
        self.readings: list[SensorReading] = []
        self._ids: set[str] = set()

    def ingest(self, record: Any, arrived_at: int) -> bool:
        try:
            item = market_input(record, arrived_at)
        except (MarketError, KeyError):
            return False
        if item is None or item.id in self._ids:
            return False
        self._ids.add(item.id)
        if isinstance(item, PriceObservation):
            self.prices.append(item)
            return True
        if isinstance(item, SensorReading):
            self.readings.append(item)
            return True
        return False

    # --- validation ------------------------------------------------------------------------------------
    def checked(self) -> list[dict[str, Any]]:
        """Every observation with `quarantined` and its `reasons`, in time order."""
        by_series: dict[tuple[str, str], list[PriceObservation]] = defaultdict(list)
        by_day: dict[tuple[str, int], list[int]] = defaultdict(list)
        for p in sorted(self.prices, key=lambda p: (p.time, p.id)):
            by_series[(p.market, p.commodity)].append(p)
            by_day[(p.commodity, day_of(p.time))].append(p.price_idr)
        out = []
        for (_market, commodity), obs in by_series.items():
            accepted: list[tuple[int, int]] = []  # (day, price)
            for p in obs:
                day = day_of(p.time)
                reasons = []
                others = by_day[(commodity, day)]
                cm = statistics.median(others) if len(others) >= 3 else None
                window = [price for d, price in accepted if day - 14 <= d < day]
                if len(window) >= 5:
                    med = statistics.median(window)
                    mad = max(statistics.median(abs(x - med) for x in window) * 1.4826, 0.02 * med)
                    k = abs(p.price_idr - med) / mad
                    # A move that other markets make the same day is the market moving, not a bad report.
                    if k > 3.5 and (cm is None or abs(p.price_idr - cm) / cm > 0.1):
                        reasons.append(f"hampel: {k:.1f} MADs from the 14-day median {round(med)} IDR")
                if cm is not None:
                    rel = (p.price_idr - cm) / cm
                    if abs(rel) > 0.5:
                        reasons.append(f"cross_market: {rel:+.0%} against the median of {len(others)} markets "
                                       f"({round(cm)} IDR)")
                com = COMMODITIES_BY_ID.get(commodity)
                if com is not None and p.price_idr > 3 * com.base_idr:
                    reasons.append(f"ceiling: above 3x the reference price {com.base_idr} IDR")
                if not reasons:
                    accepted.append((day, p.price_idr))
                out.append({**p.to_dict(), "day": day, "quarantined": bool(reasons), "reasons": reasons})
        out.sort(key=lambda o: (o["time"], o["id"]))
        return out

    def _daily(self, checked: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, float]]:
        days: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for o in checked:
            if not o["quarantined"]:
                days[(o["market"], o["commodity"])][o["day"]].append(o["price_idr"])
        return {k: {d: statistics.median(v) for d, v in sorted(ds.items())} for k, ds in days.items()}

    # --- impact ----------------------------------------------------------------------------------------
    def _impact(self, market: str, commodity: str, day: int, price: float,
                series: dict[int, float], env: dict[tuple[str, int], dict[str, float]],
                crowd_norm: dict[str, float]) -> dict[str, Any]:
        before = [v for d, v in series.items() if day - 7 <= d < day]
        change = abs(price - statistics.median(before)) / statistics.median(before) if before else 0.0
        e = env.get((market, day), {})
        factors = {
            "price_change": min(1.0, change / 0.2),
            "crowd": min(1.0, e["crowd"] / (2 * crowd_norm[market])) if "crowd" in e and crowd_norm.get(market)
            else 0.0,
            "temperature": min(1.0, max(0.0, (e["temp"] - 28.0) / 8.0)) if "temp" in e else 0.0,
            "humidity": min(1.0, max(0.0, (e["rh"] - 70.0) / 25.0)) if "rh" in e else 0.0,
        }
        contrib = {k: IMPACT_WEIGHTS[k] * v for k, v in factors.items()}
        dominant = max(contrib, key=lambda k: contrib[k])
        return {"market": market, "commodity": commodity, "day": day, "score": round(sum(contrib.values()), 3),
                "dominant": dominant, "weights": IMPACT_WEIGHTS, "factors": {k: round(v, 3) for k, v in factors.items()}}

    def _env(self) -> tuple[dict[tuple[str, int], dict[str, float]], dict[str, float]]:
        acc: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        crowds: dict[str, list[int]] = defaultdict(list)
        for r in self.readings:
            a = acc[(r.site, day_of(r.time))]
            if r.temp_cc is not None:
                a["temp"].append(r.temp_cc / 100)
            if r.rh_cp is not None:
                a["rh"].append(r.rh_cp / 100)
            if r.crowd is not None:
                a["crowd"].append(r.crowd)
                crowds[r.site].append(r.crowd)
        env = {k: {n: statistics.fmean(v) for n, v in d.items()} for k, d in acc.items()}
        return env, {m: statistics.median(c) for m, c in crowds.items() if c}

    def impact(self, commodity: str | None = None, market: str | None = None) -> list[dict[str, Any]]:
        daily = self._daily(self.checked())
        env, crowd_norm = self._env()
        out = []
        for (m, c), series in daily.items():
            if (commodity and c != commodity) or (market and m != market):
                continue
            for day, price in series.items():
                out.append(self._impact(m, c, day, price, series, env, crowd_norm))
        return out

    # --- forecast and ALPS -----------------------------------------------------------------------------
    def forecast(self, commodity: str, market: str | None = None, horizon: int = 7) -> dict[str, Any]:
        daily = self._daily(self.checked())
        pooled: dict[int, list[float]] = defaultdict(list)
        for (m, c), series in daily.items():
            if c == commodity and (market is None or m == market):
                for d, v in series.items():
                    pooled[d].append(v)
        if len(pooled) < 8:
            raise MarketError(f"forecast for {commodity}: expected at least 8 days of accepted prices, "
                              f"got {len(pooled)}", hint="wait for more days of prices")
        days = sorted(pooled)
        hist = [(d, statistics.median(pooled[d])) for d in days][-28:]
        xs = [d for d, _ in hist]
        ys = [v for _, v in hist]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs) or 1.0
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        resid = [y - (my + slope * (x - mx)) for x, y in hist]
        sd = statistics.pstdev(resid) or 0.005 * my
        level = statistics.fmean(ys[-7:]) + slope * 3
        naive = [abs(ys[i] - ys[i - 7]) for i in range(7, len(ys))]
        last = xs[-1]
        points = []
        for h in range(1, horizon + 1):
            mean = level + slope * h * 0.9 ** h
            half = 1.96 * sd * math.sqrt(h)
            points.append({"day": last + h, "mean": round(mean), "low": round(mean - half), "high": round(mean + half)})
        return {"commodity": commodity, "market": market, "model": "damped linear trend over 28 days",
                "history": [{"day": d, "price": round(v)} for d, v in hist], "forecast": points,
                "interval": "95% (normal residuals, widening with sqrt(h))",
                "baseline_mae_seasonal_naive": round(statistics.fmean(naive)) if naive else None}

    def alps(self) -> list[dict[str, Any]]:
        """ALPS per market and commodity: (mean of the last 7 days - baseline mean) / baseline sd."""
        out = []
        for (m, c), series in self._daily(self.checked()).items():
            days = sorted(series)
            if len(days) < 21:
                continue
            last = days[-1]
            recent = [series[d] for d in days if d > last - 7]
            base = [series[d] for d in days if last - 37 < d <= last - 7]
            if len(base) < 10:
                continue
            sd = statistics.pstdev(base) or 1.0
            value = (statistics.fmean(recent) - statistics.fmean(base)) / max(sd, 0.01 * statistics.fmean(base))
            out.append({"market": m, "commodity": c, "alps": round(value, 2), "band": alps_band(value),
                        "day": last, "price": round(recent[-1])})
        return out


class Views:
    """The hub's domain views and their routes; `on_records` is the hub listener that feeds them."""

    def __init__(self, hub: Hub, *, plan: Plan, clock: Callable[[], int] | None = None,
                 events: Publisher | None = None) -> None:
        self.hub = hub
        self.clock = clock or hub.clock
        self.events = events
        self.mbg = MbgView(plan)
        self.markets = InterimMarkets()
        self.last_arrival: dict[str, int] = {}
        self.last_time: dict[str, int] = {}
        self.records_by_kind: dict[str, int] = defaultdict(int)
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._seen_alerts: set[str] = set()
        self._alerts: list[dict[str, Any]] = []
        self._worker: threading.Thread | None = None
        hub.listeners.on_records.append(self.on_records)

    # --- feeding ---------------------------------------------------------------------------------------
    def on_records(self, records: list[Record], arrived_at: int) -> None:
        """Hub listener (runs on the ingest thread): record the inputs; derivation waits for the worker."""
        with self._lock:
            for rec in records:
                self.records_by_kind[rec.kind] += 1
                self.last_arrival[rec.device] = arrived_at
                self.last_time[rec.device] = max(self.last_time.get(rec.device, rec.time), rec.time)
                if rec.kind in ("scan", "stock"):
                    self.mbg.ingest(rec, arrived_at)
                elif rec.kind in ("price", "reading", "note"):
                    self.markets.ingest(rec, arrived_at)
        self._dirty.set()

    def start(self) -> None:
        """Start the worker that derives alerts after records arrive and publishes the new ones."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="jejak-views", daemon=True)
            self._worker.start()

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._worker is not None:
            self._worker.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._stop.wait(0.3)  # let a burst of pushes land before deriving
            self._dirty.clear()
            try:
                self.refresh_alerts()
            except Exception:
                log.exception("deriving alerts failed")

    def refresh_alerts(self) -> list[dict[str, Any]]:
        """Recompute the alerts; publish and return the ones not seen before."""
        fresh = []
        for alert in self.current_alerts():
            if alert["id"] not in self._seen_alerts:
                self._seen_alerts.add(alert["id"])
                self._alerts.append(alert)
                fresh.append(alert)
        if self.events is not None:
            for alert in fresh:
                self.events.publish({"type": "alert", "alert": alert})
        return fresh

    def current_alerts(self) -> list[dict[str, Any]]:
        now = self.clock()
        with self._lock:
            findings = [f for f in self.mbg.findings(now, self.mbg.today(now)) if f.severity == "alert"]
            alps = self.markets.alps()
            quarantined = [o for o in self.markets.checked() if o["quarantined"]]
        out = []
        for f in findings:
            out.append({"id": f"mbg/{f.code}/{f.subject}/{f.date}", "domain": "mbg", "code": f.code,
                        "subject": f.subject, "severity": f.severity, "text": f.detail, "time": now})
        for a in alps:
            if a["band"] in ("alert", "crisis"):
                out.append({"id": f"alps/{a['market']}/{a['commodity']}/{a['day']}/{a['band']}", "domain": "markets",
                            "code": f"alps_{a['band']}", "subject": f"{a['market']}/{a['commodity']}",
                            "severity": "alert", "text": f"ALPS {a['alps']} ({a['band']})", "time": now})
        for o in quarantined:
            if o["day"] >= day_of(now) - 1:
                out.append({"id": f"quarantine/{o['id']}", "domain": "markets", "code": "quarantined",
                            "subject": f"{o['market']}/{o['commodity']}", "severity": "warning",
                            "text": f"{o['price_idr']} IDR quarantined: {'; '.join(o['reasons'])}", "time": now})
        return out

    # --- queries ---------------------------------------------------------------------------------------
    def chain_health(self) -> dict[str, Any]:
        store = self.hub.store
        now = self.clock()
        devices = []
        with self._lock:
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
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            return {"tag": tag, "timelines": [t.to_dict() for t in self.mbg.container(tag, now)]}

    def violations(self) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            date = self.mbg.today(now)
            return {"date": date, "violations": [v.to_dict() for v in self.mbg.violations(now, date)],
                    "findings": [f.to_dict() for f in self.mbg.findings(now, date)]}

    def stock(self) -> dict[str, Any]:
        with self._lock:
            return {"on_hand": self.mbg.stock_on_hand(),
                    "cards": [c.to_dict() for c in self.mbg.cards().values()]}

    def summary(self) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            out = self.mbg.summary(now)
            alps = self.markets.alps()
            checked = self.markets.checked()
        status = self.hub.status()
        out.update({"now": now, "chain": {"size": status["size"], "devices": status["devices"],
                                          "forks": status["forks"], "checkpoint": status["checkpoint"]},
                    "markets": {"observations": len(checked),
                                "quarantined": sum(1 for o in checked if o["quarantined"]),
                                "alps": {band: sum(1 for a in alps if a["band"] == band)
                                         for _, band in ALPS_BANDS}},
                    "live_alerts": len(self._alerts)})
        return out

    def prices(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        with self._lock:
            checked = self.markets.checked()
            impact = self.markets.impact(commodity, market)
        rows = [o for o in checked if (not commodity or o["commodity"] == commodity)
                and (not market or o["market"] == market)]
        series: dict[str, dict[str, Any]] = {}
        for o in rows:
            s = series.setdefault(f"{o['market']}/{o['commodity']}", {
                "market": o["market"], "commodity": o["commodity"], "unit": o["unit"], "points": []})
            s["points"].append({"id": o["id"], "time": o["time"], "day": o["day"], "price_idr": o["price_idr"],
                                "quarantined": o["quarantined"], "reasons": o["reasons"]})
        return {"commodities": sorted({o["commodity"] for o in checked}),
                "markets": sorted({o["market"] for o in checked}),
                "names": {c: COMMODITIES_BY_ID[c].name for c in {o["commodity"] for o in checked}
                          if c in COMMODITIES_BY_ID},
                "series": list(series.values()), "impact": impact,
                "quarantined": [o for o in rows if o["quarantined"]]}

    def impact(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        with self._lock:
            return {"weights": IMPACT_WEIGHTS, "impact": self.markets.impact(commodity, market)}

    def forecast(self, commodity: str, market: str | None) -> dict[str, Any]:
        with self._lock:
            return self.markets.forecast(commodity, market)

    def alerts(self) -> dict[str, Any]:
        return {"alerts": list(reversed(self._alerts[-200:]))}

    def market_map(self) -> dict[str, Any]:
        with self._lock:
            alps = self.markets.alps()
            seen = {o.market for o in self.markets.prices}
        order = {band: i for i, (_, band) in enumerate(ALPS_BANDS)}
        markets = []
        for mid in sorted(seen):
            m = MARKETS_BY_ID.get(mid)
            if m is None:
                continue
            mine = [a for a in alps if a["market"] == mid]
            worst = max(mine, key=lambda a: (order[a["band"]], a["alps"]), default=None)
            markets.append({"id": mid, "name": m.name, "province": m.admin1, "city": m.admin2,
                            "lat": m.latitude, "lon": m.longitude, "alps": mine,
                            "band": worst["band"] if worst else "normal", "worst": worst})
        return {"markets": markets, "bands": [b for _, b in ALPS_BANDS]}

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
        r.add_get("/api/markets/prices", self._h(lambda q, m: self.prices(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/impact", self._h(lambda q, m: self.impact(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/forecast/{commodity}",
                  self._h(lambda q, m: self.forecast(m["commodity"], q.get("market"))))
        r.add_get("/api/markets/alerts", self._h(lambda q, m: self.alerts()))
        r.add_get("/api/markets/map", self._h(lambda q, m: self.market_map()))

    def _h(self, fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            try:
                body = await asyncio.to_thread(fn, request.query, request.match_info)
            except (MbgError, MarketError) as exc:
                status = 404 if exc.code.endswith("NOT_FOUND") else getattr(exc, "http_status", 400)
                return web.json_response({"error": exc.to_dict()}, status=status)
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


__all__ = ["ALPS_BANDS", "DAY_S", "IMPACT_WEIGHTS", "WIB_OFFSET_S", "InterimMarkets", "Views", "alps_band", "register"]
