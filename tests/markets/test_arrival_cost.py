"""One arrival's validation work does not grow with the reports its day already holds: a chatty or hostile
reporter sending the same price many times a day costs each arrival the same, counted in reports judged."""

from __future__ import annotations

import itertools

import pytest

from hub.markets.calendar import day_number
from hub.markets.ceilings import CeilingTable
from hub.markets.model import DAY_S, WIB_OFFSET_S, PriceObservation
from hub.markets.validate import Validator

DAY = day_number("2024-06-03")
MORNING = DAY * DAY_S - WIB_OFFSET_S + 6 * 3600
KEY = ("pasar-senen", "cabai-merah", "", "kg")
_ids = itertools.count()


def obs(price: int, reporter: str, *, second: int = 0, day: int = DAY) -> PriceObservation:
    t = MORNING + (day - DAY) * DAY_S + second
    return PriceObservation(id=f"c{next(_ids)}", market=KEY[0], region="DKI Jakarta", commodity=KEY[1], unit="kg",
                            price_idr=price, time=t, arrived_at=t + 5, reporter=reporter)


def explained_per_arrival(monkeypatch, v: Validator, reports: list[PriceObservation]) -> list[int]:
    """How many verdicts the validator worked out for each arrival, in order."""
    count = [0]
    explain = Validator._explain

    def counted(self, *args, **kw):
        count[0] += 1
        return explain(self, *args, **kw)

    monkeypatch.setattr(Validator, "_explain", counted)
    out = []
    for o in reports:
        before = count[0]
        v.observe(o)
        out.append(count[0] - before)
    return out


def seeded(reporters: tuple[str, ...]) -> Validator:
    v = Validator(ceilings=CeilingTable.load())
    v.seed_history(KEY, "DKI Jakarta", [40_000] * 28, DAY - 2)
    for r in reporters:
        v.observe(obs(40_000, r, day=DAY - 1))
    return v


@pytest.mark.parametrize("reporters", [("r1",), ("r1", "r2", "r3")])
def test_the_nth_report_of_a_day_costs_what_the_tenth_did(monkeypatch, reporters) -> None:
    # One reporter alone closes the day with its first report (every later one is a late report for a final
    # day); with three, the day stays open while r1 keeps reporting and r2 reported once.
    v = seeded(reporters)
    before = v.judged
    first = [obs(40_000, r, second=k) for k, r in enumerate(reporters[1:2])]
    chatty = [obs(40_000 + 100 * (k % 3), "r1", second=60 + k) for k in range(300)]
    work = explained_per_arrival(monkeypatch, v, first + chatty)[len(first):]
    assert max(work[10:]) == work[10] <= len(reporters)
    assert v.judged - before == sum(work) + len(first)
    assert not v.check(obs(40_100, "r1", second=500)).quarantined


def test_a_reporters_older_report_arriving_late_is_judged_alone(monkeypatch) -> None:
    v = seeded(("r1", "r2", "r3"))
    reports = [obs(40_000, "r2", second=0), *(obs(40_000, "r1", second=1000 - k) for k in range(200))]
    work = explained_per_arrival(monkeypatch, v, reports)
    # Each of r1's reports is older than the one before: it replaces nobody's latest, so only it is judged.
    assert work[3:] == [1] * (len(work) - 3)


def test_a_chatty_days_final_verdicts_are_the_whole_days(monkeypatch) -> None:
    # Earlier reports are not re-judged on each arrival, but the day's final verdicts judge them all.
    v = seeded(("r1", "r2", "r3"))
    chatty = [obs(40_000, "r1", second=k) for k in range(50)]
    for o in chatty:
        v.observe(o)
    v.observe(obs(40_000, "r2", second=100))
    final = dict((o.id, verdict) for o, verdict in v.observe(obs(52_000, "r3", second=200)))
    assert all(o.id in final and not final[o.id].provisional for o in chatty)
    assert all(final[o.id].status == "accepted" for o in chatty)
    assert "r2 Rp 40.000, r3 Rp 52.000" in final[chatty[0].id].check("reporters").reason
