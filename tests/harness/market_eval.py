"""A realistic market generator and the evaluation of the market checks and forecasts on it.

The generator writes what a deployment sees: prices that stay put for days and then step by a few ticks,
market-level step moves, regional spikes that every reporter shares, a reporter who rounds to Rp 500,
reporters who report at different hours and whose reports sometimes wait for an uplink, and in some
markets a reporter who reports honestly most days but inflates by 10-60 % on a few, and on those days
reports first. The evaluation sends every report through the hub's market service in arrival order (as
/ingest, MQTT and CoAP would) and reads the final verdicts back.

    python -m tests.harness.market_eval [--days 150] [--seed 11] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hub.markets.calendar import day_number
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID, Commodity
from hub.markets.forecast import holdout_mase
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation
from hub.markets.service import MarketService
from hub.markets.validate import Verdict

GOAL_RECALL = 0.95  # of inflations of 10 % and more
GOAL_FALSE_ALARMS = 0.005


@dataclass(frozen=True, slots=True, kw_only=True)
class RealisticConfig:
    seed: int = 11
    start: str = "2024-06-01"
    days: int = 150
    markets: tuple[str, ...] = ("pasar-senen", "pasar-kramat-jati", "pasar-minggu", "pasar-petisah",
                                "pasar-sambu", "pasar-badung", "pasar-kreneng")
    commodities: tuple[str, ...] = ("beras-medium", "beras-premium", "cabai-merah", "cabai-rawit",
                                    "bawang-merah", "bawang-putih", "telur-ayam", "daging-ayam", "minyak-goreng",
                                    "gula-pasir", "daging-sapi", "ikan-kembung")
    reporters: int = 3  # per market
    manipulated_markets: float = 0.6  # share of markets with a reporter who sometimes inflates
    manipulated_days: float = 0.08  # share of that reporter's days with an inflated price
    inflation: tuple[float, float] = (0.10, 0.60)
    move_days: float = 0.12  # share of days on which a sticky price moves (by one to three ticks)
    steps_per_series: float = 1.5  # market-level step moves (3-12 %) per series over the period
    spikes_per_region: float = 2.0  # regional spikes for 2-6 days (15-40 %, staples 5-15 %) per commodity
    rounder: bool = True  # one reporter per market rounds to Rp 500
    late_share: float = 0.05  # reports that wait 1-20 hours for an uplink


@dataclass(slots=True, kw_only=True)
class Generated:
    config: RealisticConfig
    observations: list[PriceObservation] = field(default_factory=list)
    inflation: dict[str, float] = field(default_factory=dict)  # id -> inflation of a manipulated report
    shared: set[str] = field(default_factory=set)  # ids of honest reports on a day of a shared real move
    honest_daily: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # series -> daily median


def _ticks(price: float, c: Commodity) -> float:
    return max(c.tick_idr, round(price / c.tick_idr) * c.tick_idr)


def generate(cfg: RealisticConfig | None = None) -> Generated:
    cfg = cfg or RealisticConfig()
    rng = np.random.default_rng(cfg.seed)
    first = day_number(cfg.start)
    out = Generated(config=cfg)
    regions = sorted({MARKETS_BY_ID[m].admin1 for m in cfg.markets})
    # Regional true prices: sticky, moving a few ticks on some days, with shared spikes.
    regional: dict[tuple[str, str], np.ndarray] = {}
    spike_days: dict[tuple[str, str], set[int]] = {}
    for r in regions:
        for cid in cfg.commodities:
            c = COMMODITIES_BY_ID[cid]
            level = c.base_idr * float(np.exp(rng.normal(0, 0.03)))
            path = np.empty(cfg.days)
            for d in range(cfg.days):
                if rng.random() < cfg.move_days:
                    level = _ticks(level * float(np.exp(rng.normal(0, max(c.daily_vol, 0.004) * 3))), c)
                path[d] = _ticks(level, c)
            days: set[int] = set()
            for _ in range(rng.poisson(cfg.spikes_per_region)):
                start, length = int(rng.integers(20, cfg.days - 7)), int(rng.integers(2, 7))
                # Chilli and shallots spike by a third or more; staples by a few to fifteen percent.
                lift = float(rng.uniform(0.15, 0.40) if c.daily_vol >= 0.015 else rng.uniform(0.05, 0.15))
                path[start:start + length] *= 1 + lift
                days.update(range(start, start + length + 1))  # the day it ends is a shared move too
            regional[(r, cid)], spike_days[(r, cid)] = path, days
    seq = 0
    for m in cfg.markets:
        market = MARKETS_BY_ID[m]
        has_manipulator = rng.random() < cfg.manipulated_markets
        hours = [float(h) for h in rng.uniform(7.0, 14.0, cfg.reporters)]
        for cid in cfg.commodities:
            c = COMMODITIES_BY_ID[cid]
            offset = float(np.exp(rng.normal(0, 0.02)))
            steps = np.ones(cfg.days)
            step_days: set[int] = set()
            for _ in range(rng.poisson(cfg.steps_per_series)):
                at = int(rng.integers(15, cfg.days))
                steps[at:] *= 1 + float(rng.choice([-1, 1])) * float(rng.uniform(0.03, 0.12))
                step_days.update((at, at + 1))
            base = regional[(market.admin1, cid)] * offset * steps
            # Each reporter's own stall quotes a little above or below the others, and keeps doing so:
            # quotes change when the price does, and now and then by a tick or two.
            bias = rng.normal(0, c.noise * 0.5, cfg.reporters)
            daily = np.full(cfg.days, np.nan)
            for d in range(cfg.days):
                true = _ticks(base[d], c)
                honest = []
                for k in range(cfg.reporters):
                    reporter = f"{m}/r{k}"
                    wobble = rng.normal(0, c.noise * 0.5) if rng.random() < 0.15 else 0.0
                    quote = true * (1 + bias[k] + wobble)
                    price = round(quote / 500) * 500 if (cfg.rounder and k == 1) else _ticks(quote, c)
                    hour = hours[k] + float(rng.normal(0, 0.7))
                    inflation = 0.0
                    if has_manipulator and k == cfg.reporters - 1 and rng.random() < cfg.manipulated_days:
                        inflation = float(rng.uniform(*cfg.inflation))
                        price = _ticks(price * (1 + inflation), c)
                        hour = 6.0 + float(rng.uniform(0, 0.5))  # on the days it inflates, it reports first
                    t = (first + d) * DAY_S - WIB_OFFSET_S + int(hour * 3600)
                    delay = int(rng.uniform(3600, 20 * 3600)) if rng.random() < cfg.late_share else int(
                        rng.uniform(10, 300))
                    oid = f"g{cfg.seed}-{seq}"
                    seq += 1
                    out.observations.append(PriceObservation(
                        id=oid, market=m, region=market.admin1, commodity=cid, grade=c.grade, unit=c.unit,
                        price_idr=int(price), time=t, arrived_at=t + delay, reporter=reporter))
                    if inflation:
                        out.inflation[oid] = inflation
                    else:
                        honest.append(price)
                        if d in spike_days[(market.admin1, cid)] or d in step_days:
                            out.shared.add(oid)
                if honest:
                    daily[d] = float(np.median(honest))
            out.honest_daily[(m, cid)] = daily
    return out


class _Recorder(MarketService):
    """The market service, keeping each observation's latest verdict."""

    def __init__(self) -> None:
        super().__init__()
        self.final: dict[str, Verdict] = {}

    def on_verdict(self, obs: PriceObservation, verdict: Verdict) -> None:
        self.final[obs.id] = verdict


