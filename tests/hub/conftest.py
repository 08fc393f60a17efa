"""Helpers for hub tests: simulated devices with deterministic keys, enrollment in one call, and a hub store with
the read models' aggregates that a test opens again after a restart (LMDB and PostgreSQL)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest

from hub.aggregates import AggregateStore, LmdbAggregates
from hub.pg import PgAggregates, PgHubStore
from hub.service import Hub
from hub.store import HubStore, LmdbHubStore
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request
from tests.pg import PG_DSN


class Clock:
    def __init__(self, start: int = 1_763_900_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


_seeds = itertools.count(1)


def new_device(clock: Clock) -> tuple[Ed25519Signer, ChainBuilder]:
    signer = Ed25519Signer.from_seed(next(_seeds).to_bytes(32, "big"))
    return signer, ChainBuilder(signer, clock=clock, boot=1)


def enroll(hub: Hub, signer: Ed25519Signer, clock: Clock, *, site: str = "sppg-01",
           role: str = "kitchen_exit", approve: bool = True) -> bytes:
    req = make_enroll_request(signer, site=site, role=role, name="test", time=clock(), hub_id=hub.hub_id)
    device = hub.enroll(req)
    if approve:
        hub.approve(device.device_id)
    return device.device_id


@pytest.fixture(params=["lmdb", "postgres"])
def stores(request, tmp_path: Path):
    """Opens the hub's store and the read models' aggregates over the same place, again after each restart
    (PostgreSQL missing fails, never skips)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"

    def open_both() -> tuple[HubStore, AggregateStore]:
        if request.param == "lmdb":
            return LmdbHubStore(tmp_path / "store"), LmdbAggregates(tmp_path / "aggregates")
        return PgHubStore(PG_DSN, schema=schema), PgAggregates(PG_DSN, schema=schema)

    yield open_both
    if request.param == "postgres":
        PgHubStore(PG_DSN, schema=schema).drop()
