"""The PostgreSQL that tests use (127.0.0.1:5432, database test; JEJAK_TEST_PG overrides it)."""

from __future__ import annotations

import os
from typing import Any

PG_DSN = os.environ.get("JEJAK_TEST_PG", "postgresql://127.0.0.1:5432/test")


def journal_in_store(hub_name: str, journal: str) -> list[dict[str, Any]]:
    """The lines of the hub's journal `journal` as the PostgreSQL store of hub `hub_name` keeps them."""
    from hub.pg import PgAggregates

    store = PgAggregates(PG_DSN, schema=hub_name.replace("-", "_"))
    try:
        return store.journal(journal).read()
    finally:
        store.close()
