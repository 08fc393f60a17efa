"""Benchmark of the market analytics: validation of many observations and forecasts with backtests for
many series, with time and peak memory."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import numpy as np

from .ceilings import CeilingTable
from .forecast import forecast_many, snaive
from .synth import SynthConfig, generate, scaled_config
from .validate import ObservationBatch, Validator


def _measure(fn: Any) -> tuple[Any, float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak


def run(quick: bool) -> dict[str, Any]:
    """Validate 1,000,000 generated observations (quick: 100,000) and forecast 1,000 series of a year with
    a 3-origin backtest (quick: 50). Ceilings measured in the same run: a bare numpy median over the same
    history windows (validation cannot beat one pass of its cheapest statistic) and seasonal naive alone
    (the cheapest forecast)."""
    n_obs = 100_000 if quick else 1_000_000
    n_series = 50 if quick else 1_000
    data = generate(scaled_config(int(n_obs * 1.05), seed=11))
    # Exactly n_obs: the earliest reports, so every series keeps a contiguous history.
    keep = np.sort(np.argsort(data.batch.time, kind="stable")[:n_obs])
    b = data.batch
    batch = ObservationBatch(series=b.series, regions=b.regions, reporters=b.reporters,
                             series_idx=b.series_idx[keep], reporter_idx=b.reporter_idx[keep],
                             price=b.price[keep], time=b.time[keep], arrived=b.arrived[keep])
    del data
    validator = Validator(ceilings=CeilingTable.load())
    res, v_time, v_peak = _measure(lambda: validator.validate_batch(batch))

    rng = np.random.default_rng(5)
    # Measured on 100,000 windows and scaled, so the ceiling does not need 8 bytes x 28 x n of memory.
    windows = rng.normal(20000, 500, (100_000, 28))
    _, median_time, _ = _measure(lambda: np.median(windows, axis=1))
    median_time *= len(batch) / 100_000

    days = 365
    src = generate(SynthConfig(seed=13, days=days)).true_price
    rows = rng.integers(0, src.shape[0], n_series)
    Y = src[rows] * np.exp(rng.normal(0, 0.01, (n_series, days)))
    fcs, f_time, f_peak = _measure(lambda: forecast_many(Y, origins=3))
    _, sn_time, _ = _measure(lambda: snaive(np.log(Y), 7, 7))
    models = [f.model for f in fcs]
    return {
        "quick": quick,
        "validation": {
            "observations": len(batch), "series": len(batch.series), "seconds": v_time, "per_second": len(batch) / v_time,
            "peak_bytes": v_peak, "quarantined": int(res.quarantined.sum()),
            "ceiling_numpy_median_seconds": median_time,
        },
        "forecast": {
            "series": n_series, "days": days, "origins": 3, "models_fitted": n_series * 5 * 4,
            "seconds": f_time, "per_series_ms": 1000 * f_time / n_series, "peak_bytes": f_peak,
            "chosen": {m: models.count(m) for m in sorted(set(models))},
            "ceiling_snaive_seconds": sn_time,
        },
    }