def evaluate(data: Generated, *, warmup_days: int = 28) -> dict[str, Any]:
    """Stream every report in arrival order, settle the last day, and score the final verdicts. The first
    `warmup_days` build the history and are not scored."""
    svc = _Recorder()
    t0 = time.perf_counter()
    for o in sorted(data.observations, key=lambda o: (o.arrived_at, o.id)):
        svc.add_observation(o)
    last = max(o.arrived_at for o in data.observations)
    svc.settle(last + 3 * DAY_S)
    seconds = time.perf_counter() - t0
    first = day_number(data.config.start) + warmup_days
    scored = [o for o in data.observations if (o.time + WIB_OFFSET_S) // DAY_S >= first]
    q = {o.id: svc.final[o.id].quarantined for o in scored}
    provisional = sum(svc.final[o.id].provisional for o in scored)
    man = [o for o in scored if o.id in data.inflation]
    honest = [o for o in scored if o.id not in data.inflation]
    shared = [o for o in honest if o.id in data.shared]
    by_band: dict[str, list[bool]] = defaultdict(list)
    for o in man:
        lo = int(data.inflation[o.id] * 10) * 10
        by_band[f"{lo}-{lo + 10} %"].append(q[o.id])
    recall = float(np.mean([q[o.id] for o in man])) if man else float("nan")
    false_alarms = float(np.mean([q[o.id] for o in honest]))
    forecast = _forecasts(data)
    return {
        "observations": len(data.observations), "scored": len(scored), "seconds": round(seconds, 1),
        "per_second": round(len(data.observations) / seconds),
        "manipulated": len(man), "recall": round(recall, 4),
        "recall_by_inflation": {k: round(float(np.mean(v)), 3) for k, v in sorted(by_band.items())},
        "honest": len(honest), "false_alarms": round(false_alarms, 5),
        "false_alarm_count": int(sum(q[o.id] for o in honest)),
        "shared_move_reports": len(shared), "shared_move_quarantines": int(sum(q[o.id] for o in shared)),
        "still_provisional": int(provisional),
        "forecast": forecast,
        "goals": {"recall": GOAL_RECALL, "false_alarms": GOAL_FALSE_ALARMS,
                  "met": recall >= GOAL_RECALL and false_alarms <= GOAL_FALSE_ALARMS
                  and not any(q[o.id] for o in shared)},
    }


def _forecasts(data: Generated, *, tails: int = 4, horizon: int = 7) -> dict[str, Any]:
    """Hold out the last week at `tails` cut points a week apart; choose and fit on what came before;
    MASE of the chosen model and of both baselines on the held-out days."""
    M = np.stack(list(data.honest_daily.values()))
    chosen, naive, snaive, models = [], [], [], []
    for k in range(tails):
        r = holdout_mase(M[:, :M.shape[1] - horizon * k], horizon=horizon)
        chosen.append(r["chosen"])
        naive.append(r["naive"])
        snaive.append(r["snaive"])
        models.extend(r["models"].tolist())
    c, n, s = np.concatenate(chosen), np.concatenate(naive), np.concatenate(snaive)
    return {"series": M.shape[0], "tails": tails, "horizon": horizon,
            "median_mase_chosen": round(float(np.median(c)), 3), "median_mase_naive": round(float(np.median(n)), 3),
            "median_mase_snaive": round(float(np.median(s)), 3), "mean_mase_chosen": round(float(np.mean(c)), 3),
            "mean_mase_naive": round(float(np.mean(n)), 3), "mean_mase_snaive": round(float(np.mean(s)), 3),
            "chosen_models": {m: models.count(m) for m in sorted(set(models))}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--days", type=int, default=150)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = evaluate(generate(RealisticConfig(seed=args.seed, days=args.days)))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")
    return 0 if report["goals"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
