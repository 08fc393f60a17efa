"""Benchmark: simulated MBG days reconciled on one core, with time, peak memory and bytes held per record."""

from __future__ import annotations

import gc
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cbor2

from ..aggregates import AggregateStore, LmdbAggregates
from .days import MBG_DAYS, encode
from .sim import SimRecord, simulate, simulate_days
from .view import MbgView

FULL_KITCHENS = 500
QUICK_KITCHENS = 20
MEALS_PER_KITCHEN = 3000
SCHOOLS_PER_KITCHEN = 10
WINDOW_DAYS = 8
FULL_WINDOW_KITCHENS = 100
QUICK_WINDOW_KITCHENS = 5
FIRST_DATE = "2026-01-12"
# Budgets the issue sets ("reconciled in seconds on one core"), scaled to the number of kitchens run.
BUDGET_S_PER_KITCHEN = 0.02  # 10 s for 500 kitchens
BUDGET_MIB_PER_KITCHEN = 2.0  # 1 GiB for 500 kitchens
# A national day (30,000 kitchens) in under 5 minutes and 2 GB of heap.
NATIONAL_KITCHENS = 30_000
NATIONAL_S = 300
NATIONAL_MIB = 2048


def _day(kitchens: int, date: str = FIRST_DATE) -> Any:
    return simulate("normal", seed=1, kitchens=kitchens, schools_per_kitchen=SCHOOLS_PER_KITCHEN,
                    meals_per_kitchen=MEALS_PER_KITCHEN, date=date)


def _ingest(view: MbgView, records: tuple[SimRecord, ...] | list[SimRecord]) -> None:
    for r in records:
        view.ingest(r, r.arrived_at)


def _reconcile(day: Any) -> tuple[MbgView, int, int, dict[str, float]]:
    """Ingest the day, then ask for its findings and stock cards; with the wall and CPU seconds of each part."""
    t0, c0 = time.perf_counter(), time.process_time()
    view = MbgView(day.plan)
    _ingest(view, day.records)
    t1, c1 = time.perf_counter(), time.process_time()
    findings = view.findings(day.now, day.date)
    cards = view.cards()
    t2, c2 = time.perf_counter(), time.process_time()
    parts = {"ingest_s": t1 - t0, "ingest_cpu_s": c1 - c0, "answer_s": t2 - t1, "answer_cpu_s": c2 - c1}
    return view, len(findings), len(cards), parts


def held_bytes(day: Any) -> int:
    """Bytes of heap the view holds per record once a day's records are in (before any question). Each body
    is decoded from its CBOR as the hub's are, so what the view keeps of it is counted."""
    wire = [(r, cbor2.dumps(r.body)) for r in day.records]
    gc.collect()
    tracemalloc.start()
    try:
        view = MbgView(day.plan)
        for r, body in wire:
            view.ingest(replace(r, body=cbor2.loads(body)), r.arrived_at)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del view
    return round(held / len(day.records))


