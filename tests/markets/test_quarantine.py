"""Quarantined values are kept, shown, and released or confirmed with an audit trail."""

from __future__ import annotations

import pytest

from hub.markets.errors import DecisionConflict, NotFound
from hub.markets.model import PriceObservation
from hub.markets.quarantine import CONFIRMED, PENDING, RELEASED, Quarantine
from hub.markets.validate import Validator


def _held(q: Quarantine, oid: str = "o1") -> PriceObservation:
    o = PriceObservation(id=oid, market="m", commodity="c", unit="kg", price_idr=99_000, time=100, arrived_at=10**6)
    verdict = Validator().check(o)
    assert verdict.quarantined  # stale: it reached the hub days after it was observed
    q.hold(o, verdict)
    return o


def test_decisions_are_recorded_with_who_when_why() -> None:
    now = [1000.0]
    q = Quarantine(clock=lambda: now[0])
    _held(q)
    assert [e.observation.id for e in q.pending()] == ["o1"]
    now[0] = 2000.0
    d = q.decide("o1", "release", by="operator-ani", why="confirmed by phone with the trader")
    assert (d.by, d.at, d.state_before, d.state_after) == ("operator-ani", 2000, PENDING, RELEASED)
    assert q.pending() == []
    now[0] = 3000.0
    q.decide("o1", "reopen", by="auditor-budi", why="second look")
    q.decide("o1", "confirm", by="auditor-budi", why="trader denies this price")
    trail = q.audit("o1")
    assert [x.action for x in trail] == ["release", "reopen", "confirm"]
    assert q.store.get("o1").state == CONFIRMED
    assert q.store.get("o1").verdict.fired == ("stale",)  # the reasons stay with the value


def test_conflicting_or_anonymous_decisions_are_refused() -> None:
    q = Quarantine()
    _held(q)
    with pytest.raises(DecisionConflict, match="expected who decided"):
        q.decide("o1", "release", by="", why="x")
    with pytest.raises(DecisionConflict, match="expected one of"):
        q.decide("o1", "delete", by="a", why="b")
    with pytest.raises(DecisionConflict, match="found it pending"):
        q.decide("o1", "reopen", by="a", why="b")
    q.decide("o1", "confirm", by="a", why="b")
    with pytest.raises(DecisionConflict, match="expected a pending value, found it confirmed"):
        q.decide("o1", "release", by="a", why="b")
    with pytest.raises(NotFound):
        q.decide("nope", "release", by="a", why="b")
    assert len(q.audit()) == 1


def test_holding_the_same_record_twice_keeps_the_first() -> None:
    q = Quarantine()
    _held(q)
    q.decide("o1", "confirm", by="a", why="b")
    _held(q)
    assert q.store.get("o1").state == CONFIRMED
