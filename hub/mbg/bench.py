"""Benchmark: a simulated province-day of MBG records reconciled on one core, with time and peak memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from .sim import simulate
from .view import MbgView

FULL_KITCHENS = 500
QUICK_KITCHENS = 20
MEALS_PER_KITCHEN = 3000
SCHOOLS_PER_KITCHEN = 10
# Budgets the issue sets ("reconciled in seconds on one core"), scaled to the number of kitchens run.
BUDGET_S_PER_KITCHEN = 0.02  # 10 s for 500 kitchens
BUDGET_MIB_PER_KITCHEN = 2.0  # 1 GiB for 500 kitchens


def _reconcile(day: Any) -> tuple[MbgView, int, int]:
    view = MbgView(day.plan)
    for r in day.records:
        view.ingest(r, r.arrived_at)
    a = view.analysis(day.now, (day.date,))
    cards = view.cards()
    return view, len(a.findings), len(cards)


def run(quick: bool) -> dict[str, Any]:
    """Simulate a province-day (500 kitchens x 3,000 meals, containers of 10; quick: 20 kitchens),
    then ingest and reconcile it: deliveries, container trips, food-safety timers, stock cards."""
    kitchens = QUICK_KITCHENS if quick else FULL_KITCHENS
    t0 = time.perf_counter()
    day = simulate("normal", seed=1, kitchens=kitchens, schools_per_kitchen=SCHOOLS_PER_KITCHEN,
                   meals_per_kitchen=MEALS_PER_KITCHEN)
    simulate_s = time.perf_counter() - t0

    gc.collect()
    t1 = time.perf_counter()
    view, findings, cards = _reconcile(day)
    reconcile_s = time.perf_counter() - t1
    a = view.analysis(day.now, (day.date,))
    containers = len(a.trips)
    deliveries = len(a.deliveries)
    tag_steps = sum(len(r.body.get("tags", ())) for r in day.records)
    del view, a
    gc.collect()

    # Peak memory of the reconciliation alone, measured in a second pass (tracing slows the first down).
    tracemalloc.start()
    _reconcile(day)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    return {
        "kitchens": kitchens,
        "meals": kitchens * MEALS_PER_KITCHEN,
        "records": len(day.records),
        "containers": containers,
        "container_steps": tag_steps,
        "deliveries": deliveries,
        "stock_cards": cards,
        "findings": findings,
        "simulate_s": round(simulate_s, 3),
        "reconcile_s": round(reconcile_s, 3),
        "reconcile_ceiling_s": round(BUDGET_S_PER_KITCHEN * kitchens, 3),
        "records_per_s": round(len(day.records) / reconcile_s) if reconcile_s > 0 else 0,
        "peak_mib": round(peak / 2**20, 1),
        "peak_ceiling_mib": round(BUDGET_MIB_PER_KITCHEN * kitchens, 1),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
