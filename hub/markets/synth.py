"""Seeded synthetic market data with ground truth: prices with weekly and Ramadan seasonality, regional
supply shocks, honest reporter noise, injected manipulations, and the sensor readings, field notes and MBG
demand that go with them; written as record bodies or in the WFP market-prices CSV schema."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import lfilter

from .calendar import HOLIDAYS, date_of, day_number
from .catalog import CORE_COMMODITIES, MARKETS, Commodity, Market
from .ceilings import CeilingTable
from .model import DAY_S, WIB_OFFSET_S, FieldNote, PriceObservation, SensorReading
from .validate import ObservationBatch

MANIPULATIONS = ("inflate", "deflate", "fat_finger", "backdated", "collusion")
# Shares of the manipulation kinds among manipulated reports (collusion touches a whole market's reports).
_MIX = {"inflate": 0.3, "deflate": 0.2, "fat_finger": 0.15, "backdated": 0.15, "collusion": 0.2}

WFP_COLUMNS = ("date", "admin1", "admin2", "market", "latitude", "longitude", "category", "commodity",
               "unit", "priceflag", "pricetype", "currency", "price", "usdprice")
WFP_HXL = ("#date", "#adm1+name", "#adm2+name", "#loc+market+name", "#geo+lat", "#geo+lon", "#item+type",
           "#item+name", "#item+unit", "#item+price+flag", "#item+price+type", "#currency", "#value",
           "#value+usd")


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthConfig:
    seed: int = 7
    start: str = "2024-01-01"
    days: int = 365
    markets: tuple[Market, ...] = MARKETS
    commodities: tuple[Commodity, ...] = CORE_COMMODITIES
    reporters: tuple[int, int] = (3, 4)  # reporters per market, inclusive range
    manipulation_rate: float = 0.01  # share of reports that are manipulated
    shocks_per_year: float = 3.0  # genuine regional supply shocks per region and commodity
    late_share: float = 0.03  # share of honest reports that wait for an uplink, up to two days
    usd_idr: float = 15_800.0
    readings_per_day: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthData:
    """The generated data. Per report row: `label` is "" for honest reports or a manipulation kind;
    `genuine` marks honest reports during a real supply shock (they must not be quarantined)."""

    config: SynthConfig
    first_day: int
    batch: ObservationBatch
    label: np.ndarray  # str per row
    genuine: np.ndarray  # bool per row
    true_price: np.ndarray  # (series, days) float rupiah
    series_market: tuple[Market, ...]
    series_commodity: tuple[Commodity, ...]
    shocks: tuple[dict[str, Any], ...]
    readings: dict[str, np.ndarray] = field(default_factory=dict)  # per market: (days, 3) temp_cc, rh_cp, crowd
    notes: tuple[FieldNote, ...] = ()
    mbg_demand: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (region, commodity) -> kg/day

    @property
    def manipulated(self) -> np.ndarray:
        return self.label != ""

    def observation(self, i: int) -> PriceObservation:
        b = self.batch
        s = int(b.series_idx[i])
        m, c = self.series_market[s], self.series_commodity[s]
        return PriceObservation(
            id=b.ids[i] if b.ids else f"synth-{i}", market=m.id, region=m.admin1, commodity=c.id,
            grade=c.grade, unit=c.unit, price_idr=int(b.price[i]), time=int(b.time[i]),
            arrived_at=int(b.arrived[i]), reporter=b.reporters[int(b.reporter_idx[i])], source="synthetic",
        )

    def observations(self) -> Iterator[PriceObservation]:
        for i in range(len(self.batch)):
            yield self.observation(i)

    def price_bodies(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(device time, body) of a "price" record for every report, in time order."""
        for i in np.argsort(self.batch.time, kind="stable"):
            o = self.observation(int(i))
            yield o.time, o.to_body()

    def reading_bodies(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for r in self.sensor_readings():
            yield r.time, r.to_body()

    def sensor_readings(self) -> Iterator[SensorReading]:
        for market_id, arr in self.readings.items():
            for d in range(arr.shape[0]):
                t = _local_time(self.first_day + d, 10)
                yield SensorReading(id=f"rd-{market_id}-{d}", site=market_id, sensor="bme280", time=t,
                                    arrived_at=t + 60, temp_cc=int(arr[d, 0]), rh_cp=int(arr[d, 1]),
                                    crowd=int(arr[d, 2]))

    def write_wfp_csv(self, path: str | Path, *, hxl: bool = True) -> int:
        """Write daily market medians of the honest reports in WFP's market-prices CSV schema."""
        b = self.batch
        day = (b.time + WIB_OFFSET_S) // DAY_S
        honest = ~self.manipulated
        key = b.series_idx[honest] * 100_000 + (day[honest] - self.first_day)
        price = b.price[honest]
        order = np.argsort(key, kind="stable")
        key, price = key[order], price[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        rows = 0
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(WFP_COLUMNS)
            if hxl:
                w.writerow(WFP_HXL)
            for k, a in enumerate(starts):
                z = starts[k + 1] if k + 1 < len(starts) else len(key)
                s, d = divmod(int(key[a]), 100_000)
                m, c = self.series_market[s], self.series_commodity[s]
                p = float(np.median(price[a:z]))
                w.writerow([date_of(self.first_day + d).isoformat(), m.admin1, m.admin2, m.name,
                            f"{m.latitude:.4f}", f"{m.longitude:.4f}", c.category, c.wfp_name,
                            "L" if c.unit == "liter" else c.unit.upper(), "actual", "Retail", "IDR",
                            f"{p:.0f}", f"{p / self.config.usd_idr:.4f}"])
                rows += 1
        return rows


def _local_time(day: int, hour: int) -> int:
    return day * DAY_S - WIB_OFFSET_S + hour * 3600


def holiday_profile(first_day: int, days: int) -> np.ndarray:
    """0..1 intensity of Ramadan/Lebaran demand per day: rising through Ramadan, peaking over Lebaran,
    fading in the ten days after."""
    out = np.zeros(days)
    d = np.arange(first_day, first_day + days)
    for (r0, _r1), (l0, l1) in zip(HOLIDAYS["ramadan"], HOLIDAYS["lebaran"], strict=True):
        rise = (d >= r0) & (d < l0)
        out[rise] = np.maximum(out[rise], 0.4 + 0.6 * (d[rise] - r0) / max(l0 - r0, 1))
        peak = (d >= l0) & (d <= l1)
        out[peak] = 1.0
        fade = (d > l1) & (d <= l1 + 10)
        out[fade] = np.maximum(out[fade], 1 - (d[fade] - l1) / 10)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _Days:
    """The generated period: day numbers, weekdays (0 = Monday) and the Ramadan/Lebaran intensity."""

    first: int
    number: np.ndarray
    dow: np.ndarray
    holiday: np.ndarray

    @property
    def count(self) -> int:
        return len(self.number)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Regional:
    """Per (region, commodity): a slowly mean-reverting log-price walk and the supply-shock curve."""

    walk: dict[tuple[str, str], np.ndarray]
    shock: dict[tuple[str, str], np.ndarray]
    shocks: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Series:
    """One price series per (market, commodity), with its true daily price."""

    market: list[Market]
    commodity: list[Commodity]
    true_price: np.ndarray  # (series, days)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Reports:
    """One row per report: its series, reporter and day; price and time as reported (manipulations change
    `price` and `time` in place)."""

    series: np.ndarray
    reporter: np.ndarray
    day: np.ndarray
    noise: np.ndarray
    price: np.ndarray
    time: np.ndarray
    arrived: np.ndarray
    label: np.ndarray


# The calls below draw from one generator in a fixed order: the same seed gives the same data set, so the
# order of the steps in `generate` is part of its contract.


def generate(config: SynthConfig | None = None, *, ceilings: CeilingTable | None = None) -> SynthData:
    """Generate a data set. Same config (and seed), same data."""
    cfg = config or SynthConfig()
    rng = np.random.default_rng(cfg.seed)
    ceilings = ceilings if ceilings is not None else CeilingTable.load()
    first = day_number(cfg.start)
    number = np.arange(first, first + cfg.days)
    days = _Days(first=first, number=number, dow=(number + 3) % 7,  # 1970-01-01 was a Thursday
                 holiday=holiday_profile(first, cfg.days))
    regions = sorted({m.admin1 for m in cfg.markets})
    regional = _regional_components(rng, cfg, days, regions)
    mbg, mbg_effect = _mbg_demand(rng, cfg, days, regions)
    series = _true_prices(rng, cfg, days, regional, mbg_effect, ceilings)
    reporters, market_reporters = _reporters(rng, cfg)
    reports = _reports(rng, cfg, days, series, market_reporters)
    _manipulate(rng, cfg, reports, series.true_price)
    tick = np.array([c.tick_idr for c in series.commodity])[reports.series]
    price = np.maximum(np.round(reports.price / tick) * tick, tick).astype(np.float64)
    batch = ObservationBatch(
        series=tuple((m.id, c.id, c.grade, c.unit)
                     for m, c in zip(series.market, series.commodity, strict=True)),
        regions=tuple(m.admin1 for m in series.market), reporters=tuple(reporters), series_idx=reports.series,
        reporter_idx=reports.reporter, price=price, time=reports.time, arrived=reports.arrived,
        ids=tuple(f"synth-{cfg.seed}-{i}" for i in range(len(reports.series))),
    )
    return SynthData(config=cfg, first_day=first, batch=batch, label=reports.label.astype(str),
                     genuine=_genuine(series, regional, reports), true_price=series.true_price,
                     series_market=tuple(series.market), series_commodity=tuple(series.commodity),
                     shocks=tuple(regional.shocks), readings=_sensor_readings(rng, cfg, days, regional),
                     notes=tuple(_field_notes(rng, cfg, days, regional.shocks)), mbg_demand=mbg)


def _regional_components(rng: np.random.Generator, cfg: SynthConfig, days: _Days, regions: list[str]
                         ) -> _Regional:
    walk: dict[tuple[str, str], np.ndarray] = {}
    shock: dict[tuple[str, str], np.ndarray] = {}
    shocks: list[dict[str, Any]] = []
    for r in regions:
        for c in cfg.commodities:
            eps = rng.normal(0, c.daily_vol, days.count)
            walk[(r, c.id)] = lfilter([1.0], [1.0, -0.99], eps)
            curve = np.zeros(days.count)
            for _ in range(rng.poisson(cfg.shocks_per_year * days.count / 365)):
                shocks.append({"region": r, "commodity": c.id} | _add_shock(rng, curve, c, days.first))
            shock[(r, c.id)] = curve
    return _Regional(walk=walk, shock=shock, shocks=shocks)


def _add_shock(rng: np.random.Generator, curve: np.ndarray, c: Commodity, first: int) -> dict[str, Any]:
    """One supply shock on `curve` (in place): ramps up over 4 days, holds, eases over the last 5; volatile
    crops jump 15-40 %, staples 4-10 %."""
    T = len(curve)
    start = int(rng.integers(10, max(T - 5, 11)))
    length = int(rng.integers(10, 26))
    size = float(rng.uniform(0.15, 0.40) if c.daily_vol >= 0.01 else rng.uniform(0.04, 0.10))
    ramp = np.minimum(np.arange(length) / 4.0, 1.0)
    tail = np.minimum((length - np.arange(length)) / 5.0, 1.0)
    seg = size * np.minimum(ramp, tail)
    end = min(start + length, T)
    curve[start:end] = np.maximum(curve[start:end], seg[: end - start])
    return {"start_day": first + start, "days": length, "size": size}


_MBG_COMMODITIES = ("beras-medium", "telur-ayam", "daging-ayam")


def _mbg_demand(rng: np.random.Generator, cfg: SynthConfig, days: _Days, regions: list[str]
                ) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """MBG demand (kg/day) per region for the commodities school meals use, from a day the programme ramps
    up; and the weak effect on log prices that prices answer it with."""
    T = days.count
    demand: dict[tuple[str, str], np.ndarray] = {}
    effect: dict[tuple[str, str], np.ndarray] = {}
    for r in regions:
        ramp_day = int(rng.integers(T // 4, T // 2))
        for c in cfg.commodities:
            if c.id not in _MBG_COMMODITIES:
                continue
            level = np.where(np.arange(T) >= ramp_day, rng.uniform(800, 2000), rng.uniform(50, 150))
            kg = level * (1 + 0.05 * rng.normal(0, 1, T))
            kg[days.dow >= 5] *= 0.1  # no school meals at weekends
            demand[(r, c.id)] = kg
            smooth = np.convolve(np.log(np.maximum(kg, 1)), np.ones(7) / 7, "same")
            effect[(r, c.id)] = 0.03 * (smooth - smooth[: max(ramp_day, 7)].mean())
    return demand, effect


def _true_prices(rng: np.random.Generator, cfg: SynthConfig, days: _Days, regional: _Regional,
                 mbg_effect: dict[tuple[str, str], np.ndarray], ceilings: CeilingTable) -> _Series:
    """Each market's price level times the regional walk and shocks, its own noise, the weekly and Ramadan
    pattern and the MBG effect; held under the HET ceiling where there is one."""
    markets: list[Market] = []
    commodities: list[Commodity] = []
    true = []
    caps: dict[tuple[str, str], np.ndarray] = {}
    for m in cfg.markets:
        level = rng.uniform(0.95, 1.07)
        for c in cfg.commodities:
            eps = rng.normal(0, 0.4 * c.daily_vol + 0.002, days.count)
            own = lfilter([1.0], [1.0, -0.9], eps)
            weekly = c.weekly * np.where(days.dow >= 5, 1.0, -0.4)
            key = (m.admin1, c.id)
            logp = (np.log(c.base_idr * level) + regional.walk[key] + own + weekly
                    + c.ramadan_lift * days.holiday + regional.shock[key] + mbg_effect.get(key, 0.0))
            if (c.id, m.admin1) not in caps:
                caps[(c.id, m.admin1)] = _het_cap(ceilings, c, m.admin1, days)
            # Market operations (SPHP) hold HET commodities under their ceiling; the cap mimics that.
            true.append(np.minimum(np.exp(logp), caps[(c.id, m.admin1)]))
            markets.append(m)
            commodities.append(c)
    return _Series(market=markets, commodity=commodities, true_price=np.array(true))


def _het_cap(ceilings: CeilingTable, c: Commodity, region: str, days: _Days) -> np.ndarray:
    """Per day, 97.5 % of the HET ceiling where one applies, else no cap."""
    het = [ceilings.lookup(c.id, c.grade, c.unit, region, int(d)) for d in days.number]
    return np.array([h.ceiling_idr * 0.975 if h is not None and h.kind == "HET" else np.inf for h in het])


def _reporters(rng: np.random.Generator, cfg: SynthConfig) -> tuple[list[str], dict[str, list[int]]]:
    """Reporter names, and each market's reporters as indexes into them."""
    names: list[str] = []
    per_market: dict[str, list[int]] = {}
    for m in cfg.markets:
        k = int(rng.integers(cfg.reporters[0], cfg.reporters[1] + 1))
        per_market[m.id] = list(range(len(names), len(names) + k))
        names.extend(f"rep-{m.id}-{j + 1}" for j in range(k))
    return names, per_market


def _reports(rng: np.random.Generator, cfg: SynthConfig, days: _Days, series: _Series,
             market_reporters: dict[str, list[int]]) -> _Reports:
    """Every reporter reports every commodity of their market once a day, in the morning, with honest
    noise; most arrive within minutes, `late_share` of them up to two days later."""
    T = days.count
    rows = [(s, r) for s, m in enumerate(series.market) for r in market_reporters[m.id]]
    s_arr = np.concatenate([np.full(T, s) for s, _ in rows])
    r_arr = np.concatenate([np.full(T, r) for _, r in rows])
    d_arr = np.concatenate([np.arange(T) for _ in rows])
    n = len(s_arr)
    noise = np.array([c.noise for c in series.commodity])[s_arr]
    price = series.true_price[s_arr, d_arr] * np.exp(rng.normal(0, noise))
    hour = rng.uniform(6, 12, n)
    time = ((days.first + d_arr) * DAY_S - WIB_OFFSET_S + hour * 3600).astype(np.int64)
    delay = rng.exponential(300, n)
    late = rng.random(n) < cfg.late_share
    delay[late] = rng.uniform(3600, 2 * DAY_S, late.sum())
    return _Reports(series=s_arr, reporter=r_arr, day=d_arr, noise=noise, price=price, time=time,
                    arrived=time + delay.astype(np.int64), label=np.full(n, "", dtype=object))


def _manipulate(rng: np.random.Generator, cfg: SynthConfig, reports: _Reports, true_price: np.ndarray
                ) -> None:
    """Manipulate `manipulation_rate` of the reports (in place), never in the first two weeks: the checks
    need a history to judge against."""
    eligible = np.flatnonzero(reports.day >= 14)
    n_manip = int(cfg.manipulation_rate * len(reports.series))
    kinds = rng.choice(list(_MIX), size=n_manip, p=list(_MIX.values()))
    picks = rng.choice(eligible, size=n_manip, replace=False)
    for i, kind in zip(picks, kinds, strict=True):
        if reports.label[i]:
            continue
        if kind == "collusion":
            _collude(rng, reports, i)
        else:
            _manipulate_one(rng, reports, i, kind, true_price)
            reports.label[i] = kind


def _manipulate_one(rng: np.random.Generator, reports: _Reports, i: int, kind: str, true_price: np.ndarray
                    ) -> None:
    p = reports.price
    if kind == "inflate":
        p[i] *= rng.uniform(1.2, 1.6)
    elif kind == "deflate":
        p[i] *= rng.uniform(0.6, 0.8)
    elif kind == "fat_finger":
        p[i] *= 10.0 if rng.random() < 0.5 else 0.1
    elif kind == "backdated":  # an old price sent as today's, stamped with its old date
        back = int(rng.integers(4, 31))
        reports.time[i] -= back * DAY_S
        then = true_price[reports.series[i], max(reports.day[i] - back, 0)]
        p[i] = then * np.exp(rng.normal(0, reports.noise[i]))


def _collude(rng: np.random.Generator, reports: _Reports, i: int) -> None:
    """Every reporter of the market raises the same series on the same day by about the same factor."""
    same = np.flatnonzero((reports.series == reports.series[i]) & (reports.day == reports.day[i]))
    if (reports.label[same] != "").any():
        return
    f = rng.uniform(1.22, 1.5)
    reports.price[same] *= f * np.exp(rng.normal(0, 0.01, len(same)))
    reports.label[same] = "collusion"


def _genuine(series: _Series, regional: _Regional, reports: _Reports) -> np.ndarray:
    """Honest reports made during a real supply shock: the checks must let them through."""
    genuine = np.zeros(len(reports.series), bool)
    for s, (m, c) in enumerate(zip(series.market, series.commodity, strict=True)):
        curve = regional.shock[(m.admin1, c.id)]
        rows = reports.series == s
        genuine[rows] = (curve[reports.day[rows]] > 0.05) & (reports.label[rows] == "")
    return genuine


def _sensor_readings(rng: np.random.Generator, cfg: SynthConfig, days: _Days, regional: _Regional
                     ) -> dict[str, np.ndarray]:
    """Per market and day: rain (humidity) and heat run with the supply shocks of the region's volatile crops,
    crowds with Ramadan and the weekend."""
    T = days.count
    readings: dict[str, np.ndarray] = {}
    for m in cfg.markets:
        shock = max((regional.shock[(m.admin1, c.id)] for c in cfg.commodities if c.daily_vol >= 0.01),
                    key=lambda a: a.sum(), default=np.zeros(T))
        temp = 2900 + 150 * rng.normal(0, 1, T) - 300 * (shock > 0.05)
        rh = np.clip(7500 + 500 * rng.normal(0, 1, T) + 1500 * (shock > 0.05), 2000, 10000)
        busy = 1 + 0.3 * (days.dow >= 5) + 0.5 * days.holiday
        crowd = np.maximum(0, 400 * busy * np.exp(rng.normal(0, 0.1, T)))
        readings[m.id] = np.stack([temp, rh, crowd], axis=1).round()
    return readings


_SHORTAGE_NOTES = ("pasokan {c} langka karena banjir, harga naik tajam",
                   "stok {c} menipis, pedagang mengeluh harga mahal",
                   "kiriman {c} terlambat, gagal panen di sentra produksi")
_CALM_NOTES = ("harga stabil, pasokan aman", "pasar ramai, stok cukup", "harga tidak naik, pembeli lancar")


def _field_notes(rng: np.random.Generator, cfg: SynthConfig, days: _Days, shocks: list[dict[str, Any]]
                 ) -> list[FieldNote]:
    """Reporters' notes: every third day of a shock one market of the region tells of the shortage; on a
    third of the days some market says all is calm."""
    notes: list[FieldNote] = []
    end = days.first + days.count
    for sh in shocks:
        markets = [m for m in cfg.markets if m.admin1 == sh["region"]]
        for d in range(sh["start_day"], min(sh["start_day"] + sh["days"], end), 3):
            m = markets[int(rng.integers(len(markets)))]
            text = str(rng.choice(_SHORTAGE_NOTES)).format(c=sh["commodity"].replace("-", " "))
            t = _local_time(d, 9)
            notes.append(FieldNote(id=f"note-{len(notes)}", text=text, market=m.id, commodity=sh["commodity"],
                                   author=f"rep-{m.id}-1", time=t, arrived_at=t + 120))
    for _ in range(days.count // 3):
        d = days.first + int(rng.integers(days.count))
        m = cfg.markets[int(rng.integers(len(cfg.markets)))]
        t = _local_time(d, 11)
        notes.append(FieldNote(id=f"note-{len(notes)}", text=str(rng.choice(_CALM_NOTES)), market=m.id,
                               author=f"rep-{m.id}-2", time=t, arrived_at=t + 120))
    return notes


def scaled_config(n_observations: int, *, seed: int = 7) -> SynthConfig:
    """A config whose data set holds about n_observations reports (more days, same markets)."""
    per_day = len(MARKETS) * len(CORE_COMMODITIES) * 3.5
    return SynthConfig(seed=seed, days=max(30, round(n_observations / per_day)))
