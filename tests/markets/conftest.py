"""Shared fixtures of the market tests: one generated data set and the shipped tables."""

from __future__ import annotations

import pytest

from hub.markets.ceilings import CeilingTable
from hub.markets.synth import SynthConfig, SynthData, generate


@pytest.fixture(scope="session")
def ceilings() -> CeilingTable:
    return CeilingTable.load()


@pytest.fixture(scope="session")
def synth() -> SynthData:
    return generate(SynthConfig(seed=3, days=150))
