"""Shared fixtures: an injected clock and a hub on a real LMDB store in a temporary directory; each test ends
with the log handlers it began with."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import Ed25519Signer
from tests.hub.conftest import Clock
from tests.pg import PG_DSN


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A command run in a test (`main([...])`) points the log handler at that test's captured stderr, closed
    after it: a later test's log line then went to a closed stream, and the logging error it printed ended up
    in that test's stderr (`test_enroll_cli.py` then `test_oscore_sync.py` failed, each passing alone)."""
    root, jejak = logging.getLogger(), logging.getLogger("jejak")
    saved = (list(root.handlers), root.level, list(jejak.handlers), jejak.level, jejak.propagate)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    jejak.handlers[:], jejak.level, jejak.propagate = saved[2], saved[3], saved[4]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(tmp_path, clock) -> Hub:
    store = LmdbHubStore(tmp_path / "hub")
    h = Hub(store, Ed25519Signer.from_seed(b"\x99" * 32), clock=clock)
    yield h
    store.close()


@pytest.fixture
def pg_name() -> Iterator[str]:
    """The name of a hub whose store is a fresh schema in PostgreSQL (dropped after; missing fails)."""
    from hub.pg import PgHubStore

    name = f"hub-{uuid.uuid4().hex[:12]}"
    yield name
    PgHubStore(PG_DSN, schema=name.replace("-", "_")).drop()
