"""Read models of the markets domain in the hub: the market analytics fed by the record listener, each
observation kept with its verdict, and MBG kitchens' ingredient use as market demand."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from ledger import Record

from .calendar import date_of
from .catalog import COMMODITIES_BY_ID
from .errors import MarketError
from .model import DAY_S, PriceObservation, day_of
from .quarantine import CLEARED, PENDING, RELEASED
from .service import MarketService
from .validate import Verdict

log = logging.getLogger("jejak.hub.markets")

# Kitchen stock items (as MBG stock records name them) and the market commodity their demand moves.
ITEM_COMMODITIES = {"beras": "beras-medium", "ayam": "daging-ayam", "telur": "telur-ayam", "cabai": "cabai-merah",
                    "bawang": "bawang-merah", "minyak": "minyak-goreng", "gula": "gula-pasir"}
BACKLOG_S = 2 * DAY_S  # prices that arrive later than this after they were taken are not streamed live


class HubMarkets(MarketService):
    """The hub's MarketService, fed from its record listener: keeps each observation's verdict so the
    dashboard and the public API can show accepted and quarantined values side by side."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.observed: dict[str, tuple[PriceObservation, Verdict]] = {}
        self._observed_days: Counter[int] = Counter()  # observations held in `observed`, by day

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
        if obs.id not in self.observed:
            self._observed_days[day_of(obs.time, self.config.tz_offset_s)] += 1
        self.observed[obs.id] = (obs, verdict)

    def forget_unlisted(self) -> int:
        """Forget the observations of days no longer listed (their days' aggregates stay); returns how many."""
        first = self.listed_from()
        if not any(d < first for d in self._observed_days):
            return 0
        tz = self.config.tz_offset_s
        gone = [oid for oid, (obs, _) in self.observed.items() if day_of(obs.time, tz) < first]
        for oid in gone:
            del self.observed[oid]
        for d in [d for d in self._observed_days if d < first]:
            del self._observed_days[d]
        return len(gone)

    def listed_from(self) -> int:
        """The first day whose individual observations are listed (`checked`, `quarantined`): the last
        `raw_days` days by the hub's clock. Older days are kept as per-day aggregates only (history, forecasts,
        impact and bands still read them), so the lists are the same whether or not the hub restarted."""
        return day_of(int(self.clock()), self.config.tz_offset_s) - self.config.raw_days + 1

    def listed_since(self) -> str:
        """`listed_from` as a date, for answers that list observations (they say what they cover)."""
        return date_of(self.listed_from()).isoformat()

    def listed_count(self) -> int:
        first = self.listed_from()
        return sum(n for d, n in self._observed_days.items() if d >= first)

    def quarantined(self, state: str | None = "pending", *, offset: int = 0,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Held values in the state asked for (None: every state): those of the days listed (`listed_from`), and
        the pending ones of any day, since an operator's queue of values waiting for a decision does not shrink
        with the days listed (a restart holds them again from the kept days); in the order they were held, from
        `offset`, at most `limit` of them (None: all)."""
        return self.held_page(state, offset=offset, limit=limit)[0]

    def held_page(self, state: str | None = "pending", *, offset: int = 0,
                  limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of `quarantined`, and how many there are in all."""
        first = self.listed_from()
        held = [e for e in self.quarantine.store.entries(state)
                if e.state == PENDING or day_of(e.observation.time, self.config.tz_offset_s) >= first]
        held.sort(key=lambda e: (e.quarantined_at, e.observation.time, e.observation.id))
        page = held[offset:] if limit is None else held[offset:offset + limit]
        return [e.to_dict() for e in page], len(held)

    def held_count(self, state: str | None = "pending") -> int:
        """How many values `held_page` holds in all (its total), without listing them: every pending value
        counts whatever its day, so those are the store's count."""
        if state == PENDING:
            return self.quarantine.store.count(PENDING)
        first = self.listed_from()
        tz = self.config.tz_offset_s
        return sum(1 for e in self.quarantine.store.entries(state)
                   if e.state == PENDING or day_of(e.observation.time, tz) >= first)

    def listed_held_count(self) -> int:
        """How many observations of the days listed are out of the analyses now (pending or confirmed): the held
        part of `listed_count`, as `checked` marks them."""
        first = self.listed_from()
        tz = self.config.tz_offset_s
        return sum(1 for e in self.quarantine.store.entries(None)
                   if e.state not in (RELEASED, CLEARED) and day_of(e.observation.time, tz) >= first)

    def checked(self) -> list[dict[str, Any]]:
        """Every observation of the days listed (`listed_from`) with its day, whether it is out of the
        analyses now, and the reasons why."""
        states = {e.observation.id: e.state for e in self.quarantine.store.entries(None)}
        out = []
        first = self.listed_from()
        for obs, verdict in self.observed.values():
            if day_of(obs.time, self.config.tz_offset_s) < first:
                continue
            state = states.get(obs.id)
            out.append({**obs.to_dict(), "day": day_of(obs.time, self.config.tz_offset_s),
                        "quarantined": state is not None and state not in (RELEASED, CLEARED),
                        "state": state or "accepted", "provisional": verdict.provisional,
                        "reasons": [f"{c.name}: {c.reason}" for c in verdict.checks if c.fired]})
        out.sort(key=lambda o: (o["time"], o["id"]))
        return out


class KitchenDemand:
    """MBG kitchens' "use" of an ingredient, as demand for the matching commodity in the kitchen's market
    region (`kitchen_regions` names it as price records do), for the impact analysis."""

    def __init__(self, markets: MarketService, kitchen_regions: Mapping[str, str]) -> None:
        self.markets = markets
        self.kitchen_regions = dict(kitchen_regions)
        self.kg: dict[tuple[str, str, int], float] = defaultdict(float)  # (region, commodity, day) -> kg

    def take(self, rec: Record) -> None:
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
        if self.markets.summarized(key[2]):
            return  # a day a restart loaded as aggregates: its demand is counted there
        self.kg[key] += body["qty"] * scale
        self.markets.set_mbg_demand(region, commodity, key[2], self.kg[key])

    def load(self, demand: Mapping[tuple[str, str, int], float]) -> None:
        """Take the demand of the days a restart loaded as aggregates, by (region, commodity, day)."""
        self.kg.update(demand)