def day_figures(kitchens: int, *, peak: bool = True) -> dict[str, Any]:
    """Simulate one day of `kitchens` kitchens, then ingest and reconcile it; the peak heap is taken in a
    second pass, since tracing slows the first down."""
    t0 = time.perf_counter()
    day = _day(kitchens)
    simulate_s = time.perf_counter() - t0
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1, cpu1 = time.perf_counter(), time.process_time()
    view, findings, cards, parts = _reconcile(day)
    reconcile_s, reconcile_cpu_s = time.perf_counter() - t1, time.process_time() - cpu1
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    out: dict[str, Any] = {
        "kitchens": kitchens,
        "meals": kitchens * MEALS_PER_KITCHEN,
        "records": len(day.records),
        "containers": len({t for r in day.records for t in r.body.get("tags", ())}),
        "container_steps": sum(len(r.body.get("tags", ())) for r in day.records),
        "deliveries": len(view.deliveries(day.now, day.date)),
        "stock_cards": cards,
        "findings": findings,
        "simulate_s": round(simulate_s, 3),
        "reconcile_s": round(reconcile_s, 3),
        # CPU time is what a shared machine's load does not inflate; the peak RSS growth is a bound on the heap
        # that needs no tracing (it includes the allocator's slack).
        "reconcile_cpu_s": round(reconcile_cpu_s, 3),
        # The two parts of it: taking the day's records in, and the day's answer (findings, stock cards).
        **{k: round(v, 3) for k, v in parts.items()},
        "records_per_s": round(len(day.records) / reconcile_s) if reconcile_s > 0 else 0,
        "peak_rss_growth_mib": round(rss_growth / 1024, 1),
    }
    del view
    if peak:
        out["held_bytes_per_record"] = held_bytes(day)
        gc.collect()
        tracemalloc.start()
        try:
            _reconcile(day)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        out["peak_mib"] = round(top / 2**20, 1)
        out["peak_bytes_per_record"] = round(top / len(day.records))
    return out


