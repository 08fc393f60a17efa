"""HTTP routes of the markets dashboard: prices with their verdicts, impact, forecasts, ALPS map, alerts,
the quarantine and its operator decisions, webhook deliveries."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from coap_server.errors import RequestError
from coap_server.params import count, parse

from ..aggregates import ImportedFiles
from ..auth import Auth
from ..http import error_response, read_decision
from ..journal import Lines
from ..paging import HELD_LIMIT
from ..routing import json_route
from ..store import StoreError, StoreFull
from .catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from .errors import BadInputFile, MarketError, NotFound
from .importer import ImportDefaults, read_import
from .model import day_of
from .quarantine import Decision
from .view import HubMarkets
from .warning import ALPS_BANDS

if TYPE_CHECKING:
    from ..views import Views

IMPACT_DAYS = 7  # days of impact shown per series on the price chart
MAX_IMPORT_BYTES = 1 << 30  # an agency export of several million rows
# ?offset=N&limit=M of the held values: a page of the list (without a limit, the whole list from offset).
HELD_QUERY = (count("offset", 2**62), count("limit", HELD_LIMIT, lo=1))
log = logging.getLogger("jejak.hub.markets")


class MarketRoutes:
    """Answers from the markets read model (`views.markets`); quarantine decisions and webhook records
    are for operators (`auth`)."""

    def __init__(self, views: Views, *, auth: Auth, imports: Path | None = None,
                 decisions: Lines | None = None, kept_imports: ImportedFiles | None = None) -> None:
        self.views = views
        self.auth = auth
        # Imported files are kept under their SHA-256, with the defaults they were read with, and imported again
        # when the hub starts: the market analytics are rebuilt from what the hub holds. Kept in `kept_imports`
        # where the store keeps them (PostgreSQL), else in `imports` (data_dir/imports), which is also where an
        # upload is spooled while it is read.
        self.imports = imports
        self.kept_imports = kept_imports
        # Operators' quarantine decisions, one line each (a file in data_dir, or the store's journal on
        # PostgreSQL): the validator's verdicts are derived again from the records after a restart, an operator's
        # work is not.
        self.decisions = decisions

    def restore_decisions(self) -> int:
        """Apply again the decisions kept from earlier runs (blocking; the hub calls it at start, before
        imports are replayed and the refill runs). Returns how many were kept."""
        if self.decisions is None:
            return 0
        kept = []
        for item in self.decisions.read():
            try:
                kept.append(Decision.from_dict(item))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("kept quarantine decision %r not restored: %s", item, exc)
        with self.views.fresh():
            self.markets.restore_decisions(kept)
        self.views.changed()
        return len(kept)

    def replay_imports(self) -> int:
        """Import again every file kept from earlier imports (blocking; the hub calls it at start).
        Returns the rows taken."""
        if self.kept_imports is not None:
            self._carry_imports(self.kept_imports)
            return self._replay_kept(self.kept_imports)
        if self.imports is None or not self.imports.is_dir():
            return 0
        taken = 0
        for meta in sorted(self.imports.glob("*.json")):
            try:
                kept = json.loads(meta.read_text("utf-8"))
                taken += int(self.import_file(meta.with_suffix(".csv"), ImportDefaults(**kept["defaults"]))["taken"])
            except (OSError, ValueError, KeyError, TypeError, MarketError) as exc:
                log.warning("kept import %s not replayed: %s", meta.name, exc)
        return taken

    def _carry_imports(self, kept: ImportedFiles) -> None:
        """Files data_dir/imports kept before the store did, into the store once: each is renamed
        `<name>.in-store` (left for the operator, never read again)."""
        if self.imports is None or not self.imports.is_dir():
            return
        held = {sha for sha, _ in kept.kept()}
        for meta in sorted(self.imports.glob("*.json")):
            data = meta.with_suffix(".csv")
            try:
                if meta.stem not in held:
                    kept.keep(meta.stem, json.loads(meta.read_text("utf-8")), data)
                    log.info("kept import %s carried over to %s", meta.stem, kept.where)
                for path in (data, meta):
                    os.replace(path, path.with_name(path.name + ".in-store"))
            except (OSError, ValueError, StoreError) as exc:
                log.warning("kept import %s not carried over to %s: %s", meta.name, kept.where, exc)

    def _replay_kept(self, kept: ImportedFiles) -> int:
        taken = 0
        for sha, meta in kept.kept():
            fd, name = self._spooled(".replay")
            try:
                with os.fdopen(fd, "wb") as fh:
                    kept.write_to(sha, fh)
                taken += int(self.import_file(Path(name), ImportDefaults(**meta["defaults"]))["taken"])
            except (OSError, KeyError, TypeError, ValueError, MarketError, StoreError) as exc:
                log.warning("kept import %s in %s not replayed: %s", sha[:16], kept.where, exc)
            finally:
                os.unlink(name)
        return taken

    def _spooled(self, suffix: str) -> tuple[int, str]:
        """A new file to spool an import into (data_dir/imports, else the system's temporary directory): its
        descriptor and path."""
        spool = self.imports if self.imports is not None else Path(tempfile.gettempdir())
        spool.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=spool, suffix=suffix)

    def import_file(self, path: Path, defaults: ImportDefaults, name: str | None = None) -> dict[str, Any]:
        rows = read_import(path, defaults, name=name,
                           latest_day=day_of(self.views.clock(), self.markets.config.tz_offset_s))
        with self.views.fresh():
            report = self.markets.import_rows(rows)
        self.views.changed()
        return report

    @property
    def markets(self) -> HubMarkets:
        return self.views.markets

    def prices(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        """Every observation of the commodity of the days listed (accepted and quarantined, with reasons;
        `observations_from` is the first day, see HubMarkets.listed_from) and the impact of the last days of
        each series, for the price chart."""
        with self.views.fresh():
            checked = self.markets.checked()
            since = self.markets.listed_since()
            refused, refused_total = list(self.markets.refused), self.markets.refused_total
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
                "quarantined": [o for o in rows if o["quarantined"]], "observations_from": since,
                "refused": [r for r in refused if (not commodity or r["commodity"] == commodity)
                            and (not market or r["market"] == market)], "refused_total": refused_total}

    def _series_markets(self, commodity: str, market: str | None) -> list[str]:
        return sorted({p["market"] for p in self.markets.live_prices(commodity, market)})

    def _impact_rows(self, commodity: str, market: str | None, days: int = IMPACT_DAYS) -> list[dict[str, Any]]:
        out = []
        with self.views.fresh():
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
        with self.views.fresh():
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
        with self.views.fresh():
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
        out["interval"] = ("95 % (shaded), 80 % in the points; the chosen model's spread, calibrated on the "
                           "series' own past forecast errors")
        return out

    def live_prices(self, commodity: str | None, market: str | None) -> dict[str, Any]:
        with self.views.fresh():
            return {"prices": self.markets.live_prices(commodity, market)}

    def history(self, commodity: str, market: str | None, since: str | None, until: str | None) -> dict[str, Any]:
        def day(text: str | None, name: str) -> int | None:
            if text is None:
                return None
            if not text.lstrip("-").isdigit():
                raise RequestError(f"{name}: expected a day number, got {text[:20]!r}")
            return int(text)
        with self.views.fresh():
            return {"commodity": commodity, "market": market,
                    "history": self.markets.history(commodity, market, since_day=day(since, "since_day"),
                                                    until_day=day(until, "until_day"))}

    def market_map(self) -> dict[str, Any]:
        with self.views.fresh():
            bands, unbanded = self.markets.map_series()
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
                            "unbanded": [a for a in unbanded if a["market"] == mid],
                            "band": worst["band"] if worst else "normal", "worst": worst})
        return {"markets": markets, "bands": list(ALPS_BANDS)}

    def quarantine(self, state: str | None, *, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The held values in a state (default pending), in the order they were held: those of the days listed
        and the pending ones of every day; a page of them from `offset` with `limit`, and how many in all."""
        if state not in (None, "all", "pending", "released", "confirmed", "cleared"):
            raise RequestError(f"state: expected pending, released, confirmed, cleared or all, got {state[:20]!r}")
        with self.views.fresh():
            entries, total = self.markets.held_page(None if state == "all" else state or "pending",
                                                    offset=offset, limit=limit)
            since = self.markets.listed_since()
        names = {e["observation"]["commodity"] for e in entries}
        return {"state": state or "pending", "observations_from": since, "total": total, "offset": offset,
                "entries": entries, "names": {c: COMMODITIES_BY_ID[c].name for c in sorted(names)
                                              if c in COMMODITIES_BY_ID}}

    def quarantine_query(self, query: Any) -> dict[str, Any]:
        page = parse(query.items(), HELD_QUERY, strict=False)
        return self.quarantine(query.get("state"), offset=page.get("offset", 0), limit=page.get("limit"))

    def decide(self, observation_id: str, action: str, by: str, why: str) -> dict[str, Any]:
        # Kept in the journal before it takes effect, under the lock: the journal keeps the order decisions took
        # effect in, and a decision the journal refused changes nothing.
        with self.views.fresh():
            decision = self.markets.decide(observation_id, action, by=by, why=why,
                                           record=None if self.decisions is None else self._keep)
            audit = self.markets.audit(observation_id)
        self.views.changed()  # a release or a confirmation changes the alerts
        return {"decision": decision, "audit": audit}

    def _keep(self, decision: dict[str, Any]) -> None:
        assert self.decisions is not None
        try:
            self.decisions.append(decision)
        except OSError as exc:
            cls = StoreFull if exc.errno == errno.ENOSPC else StoreError
            raise cls(f"quarantine decision on {decision['observation']}: the journal {self.decisions.where} "
                      f"could not be written ({exc.strerror or exc}); nothing changed",
                      hint="free space or fix the disk, then make the decision again") from None
        except StoreError as exc:
            raise type(exc)(f"quarantine decision on {decision['observation']}: the journal "
                            f"{self.decisions.where} could not be written ({exc.message}); nothing changed",
                            hint="check the database, then make the decision again") from None

    def audit(self, observation_id: str | None) -> dict[str, Any]:
        with self.views.fresh():
            return {"audit": self.markets.audit(observation_id)}

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/markets/prices", json_route(lambda q, m: self.prices(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/live",
                  json_route(lambda q, m: self.live_prices(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/history/{commodity}", json_route(lambda q, m: self.history(
            m["commodity"], q.get("market"), q.get("since_day"), q.get("until_day"))))
        r.add_get("/api/markets/impact", json_route(lambda q, m: self.impact(q.get("commodity"), q.get("market"))))
        r.add_get("/api/markets/forecast/{commodity}",
                  json_route(lambda q, m: self.forecast(m["commodity"], q.get("market"))))
        r.add_get("/api/markets/alerts", json_route(lambda q, m: self.views.alerts.listing()))
        r.add_get("/api/markets/map", json_route(lambda q, m: self.market_map()))
        r.add_get("/api/markets/quarantine", json_route(lambda q, m: self.quarantine_query(q)))
        r.add_get("/api/markets/quarantine/audit", json_route(lambda q, m: self.audit(q.get("id"))))
        r.add_post("/api/markets/quarantine/{id}/decide", self.decide_route)
        r.add_post("/api/markets/import", self.import_route)
        r.add_get("/api/markets/webhooks", self.webhooks_route)

    async def decide_route(self, request: web.Request) -> web.Response:
        """Operator: release, confirm or reopen a quarantined price; the decision joins its audit trail"""
        self.auth.require(request, "operator")
        value = await read_decision(request, ("action", "by", "why"),
                                    "expected JSON {action: release|confirm|reopen, by, why}")
        try:
            body = await asyncio.to_thread(self.decide, request.match_info["id"], value["action"],
                                           value["by"][:200], value["why"][:2000])
        except (MarketError, StoreError) as exc:
            return error_response(exc)
        return web.json_response(body)

    async def import_route(self, request: web.Request) -> web.Response:
        """Operator: backfill price history from a CSV body (the agency's export, a PIHPS table or the long
        layout); ?market=&region=&reporter=&source= fill in what the file leaves out. Idempotent: the same
        rows again add nothing. Answers the import's report, refused rows with line and reason."""
        self.auth.require(request, "operator")
        q = request.query
        defaults = ImportDefaults(market=q.get("market", "")[:64], region=q.get("region", "")[:64],
                                  reporter=q.get("reporter", "")[:64], source=q.get("source", "import")[:64])
        fd, name = self._spooled(".upload")
        digest, size = hashlib.sha256(), 0
        try:
            # Streamed to disk: an export of a million rows is far larger than a JSON request may be.
            with os.fdopen(fd, "wb") as fh:
                async for chunk in request.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > MAX_IMPORT_BYTES:
                        return error_response(BadInputFile(f"import: more than {MAX_IMPORT_BYTES} bytes",
                                                           hint="split the file by year"))
                    digest.update(chunk)
                    fh.write(chunk)
            # Refusals name the upload, not where the hub spooled it.
            report = await asyncio.to_thread(self.import_file, Path(name), defaults, "uploaded file")
            meta = {"defaults": {"market": defaults.market, "region": defaults.region, "reporter": defaults.reporter,
                                 "source": defaults.source}, "bytes": size}
            if self.kept_imports is not None and report["taken"]:
                await asyncio.to_thread(self.kept_imports.keep, digest.hexdigest(), meta, Path(name))
            elif self.imports is not None and report["taken"]:
                kept = self.imports / f"{digest.hexdigest()}.csv"
                os.replace(name, kept)
                kept.with_suffix(".json").write_text(json.dumps(meta), "utf-8")
        except StoreError as exc:  # its rows are in the analytics until a restart, which does not import it again
            return error_response(StoreError(f"the import was read, but could not be kept: {exc.message}",
                                             hint="import the file again once the store is back"))
        except MarketError as exc:
            return error_response(exc)
        finally:
            if os.path.exists(name):
                os.unlink(name)
        return web.json_response({**report, "sha256": digest.hexdigest(), "bytes": size})

    async def webhooks_route(self, request: web.Request) -> web.Response:
        """Operator: the webhook subscribers and the record of every alert delivery (attempts, statuses)"""
        self.auth.require(request, "operator")
        return web.json_response(self.views.alerts.webhooks())
