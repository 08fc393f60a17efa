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
from .catalog import COMMODITIES, MARKETS, Commodity, Market
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
    commodities: tuple[Commodity, ...] = COMMODITIES
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


def generate(config: SynthConfig | None = None, *, ceilings: CeilingTable | None = None) -> SynthData:
    """Generate a data set. Same config (and seed), same data."""
    cfg = config or SynthConfig()
    rng = np.random.default_rng(cfg.seed)
    ceilings = ceilings if ceilings is not None else CeilingTable.load()
    first = day_number(cfg.start)
    T = cfg.days
    days = np.arange(first, first + T)
    dow = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    hol = holiday_profile(first, T)
    regions = sorted({m.admin1 for m in cfg.markets})
    markets, commodities = cfg.markets, cfg.commodities

    # Regional components per (region, commodity): a slowly mean-reverting walk plus supply shocks.
    regional: dict[tuple[str, str], np.ndarray] = {}
    shock_curve: dict[tuple[str, str], np.ndarray] = {}
    shocks: list[dict[str, Any]] = []
    for r in regions:
        for c in commodities:
            eps = rng.normal(0, c.daily_vol, T)
            walk = lfilter([1.0], [1.0, -0.99], eps)
            curve = np.zeros(T)
            n_shocks = rng.poisson(cfg.shocks_per_year * T / 365)
            for _ in range(n_shocks):
                start = int(rng.integers(10, max(T - 5, 11)))
                length = int(rng.integers(10, 26))
                size = float(rng.uniform(0.15, 0.40) if c.daily_vol >= 0.01 else rng.uniform(0.04, 0.10))
                ramp = np.minimum(np.arange(length) / 4.0, 1.0)
                tail = np.minimum((length - np.arange(length)) / 5.0, 1.0)
                seg = size * np.minimum(ramp, tail)
                end = min(start + length, T)
                curve[start:end] = np.maximum(curve[start:end], seg[: end - start])
                shocks.append({"region": r, "commodity": c.id, "start_day": first + start,
                               "days": length, "size": size})
            regional[(r, c.id)] = walk
            shock_curve[(r, c.id)] = curve

    # MBG demand per region for the commodities that school meals use; prices answer weakly to it.
    mbg: dict[tuple[str, str], np.ndarray] = {}
    mbg_effect: dict[tuple[str, str], np.ndarray] = {}
    for r in regions:
        ramp_day = int(rng.integers(T // 4, T // 2))
        for c in commodities:
            if c.id in ("beras-medium", "telur-ayam", "daging-ayam"):
                level = np.where(np.arange(T) >= ramp_day, rng.uniform(800, 2000), rng.uniform(50, 150))
                demand = level * (1 + 0.05 * rng.normal(0, 1, T))
                demand[dow >= 5] *= 0.1  # no school meals at weekends
                mbg[(r, c.id)] = demand
                smooth = np.convolve(np.log(np.maximum(demand, 1)), np.ones(7) / 7, "same")
                mbg_effect[(r, c.id)] = 0.03 * (smooth - smooth[: max(ramp_day, 7)].mean())

    series_market: list[Market] = []
    series_commodity: list[Commodity] = []
    true = []
    caps: dict[tuple[str, str], np.ndarray] = {}
    for m in markets:
        level = rng.uniform(0.95, 1.07)
        for c in commodities:
            eps = rng.normal(0, 0.4 * c.daily_vol + 0.002, T)
            own = lfilter([1.0], [1.0, -0.9], eps)
            weekly = c.weekly * np.where(dow >= 5, 1.0, -0.4)
            logp = (np.log(c.base_idr * level) + regional[(m.admin1, c.id)] + own + weekly
                    + c.ramadan_lift * hol + shock_curve[(m.admin1, c.id)]
                    + mbg_effect.get((m.admin1, c.id), 0.0))
            p = np.exp(logp)
            cap = caps.get((c.id, m.admin1))
            if cap is None:
                het = [ceilings.lookup(c.id, c.grade, c.unit, m.admin1, int(d)) for d in days]
                cap = caps[(c.id, m.admin1)] = np.array(
                    [h.ceiling_idr * 0.975 if h is not None and h.kind == "HET" else np.inf for h in het])
            # Market operations (SPHP) hold HET commodities under their ceiling; the cap mimics that.
            p = np.minimum(p, cap)
            series_market.append(m)
            series_commodity.append(c)
            true.append(p)
    true_price = np.array(true)
    S = len(true)

    # Reports: each market has its reporters; each reporter reports each commodity once a day.
    rep_names: list[str] = []
    market_reps: dict[str, list[int]] = {}
    for m in markets:
        k = int(rng.integers(cfg.reporters[0], cfg.reporters[1] + 1))
        market_reps[m.id] = list(range(len(rep_names), len(rep_names) + k))
        rep_names.extend(f"rep-{m.id}-{j + 1}" for j in range(k))
    s_idx, r_idx, d_idx = [], [], []
    for s in range(S):
        reps = market_reps[series_market[s].id]
        for r in reps:
            s_idx.append(np.full(T, s))
            r_idx.append(np.full(T, r))
            d_idx.append(np.arange(T))
    s_arr = np.concatenate(s_idx)
    r_arr = np.concatenate(r_idx)
    d_arr = np.concatenate(d_idx)
    n = len(s_arr)
    noise = np.array([c.noise for c in series_commodity])[s_arr]
    tick = np.array([c.tick_idr for c in series_commodity])[s_arr]
    p = true_price[s_arr, d_arr] * np.exp(rng.normal(0, noise))
    hour = rng.uniform(6, 12, n)
    t = ((first + d_arr) * DAY_S - WIB_OFFSET_S + hour * 3600).astype(np.int64)
    delay = rng.exponential(300, n)
    late = rng.random(n) < cfg.late_share
    delay[late] = rng.uniform(3600, 2 * DAY_S, late.sum())
    arrived = t + delay.astype(np.int64)
    label = np.full(n, "", dtype=object)

    # Manipulations, never in the first two weeks: the checks need a history to judge against.
    eligible = np.flatnonzero(d_arr >= 14)
    n_manip = int(cfg.manipulation_rate * n)
    kinds = rng.choice(list(_MIX), size=n_manip, p=list(_MIX.values()))
    picks = rng.choice(eligible, size=n_manip, replace=False)
    for i, kind in zip(picks, kinds, strict=True):
        if label[i]:
            continue
        if kind == "inflate":
            p[i] *= rng.uniform(1.2, 1.6)
        elif kind == "deflate":
            p[i] *= rng.uniform(0.6, 0.8)
        elif kind == "fat_finger":
            p[i] *= 10.0 if rng.random() < 0.5 else 0.1
        elif kind == "backdated":
            back = int(rng.integers(4, 31))
            t[i] -= back * DAY_S
            p[i] = true_price[s_arr[i], max(d_arr[i] - back, 0)] * np.exp(rng.normal(0, noise[i]))
        elif kind == "collusion":
            same = np.flatnonzero((s_arr == s_arr[i]) & (d_arr == d_arr[i]))
            if (label[same] != "").any():
                continue
            f = rng.uniform(1.22, 1.5)
            p[same] *= f * np.exp(rng.normal(0, 0.01, len(same)))
            label[same] = "collusion"
            continue
        label[i] = kind
    price = np.maximum(np.round(p / tick) * tick, tick).astype(np.float64)

    genuine = np.zeros(n, bool)
    for s in range(S):
        curve = shock_curve[(series_market[s].admin1, series_commodity[s].id)]
        rows = s_arr == s
        genuine[rows] = (curve[d_arr[rows]] > 0.05) & (label[rows] == "")

    batch = ObservationBatch(
        series=tuple((m.id, c.id, c.grade, c.unit) for m, c in zip(series_market, series_commodity, strict=True)),
        regions=tuple(m.admin1 for m in series_market), reporters=tuple(rep_names), series_idx=s_arr,
        reporter_idx=r_arr, price=price, time=t, arrived=arrived,
        ids=tuple(f"synth-{cfg.seed}-{i}" for i in range(n)),
    )

    # Sensor readings per market and day: rain (humidity) and heat run with the supply shocks of the
    # region's volatile crops, crowds with Ramadan and the weekend.
    readings: dict[str, np.ndarray] = {}
    for m in markets:
        shock = max((shock_curve[(m.admin1, c.id)] for c in commodities if c.daily_vol >= 0.01),
                    key=lambda a: a.sum(), default=np.zeros(T))
        temp = 2900 + 150 * rng.normal(0, 1, T) - 300 * (shock > 0.05)
        rh = np.clip(7500 + 500 * rng.normal(0, 1, T) + 1500 * (shock > 0.05), 2000, 10000)
        crowd = np.maximum(0, 400 * (1 + 0.3 * (dow >= 5) + 0.5 * hol) * np.exp(rng.normal(0, 0.1, T)))
        readings[m.id] = np.stack([temp, rh, crowd], axis=1).round()

    notes: list[FieldNote] = []
    for sh in shocks:
        mk = [m for m in markets if m.admin1 == sh["region"]]
        for k in range(0, sh["days"], 3):
            d = sh["start_day"] + k
            if d >= first + T:
                break
            m = mk[int(rng.integers(len(mk)))]
            text = str(rng.choice([
                "pasokan {c} langka karena banjir, harga naik tajam",
                "stok {c} menipis, pedagang mengeluh harga mahal",
                "kiriman {c} terlambat, gagal panen di sentra produksi",
            ])).format(c=sh["commodity"].replace("-", " "))
            tt = _local_time(d, 9)
            notes.append(FieldNote(id=f"note-{len(notes)}", text=text, market=m.id, commodity=sh["commodity"],
                                   author=f"rep-{m.id}-1", time=tt, arrived_at=tt + 120))
    for _ in range(T // 3):
        d = first + int(rng.integers(T))
        m = markets[int(rng.integers(len(markets)))]
        tt = _local_time(d, 11)
        notes.append(FieldNote(id=f"note-{len(notes)}", text=str(rng.choice([
            "harga stabil, pasokan aman", "pasar ramai, stok cukup", "harga tidak naik, pembeli lancar",
        ])), market=m.id, author=f"rep-{m.id}-2", time=tt, arrived_at=tt + 120))

    return SynthData(config=cfg, first_day=first, batch=batch, label=label.astype(str), genuine=genuine,
                     true_price=true_price, series_market=tuple(series_market),
                     series_commodity=tuple(series_commodity), shocks=tuple(shocks), readings=readings,
                     notes=tuple(notes), mbg_demand=mbg)


def scaled_config(n_observations: int, *, seed: int = 7) -> SynthConfig:
    """A config whose data set holds about n_observations reports (more days, same markets)."""
    per_day = len(MARKETS) * len(COMMODITIES) * 3.5
    return SynthConfig(seed=seed, days=max(30, round(n_observations / per_day)))
