"""Evaluation on generated data with ground truth: manipulations caught and false alarms per check and
combined, and forecast MASE against seasonal naive on held-out tails."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ceilings import CeilingTable
from .forecast import holdout_mase
from .model import DAY_S, WIB_OFFSET_S
from .synth import SynthConfig, SynthData, generate
from .validate import CHECKS, ValidationConfig, Validator

GOAL_CAUGHT = 0.95
GOAL_FALSE_ALARMS = 0.01


def daily_medians(data: SynthData, *, honest_only: bool = True) -> np.ndarray:
    """(series, days) matrix of each series' daily median report (NaN where none)."""
    b = data.batch
    day = (b.time + WIB_OFFSET_S) // DAY_S - data.first_day
    keep = (day >= 0) & (day < data.config.days)
    if honest_only:
        keep &= ~data.manipulated
    s, d, p = b.series_idx[keep], day[keep], b.price[keep]
    key = s * data.config.days + d
    order = np.lexsort((p, key))
    key, p = key[order], p[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    med = (p[starts + (counts - 1) // 2] + p[starts + counts // 2]) / 2
    out = np.full((len(b.series), data.config.days), np.nan)
    out.flat[key[starts]] = med
    return out


def evaluate_validation(data: SynthData, config: ValidationConfig | None = None) -> dict[str, Any]:
    v = Validator(config, ceilings=CeilingTable.load())
    res = v.validate_batch(data.batch)
    man = data.manipulated
    clean = ~man
    per_check = {}
    for name in CHECKS:
        f = res.fired_by(name)
        per_check[name] = {"caught": float(f[man].mean()), "false_alarms": float(f[clean].mean())}
    per_kind = {k: float(res.quarantined[data.label == k].mean()) for k in sorted(set(data.label[man]))}
    caught = float(res.quarantined[man].mean())
    fa = float(res.quarantined[clean].mean())
    return {
        "observations": len(data.batch), "manipulated": int(man.sum()),
        "combined": {"caught": caught, "false_alarms": fa,
                     "false_alarms_during_real_shocks": float(res.quarantined[data.genuine].mean())},
        "per_check": per_check, "per_manipulation": per_kind,
        "goal": {"caught": GOAL_CAUGHT, "false_alarms": GOAL_FALSE_ALARMS,
                 "met": caught >= GOAL_CAUGHT and fa <= GOAL_FALSE_ALARMS},
    }


def evaluate_forecasts(data: SynthData, *, tails: int = 4, horizon: int = 7) -> dict[str, Any]:
    """Hold out the last `horizon` days at `tails` cut points (the end, then 4 weeks earlier each time),
    choose and fit on what came before, and score the chosen model and seasonal naive."""
    M = daily_medians(data)
    chosen, seasonal, last, models = [], [], [], []
    for k in range(tails):
        cut = M.shape[1] - 28 * k
        r = holdout_mase(M[:, :cut], horizon=horizon)
        chosen.append(r["chosen"])
        seasonal.append(r["snaive"])
        last.append(r["naive"])
        models.extend(r["models"].tolist())
    c, n, lv = np.concatenate(chosen), np.concatenate(seasonal), np.concatenate(last)
    counts = {m: models.count(m) for m in sorted(set(models))}
    return {"series": M.shape[0], "tails": tails, "horizon": horizon,
            "mase_chosen": float(np.mean(c)), "mase_snaive": float(np.mean(n)), "mase_naive": float(np.mean(lv)),
            "median_mase_chosen": float(np.median(c)), "median_mase_snaive": float(np.median(n)),
            "median_mase_naive": float(np.median(lv)),
            "relative_to_snaive": float(np.mean(c) / np.mean(n)), "relative_to_naive": float(np.mean(c) / np.mean(lv)),
            "chosen_models": counts,
            "goal": {"mase_below": 1.0, "met": float(np.mean(c)) < 1.0}}


def evaluate(seed: int = 7, days: int = 365) -> dict[str, Any]:
    """Generate a data set and report both evaluations."""
    data = generate(SynthConfig(seed=seed, days=days))
    return {"seed": seed, "days": days, "validation": evaluate_validation(data),
            "forecast": evaluate_forecasts(data)}
