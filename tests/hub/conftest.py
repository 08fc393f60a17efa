"""Helpers for hub tests: simulated devices with deterministic keys, enrollment in one call."""

from __future__ import annotations

import itertools

from hub.service import Hub
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request


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
