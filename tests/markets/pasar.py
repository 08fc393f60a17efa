"""Daily prices shaped like what PIHPS and Panel Harga publish for pasar rakyat, with what the field adds:
no reports on Sundays and public holidays, late and repeated reports, a chilli spike in the rainy season,
the Ramadan and Lebaran rise, fat-fingered and per-ons entries, three reporters who push a price up slowly
together, a market that goes silent for a week and a commodity that starts reporting three days before
the end. Every report is labelled with what it is, so a test can say what the hub should do with it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hub.markets.calendar import date_of, day_number
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation

START = "2024-11-01"
DAYS = 170  # to 2025-04-19: the rainy-season chilli spike, then Ramadan (from 1 March) and Lebaran (31 March)
MARKETS = ("pasar-senen", "pasar-kramat-jati", "pasar-minggu")  # DKI Jakarta, within 15 km of each other
REGION = "DKI Jakarta"
# Where the generated series start (Jakarta, late 2024), rupiah per kg or per liter.
LEVELS = {"beras-medium": 13_600, "cabai-merah": 26_000, "bawang-merah": 34_000, "telur-ayam": 28_000,
          "daging-ayam": 36_000, "minyak-goreng-curah": 17_000}
# Public holidays on which the enumerators do not report (besides Sundays).
HOLIDAYS = ("2024-11-27", "2024-12-25", "2024-12-26", "2025-01-01", "2025-01-27", "2025-01-28", "2025-01-29",
            "2025-03-28", "2025-03-31", "2025-04-01", "2025-04-02", "2025-04-03", "2025-04-04", "2025-04-07",
            "2025-04-18")
SPIKE = ("2024-12-16", "2025-01-10", "2025-02-10")  # chilli: starts rising, peaks, back near where it started
SPIKE_LOW, SPIKE_HIGH = 25_000, 90_000
FITRI = "2025-03-31"
LEBARAN_LIFT = {"cabai-merah": 0.15, "bawang-merah": 0.18, "telur-ayam": 0.12, "daging-ayam": 0.15,
                "beras-medium": 0.03, "minyak-goreng-curah": 0.02}

FAT_FINGER = "fat-finger"
UNIT_ONS = "per-ons"
CARTEL = "cartel"
NEW = "new-commodity"


@dataclass(frozen=True, slots=True, kw_only=True)
class PasarConfig:
    seed: int = 7
    start: str = START
    days: int = DAYS
    reporters: int = 3  # per market; the cartel's market has one more, honest
    cartel_market: str = "pasar-minggu"
    cartel_commodity: str = "bawang-merah"
    cartel_from: str = "2024-12-02"
    cartel_days: int = 21
    cartel_rate: float = 0.015  # a day, about +35 % over three weeks
    silent_market: str = "pasar-kramat-jati"
    silent_from: str = "2025-02-17"
    silent_days: int = 7
    fat_fingers: tuple[tuple[str, str, str, float], ...] = (
        ("2024-12-19", "pasar-senen", "cabai-merah", 10.0),  # 420.000 typed for 42.000
        ("2025-02-05", "pasar-kramat-jati", "daging-ayam", 0.1),  # 3.700 for 37.000
        ("2025-03-12", "pasar-minggu", "beras-medium", 10.0),
    )
    ons_reporter: str = "pasar-senen/r2"  # for a week, enters telur's price per ons under "kg"
    ons_from: str = "2025-01-13"
    ons_days: int = 6
    late_share: float = 0.06
    twice_share: float = 0.03
    new_commodity: str = "daging-sapi"
    new_days: int = 3


@dataclass(slots=True, kw_only=True)
class Pasar:
    config: PasarConfig
    observations: list[PriceObservation] = field(default_factory=list)
    label: dict[str, str] = field(default_factory=dict)  # id -> FAT_FINGER, UNIT_ONS, CARTEL, NEW; honest: absent
    true: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (market, commodity) -> daily price

    @property
    def first_day(self) -> int:
        return day_number(self.config.start)

    def closed(self, day: int) -> bool:
        return date_of(day).weekday() == 6 or date_of(day).isoformat() in HOLIDAYS


def _tick(price: float, tick: int) -> int:
    return max(tick, round(price / tick) * tick)


def chilli_path(first: int, days: int, rng: np.random.Generator) -> np.ndarray:
    """Cabai merah keriting in Jakarta: about Rp 25.000 until mid-December, up to about Rp 90.000 in under
    four weeks as the rains spoil the harvest, back down through February, with day-to-day noise of a few
    percent."""
    a, peak, end = (day_number(d) - first for d in SPIKE)
    lo, hi = math.log(SPIKE_LOW), math.log(SPIKE_HIGH)
    out = np.empty(days)
    for d in range(days):
        if d < a:
            x = lo + 0.04 * math.sin(d / 5)
        elif d <= peak:
            x = lo + (hi - lo) * (1 - math.cos(math.pi * (d - a) / (peak - a))) / 2
        elif d <= end:
            x = hi - (hi - lo - 0.35) * (1 - math.cos(math.pi * (d - peak) / (end - peak))) / 2
        else:
            x = lo + 0.35 - 0.002 * (d - end)
        out[d] = x
    return np.exp(out + rng.normal(0, 0.02, days))


def lebaran(first: int, days: int, lift: float) -> np.ndarray:
    """The Ramadan and Lebaran rise: flat until three weeks before Idul Fitri, up by `lift` by the day,
    back down over the two weeks after."""
    fitri = day_number(FITRI) - first
    out = np.ones(days)
    for d in range(days):
        if fitri - 21 <= d <= fitri:
            out[d] = 1 + lift * (d - fitri + 21) / 21
        elif fitri < d <= fitri + 14:
            out[d] = 1 + lift * (1 - (d - fitri) / 14)
    return out


def generate(cfg: PasarConfig | None = None) -> Pasar:
    cfg = cfg or PasarConfig()
    rng = np.random.default_rng(cfg.seed)
    out = Pasar(config=cfg)
    first = out.first_day
    regional: dict[str, np.ndarray] = {}
    for cid, level in LEVELS.items():
        c = COMMODITIES_BY_ID[cid]
        if cid == "cabai-merah":
            path = chilli_path(first, cfg.days, rng)
        else:
            # Sticky: the price moves on about one day in eight, by a tick to a few percent.
            path, x = np.empty(cfg.days), float(level)
            for d in range(cfg.days):
                if rng.random() < 0.12:
                    x *= math.exp(rng.normal(0, max(c.daily_vol, 0.004) * 3))
                path[d] = x
        regional[cid] = path * lebaran(first, cfg.days, LEBARAN_LIFT[cid])
    cartel_at = day_number(cfg.cartel_from) - first
    silent_at = day_number(cfg.silent_from) - first
    ons_at = day_number(cfg.ons_from) - first
    fat = {(day_number(d) - first, m, cid): f for d, m, cid, f in cfg.fat_fingers}
    seq = 0
    for m in MARKETS:
        market = MARKETS_BY_ID[m]
        n_rep = cfg.reporters + (m == cfg.cartel_market)
        hours = rng.uniform(6.5, 11.0, n_rep)
        commodities = [*LEVELS, cfg.new_commodity]
        for cid in commodities:
            c = COMMODITIES_BY_ID[cid]
            new = cid == cfg.new_commodity
            base = (np.full(cfg.days, float(c.base_idr)) if new else regional[cid]) * math.exp(rng.normal(0, 0.02))
            out.true[(m, cid)] = base
            bias = rng.normal(0, c.noise * 0.5, n_rep)
            quotes = [0] * n_rep
            fat_done = False
            for d in range(cfg.days - cfg.new_days if new else 0, cfg.days):
                if out.closed(first + d) or (m == cfg.silent_market and silent_at <= d < silent_at + cfg.silent_days):
                    continue
                for k in range(n_rep):
                    reporter = f"{m}/r{k}"
                    honest = _tick(base[d] * (1 + bias[k]), c.tick_idr)
                    # Quotes stick until the price has moved by more than a tick or so.
                    if not quotes[k] or abs(honest / quotes[k] - 1) > 0.6 * c.noise + c.tick_idr / honest:
                        quotes[k] = honest
                    price, label = quotes[k], ""
                    cartel = (m == cfg.cartel_market and cid == cfg.cartel_commodity and k < 3
                              and cartel_at <= d < cartel_at + cfg.cartel_days)
                    if cartel:
                        price = _tick(base[d] * math.exp(cfg.cartel_rate * (d - cartel_at + 1)), c.tick_idr)
                        label = CARTEL
                    f = fat.get((d, m, cid))
                    if f is not None and k == 0 and not fat_done:
                        price, label, fat_done = round(price * f), FAT_FINGER, True
                    if reporter == cfg.ons_reporter and cid == "telur-ayam" and ons_at <= d < ons_at + cfg.ons_days:
                        price, label = round(price / 10), UNIT_ONS
                    if new:
                        label = NEW
                    t = (first + d) * DAY_S - WIB_OFFSET_S + int((hours[k] + rng.normal(0, 0.4)) * 3600)
                    late = rng.random() < cfg.late_share
                    delay = int(rng.uniform(4 * 3600, 30 * 3600)) if late else int(rng.uniform(20, 600))
                    for again in range(2 if rng.random() < cfg.twice_share else 1):
                        oid = f"p{cfg.seed}-{seq}"
                        seq += 1
                        out.observations.append(PriceObservation(
                            id=oid, market=m, region=market.admin1, commodity=cid, grade=c.grade, unit=c.unit,
                            price_idr=int(price), time=t + 60 * again, arrived_at=t + delay + 600 * again,
                            reporter=reporter, device=reporter))
                        if label:
                            out.label[oid] = label
    out.observations.sort(key=lambda o: (o.arrived_at, o.id))
    return out
