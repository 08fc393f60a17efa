"""The PostgreSQL that tests use (127.0.0.1:5432, database test; JEJAK_TEST_PG overrides it)."""

from __future__ import annotations

import os

PG_DSN = os.environ.get("JEJAK_TEST_PG", "postgresql://127.0.0.1:5432/test")
