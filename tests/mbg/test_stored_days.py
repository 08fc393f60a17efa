"""MbgView with the store's day aggregates (LMDB and PostgreSQL): a day whose scans are pruned answers from its
stored answer as it did before the prune; a late scan changes answers exactly as without the store; a damaged
stored day is logged and settled again; a drill-down beyond the window is refused with a stable code."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

import pytest

from hub.aggregates import AggregateStore, DayAggregates, LmdbAggregates
from hub.mbg import SCENARIOS, MbgView, NotFound, from_record
from hub.mbg.analysis import Timed
from hub.mbg.days import MBG_DAYS, encode
from hub.mbg.errors import BeyondWindow
from hub.mbg.sim import SimDay, simulate_days
from hub.pg import PgAggregates, PgHubStore
from tests.contract.test_day_aggregates import aggregates  # noqa: F401  (the fixture, for both backends)
from tests.pg import PG_DSN


def answers(view: MbgView, now: int, date: str) -> dict[str, Any]:
    """Every per-day question the API and dashboard ask, as JSON."""
    return {"deliveries": [d.to_dict() for d in view.deliveries(now, date)],
            "by_kitchen": view.deliveries_by_kitchen(now, date),
            **{kind: [d.to_dict() for d in getattr(view, kind)(now, date)] for kind in ("late", "short", "missing")},
            "lost": view.lost(now, date),
            "findings": [f.to_dict() for f in view.findings(now, date)],
            "violations": [v.to_dict() for v in view.violations(now, date)],
            "summary": view.summary(now, date)}


def _fed(sims: list[SimDay], days: DayAggregates | None) -> MbgView:
    view = MbgView(sims[0].plan, days=days)
    for sim in sims:
        for r in sim.records:
            view.ingest(r, r.arrived_at)
    return view


def _store(view: MbgView, now: int) -> list[str]:
    assert view.days is not None
    written = view.days_to_store(now)
    view.days.put([encode(d) for d in written], delete=view.take_stale())
    return [d.date for d in written]


def _prune_first_day(view: MbgView, sims: list[SimDay]) -> int:
    """Prune the scans of the first day only (they all arrived before the second day's)."""
    cutoff = max(r.arrived_at for r in sims[0].records if r.kind == "scan") + 1
    assert cutoff <= min(r.arrived_at for r in sims[1].records if r.kind == "scan")
    return view.prune(cutoff + 86400, keep_days=1)


def damage(store: AggregateStore, date: str) -> None:
    """Change one stored figure of `date` behind the store's back."""
    if isinstance(store, PgAggregates):
        with store.tx() as conn:
            conn.execute("UPDATE mbg_deliveries SET received_portions = received_portions + 1 WHERE date = %s "
                         "AND school = (SELECT min(school) FROM mbg_deliveries WHERE date = %s)", (date, date))
        return
    assert isinstance(store, LmdbAggregates)
    with store._env.begin(write=True) as txn:
        db = store._env.open_db(b"mbg", txn=txn)
        value = bytearray(txn.get(date.encode(), db=db))
        value[len(value) // 3] ^= 0x04
        txn.put(date.encode(), bytes(value), db=db)


# Findings over the window held, not of one day: a device's clock and a site the plan does not list.
SPANNING = ("clock_skew", "late_sync", "unknown_site")


def _of_the_day(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "findings": [f for f in answer["findings"] if f["code"] not in SPANNING],
            "summary": {k: v for k, v in answer["summary"].items() if k not in ("alerts", "findings")}}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_pruned_day_answers_as_before_the_prune(aggregates, scenario: str) -> None:  # noqa: F811
    sims = simulate_days(3, scenario=scenario, kitchens=2, schools_per_kitchen=3)
    now, date = sims[-1].now, sims[0].date
    view = _fed(sims, aggregates.namespace(MBG_DAYS))
    plain = _fed(sims, None)
    before = {s.date: answers(view, now, s.date) for s in sims[:2]}
    assert before == {s.date: answers(plain, now, s.date) for s in sims[:2]}
    stored = _store(view, now)  # the past days, final; not today
    assert stored[:2] == [sims[0].date, sims[1].date] and view.today(now) not in stored
    assert aggregates.namespace(MBG_DAYS).dates() == stored

    # Forget the scans that arrived before the second day's first one: the first day's (all of them, or with an
    # outage those that arrived in time).
    cutoff = min(r.arrived_at for r in sims[1].records if r.kind == "scan")
    assert view.prune(cutoff + 86400, keep_days=1) == plain.prune(cutoff + 86400, keep_days=1) > 0
    analysed = view.analysed
    after = {s.date: answers(view, now, s.date) for s in sims[:2]}
    assert view.analysed == analysed  # read from the store, not reconciled
    # Every answer of the day is as before; the findings over the window held follow the window, as before.
    assert {d: _of_the_day(a) for d, a in after.items()} == {d: _of_the_day(a) for d, a in before.items()}
    if not any(c.startswith(SPANNING) for c, _ in sims[0].expected):
        assert after == before
    # Without the store the pruned day's deliveries are what its scans still held give: not its answer.
    assert answers(plain, now, date)["deliveries"] != before[date]["deliveries"]


def test_a_late_scan_changes_a_stored_day_as_without_the_store(aggregates) -> None:  # noqa: F811
    sims = simulate_days(3, scenario="short_delivery", kitchens=1, schools_per_kitchen=3)
    now, date = sims[-1].now, sims[0].date
    view, plain = _fed(sims, aggregates.namespace(MBG_DAYS)), _fed(sims, None)
    assert date in _store(view, now)
    short = answers(view, now, date)["short"]
    assert short
    # The short school's missing containers reach its gate late: a new received tap of the day.
    received = next(r for r in sims[0].records if r.kind == "scan" and r.body.get("event") == "received"
                    and r.body.get("site") == short[0]["school"])
    late = replace(from_record(received, received.arrived_at), record_id="ab" * 32, seq=100_000,
                   arrived_at=now - 3600, count=short[0]["shortfall"])
    assert view.ingest_event(late) and plain.ingest_event(late)
    assert answers(view, now, date) == answers(plain, now, date)
    assert answers(view, now, date)["short"] != short
    assert view.take_stale() == [date]
    # Final again: written again, and still the answer the scans give.
    assert _store(view, now) == [date]
    settled = answers(plain, now, date)
    assert answers(view, now, date) == settled
    assert _prune_first_day(view, sims) > 0
    assert answers(view, now, date) == settled


def test_a_damaged_stored_day_is_logged_and_settled_again(aggregates, caplog) -> None:  # noqa: F811
    sims = simulate_days(3, scenario="late_truck", kitchens=1, schools_per_kitchen=3)
    now, date = sims[-1].now, sims[0].date
    view, plain = _fed(sims, aggregates.namespace(MBG_DAYS)), _fed(sims, None)
    _store(view, now)
    damage(aggregates, date)
    fresh = MbgView(sims[0].plan, days=aggregates.namespace(MBG_DAYS))  # a restarted view, refilled
    fresh.refilling = True
    for sim in sims:
        for r in sim.records:
            fresh.ingest(r, r.arrived_at)
    fresh.refilling = False
    with caplog.at_level(logging.ERROR, logger="jejak.hub.mbg"):
        assert answers(fresh, now, date) == answers(plain, now, date)
    assert any(date in r.getMessage() and "AGGREGATE_DAMAGED" in r.getMessage() for r in caplog.records)
    # The damaged day is deleted and written again once settled.
    assert fresh.take_stale() == [date]
    fresh.days.put([], delete=[date])  # type: ignore[union-attr]
    assert _store(fresh, now) == [date]
    assert aggregates.namespace(MBG_DAYS).get(date) is not None
    # A damaged day whose scans are pruned answers as without the store, and does not crash.
    damage(aggregates, date)
    pruned = MbgView(sims[0].plan, days=aggregates.namespace(MBG_DAYS))
    assert answers(pruned, now, date)["deliveries"] == answers(MbgView(sims[0].plan), now, date)["deliveries"]


def test_a_drill_down_beyond_the_window_is_refused(aggregates) -> None:  # noqa: F811
    sims = simulate_days(3, scenario="normal", kitchens=1, schools_per_kitchen=2)
    now, date = sims[-1].now, sims[0].date
    view = _fed(sims, aggregates.namespace(MBG_DAYS))
    tag = next(s.tags[0] for s in view.scans if s.tags and Timed(s, view.plan).date == date)
    assert view.epcis_document(now, date)["epcisBody"]["eventList"]
    _store(view, now)
    _prune_first_day(view, sims)
    for ask in (lambda: view.epcis_document(now, date), lambda: view.analysis(now, (date,))):
        with pytest.raises(BeyondWindow) as refused:
            ask()
        assert refused.value.code == "MBG_BEYOND_WINDOW" and refused.value.http == 404 and refused.value.hint
    assert view.container(tag, now)  # the tag travelled on the days still held too
    with pytest.raises(NotFound) as unknown:
        view.container("04:00:00:00:00:00:00", now)
    assert "beyond the window" in (unknown.value.hint or "") and date in unknown.value.hint
    # The days still held drill down as before.
    assert view.epcis_document(now, sims[1].date)["epcisBody"]["eventList"]



def test_national_questions_run_in_sql_on_the_stored_days() -> None:
    """On PostgreSQL the stored days are real columns: a question over kitchens and dates is one query."""
    sims = simulate_days(3, scenario="late_truck", kitchens=3, schools_per_kitchen=2)
    now = sims[-1].now
    schema = f"t_{uuid.uuid4().hex[:12]}"
    PgHubStore(PG_DSN, schema=schema).close()
    store = PgAggregates(PG_DSN, schema=schema)
    try:
        view = _fed(sims, store.namespace(MBG_DAYS))
        past = _store(view, now)
        with store.tx() as conn:
            rows = conn.execute(
                "SELECT date::text, kitchen, count(*) FILTER (WHERE 'late' = ANY(statuses)), "
                "count(*) FILTER (WHERE 'on_time' = ANY(statuses)), sum(expected), sum(received_portions) "
                "FROM mbg_deliveries GROUP BY date, kitchen ORDER BY date, kitchen").fetchall()
            days = conn.execute("SELECT date::text, late, expected_portions FROM mbg_days ORDER BY date").fetchall()
        want = []
        for date in past:
            for kitchen, k in sorted(view.deliveries_by_kitchen(now, date).items()):
                schools = k["schools"]
                want.append((date, kitchen, k["counts"]["late"], k["counts"]["on_time"],
                             sum(d["expected"] for d in schools), sum(d["received_portions"] for d in schools)))
        assert rows == want and any(r[2] for r in rows)
        assert days == [(d, sum(r[2] for r in rows if r[0] == d), sum(r[4] for r in rows if r[0] == d)) for d in past]
    finally:
        store.close()
        PgHubStore(PG_DSN, schema=schema).drop()
