"""Shared fixtures: an injected clock and a hub on a real LMDB store in a temporary directory."""

from __future__ import annotations

import pytest

from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer
from tests.hub.conftest import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(tmp_path, clock) -> Hub:
    store = LmdbHubStore(tmp_path / "hub")
    h = Hub(store, Ed25519Signer.from_seed(b"\x99" * 32), clock=clock)
    yield h
    store.close()
