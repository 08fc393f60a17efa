"""Read models of the markets domain in the hub: the market analytics fed by the record listener, each
observation kept with its verdict, and MBG kitchens' ingredient use as market demand."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ledger import Record

from .catalog import COMMODITIES_BY_ID
from .errors import MarketError
from .model import DAY_S, PriceObservation, day_of
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
                        "quarantined": state is not None and state not in ("released", "cleared"),
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
        self.kg[key] += body["qty"] * scale
        self.markets.set_mbg_demand(region, commodity, key[2], self.kg[key])