def window_figures(kitchens: int, days: int = WINDOW_DAYS) -> dict[str, Any]:
    """One day of a `days`-day window against the same day held alone, in the same run: time and scans
    reconciled to answer the day's deliveries and findings."""
    sims = simulate_days(days, first_date=FIRST_DATE, kitchens=kitchens, schools_per_kitchen=SCHOOLS_PER_KITCHEN,
                         meals_per_kitchen=MEALS_PER_KITCHEN)
    asked = sims[days // 2]
    whole = MbgView(asked.plan)
    for sim in sims:
        _ingest(whole, sim.records)
    alone = MbgView(asked.plan)
    _ingest(alone, asked.records)

    def ask(view: MbgView) -> tuple[float, int, Any]:
        before = view.analysed
        t = time.perf_counter()
        answer = ([d.to_dict() for d in view.deliveries(asked.now, asked.date)],
                  # Stock is replayed over every day held (the simulator's book starts empty each day).
                  [f.to_dict() for f in view.findings(asked.now, asked.date) if not f.code.startswith("stock_")])
        return time.perf_counter() - t, view.analysed - before, answer

    alone_s, alone_scans, alone_answer = ask(alone)
    window_s, window_scans, window_answer = ask(whole)
    again_s, again_scans, _ = ask(whole)
    return {
        "kitchens": kitchens,
        "days": days,
        "records_held": sum(len(s.records) for s in sims),
        "day_alone_s": round(alone_s, 3),
        "day_of_window_s": round(window_s, 3),
        "window_over_alone": round(window_s / alone_s, 2) if alone_s > 0 else 0,
        "day_alone_scans_reconciled": alone_scans,
        "day_of_window_scans_reconciled": window_scans,
        "same_answer": window_answer == alone_answer,
        "asked_again_s": round(again_s, 4),
        "asked_again_scans_reconciled": again_scans,
    }


def stored_day_figures(kitchens: int, open_store: Callable[[], AggregateStore] | None = None) -> dict[str, Any]:
    """A past day's answer kept in the store's day aggregates (LMDB by default, in a temporary directory): time to
    settle it, encode it and write it, its bytes, and the time to answer the day (deliveries, findings,
    violations) from the stored day against settling it again from its scans, in the same run."""
    day = _day(kitchens)
    now = day.now + 86400  # the next day: the day asked about is past and final
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store() if open_store is not None else LmdbAggregates(tmp)
        try:
            days = store.namespace(MBG_DAYS)
            view = MbgView(day.plan, days=days)
            _ingest(view, day.records)
            t0 = time.perf_counter()
            [stored] = view.days_to_store(now)
            t1 = time.perf_counter()
            agg = encode(stored)
            t2, c2 = time.perf_counter(), time.process_time()
            days.put([agg])
            t3, c3 = time.perf_counter(), time.process_time()

            def ask(v: MbgView) -> tuple[float, float, Any]:
                t, c = time.perf_counter(), time.process_time()
                answer = ([d.to_dict() for d in v.deliveries(now, day.date)],
                          [f.to_dict() for f in v.findings(now, day.date) if not f.code.startswith("stock_")],
                          [x.to_dict() for x in v.violations(now, day.date)])
                return time.perf_counter() - t, time.process_time() - c, answer

            del view
            gc.collect()
            read_s, read_cpu_s, read = ask(MbgView(day.plan, days=days))  # holds no scans: reads the stored day
            held = MbgView(day.plan)  # holds the day's scans, no store: settles the day when asked
            _ingest(held, day.records)
            gc.collect()
            settle_s, settle_cpu_s, settled = ask(held)
        finally:
            store.close()
    return {
        "kitchens": kitchens,
        "schools": len(stored.deliveries),
        "records": len(day.records),
        "settle_s": round(t1 - t0, 3),
        "encode_s": round(t2 - t1, 3),
        "write_s": round(t3 - t2, 3),
        "write_cpu_s": round(c3 - c2, 3),
        "bytes": len(agg.summary) + len(cbor2.dumps([list(r) for r in agg.rows], canonical=True)),
        "answer_from_store_s": round(read_s, 4),
        "answer_settled_s": round(settle_s, 4),
        "answer_from_store_cpu_s": round(read_cpu_s, 4),
        "answer_settled_cpu_s": round(settle_cpu_s, 4),
        # CPU time is what a shared machine's load does not inflate.
        "settled_over_stored_cpu": round(settle_cpu_s / read_cpu_s, 1) if read_cpu_s > 0 else 0,
        "same_answer": read == settled,
    }


def run(quick: bool, kitchens: list[int] | None = None, window_kitchens: int | None = None,
        traced: bool = True) -> dict[str, Any]:
    """Simulate a province-day (500 kitchens x 3,000 meals, containers of 10; quick: 20 kitchens), then
    ingest and reconcile it: deliveries, container trips, food-safety timers, stock cards. Then one day of
    an 8-day window against that day alone, and, with `kitchens`, one day at each of those sizes."""
    size = QUICK_KITCHENS if quick else FULL_KITCHENS
    out = day_figures(size)
    out["reconcile_ceiling_s"] = round(BUDGET_S_PER_KITCHEN * size, 3)
    out["peak_ceiling_mib"] = round(BUDGET_MIB_PER_KITCHEN * size, 1)
    out["window"] = window_figures(window_kitchens or (QUICK_WINDOW_KITCHENS if quick else FULL_WINDOW_KITCHENS))
    out["stored_day"] = stored_day_figures(window_kitchens or (QUICK_WINDOW_KITCHENS if quick else FULL_WINDOW_KITCHENS))
    if kitchens:
        out["scaling"] = {str(k): day_figures(k, peak=traced) for k in kitchens}
        out["national_goal"] = {"kitchens": NATIONAL_KITCHENS, "reconcile_s": NATIONAL_S, "peak_mib": NATIONAL_MIB}
    return out


if __name__ == "__main__":
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m hub.mbg.bench", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--kitchens", type=lambda s: [int(k) for k in s.split(",")], default=None,
                   help="also reconcile one day at each of these sizes, e.g. 500,2000,8000,30000")
    p.add_argument("--window-kitchens", type=int, default=None)
    p.add_argument("--size-only", action="store_true",
                   help="only the --kitchens sizes, untraced (time, CPU time and peak RSS growth): for sizes where "
                        "tracing every allocation would take too long")
    args = p.parse_args()
    if args.size_only:
        print(json.dumps({str(k): day_figures(k, peak=False) for k in args.kitchens or [FULL_KITCHENS]}, indent=2))
    else:
        print(json.dumps(run(args.quick, args.kitchens, args.window_kitchens), indent=2))
