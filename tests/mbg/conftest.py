"""Shared fixtures for the MBG analytics tests: a small plan and a builder of scans."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from hub.mbg import Kitchen, Plan, ScanEvent, School, StockMovement
from tests.mbg.common import MIDNIGHT, H


@pytest.fixture
def plan() -> Plan:
    return Plan(kitchens=(Kitchen(id="K1"),),
                schools=(School(id="S1", name="SDN 1", kitchen="K1", portions=20, deadline_s=9 * H),
                         School(id="S2", name="SDN 2", kitchen="K1", portions=10, deadline_s=9 * H)))


@pytest.fixture
def scan() -> Callable[..., ScanEvent]:
    seq = itertools.count(1)

    def make(event: str, at: int, *, site: str = "K1", lag: int = 30, device: str | None = None,
             **fields: Any) -> ScanEvent:
        n = next(seq)
        if "tags" in fields:
            fields["tags"] = tuple(fields["tags"])
        return ScanEvent(record_id=f"r{n}", device=device or f"dev-{site}", seq=n, device_time=MIDNIGHT + at,
                         arrived_at=MIDNIGHT + at + lag, event=event, site=site, **fields)

    return make


@pytest.fixture
def move() -> Callable[..., StockMovement]:
    seq = itertools.count(1)

    def make(movement: str, qty: int, at: int, *, item: str = "beras", unit: str = "g", site: str = "K1",
             **fields: Any) -> StockMovement:
        n = next(seq)
        return StockMovement(record_id=f"m{n}", device="dev-K1", seq=n, device_time=MIDNIGHT + at,
                             arrived_at=MIDNIGHT + at + 10, site=site, item=item, movement=movement, qty=qty,
                             unit=unit, **fields)

    return make
