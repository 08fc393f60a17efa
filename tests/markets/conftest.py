"""Shared fixtures of the market tests: one generated data set, the shipped tables and a device's chain."""

from __future__ import annotations

import pytest

from hub.markets.ceilings import CeilingTable
from hub.markets.synth import SynthConfig, SynthData, generate
from ledger.chain import ChainBuilder
from ledger.cose import Ed25519Signer


@pytest.fixture(scope="session")
def ceilings() -> CeilingTable:
    return CeilingTable.load()


@pytest.fixture(scope="session")
def synth() -> SynthData:
    return generate(SynthConfig(seed=3, days=150))


@pytest.fixture
def chain() -> ChainBuilder:
    """A device's chain past its genesis record, signing at a fixed time."""
    b = ChainBuilder(Ed25519Signer.from_seed(bytes(32)), clock=lambda: 1_717_200_000, boot=1)
    b.genesis()
    return b
