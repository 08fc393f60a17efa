"""On PostgreSQL the price files operators imported are kept in the hub's store: a hub restarted on a fresh data_dir
imports them again, and the files an earlier hub kept in data_dir/imports are carried over once."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from hub import pg
from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig, StoreConfig
from hub.store import StoreError
from tests.markets.test_import import AGENCY, PIHPS
from tests.pg import PG_DSN


def config_at(data_dir: Path, name: str) -> HubConfig:
    return HubConfig(name=name, data_dir=str(data_dir), http_port=0, coap_port=0, mdns=False,
                     checkpoint_interval=3600, operator_tokens=(hash_token("op-token"),),
                     store=StoreConfig(backend="postgres", dsn=PG_DSN))


def prices(running, commodity: str, market: str) -> list[int]:
    return [h["price_idr"] for h in running.views.markets.history(commodity, market)]


async def test_imports_on_postgres_outlive_the_data_dir_and_files_are_carried_over_once(tmp_path, pg_name) -> None:
    first = tmp_path / "hub"
    kept = first / "imports"
    kept.mkdir(parents=True)
    # An agency export an earlier hub imported and kept in data_dir.
    sha = hashlib.sha256(AGENCY.encode()).hexdigest()
    (kept / f"{sha}.csv").write_text(AGENCY, encoding="utf-8")
    (kept / f"{sha}.json").write_text(json.dumps({"defaults": {"market": "", "region": "", "reporter": "",
                                                               "source": "agency"}, "bytes": len(AGENCY)}))
    running = await start_hub(config_at(first, pg_name))
    try:
        assert prices(running, "cabai-merah", "pasar-senen") == [41000, 42000]
        assert sorted(p.name for p in kept.iterdir()) == [f"{sha}.csv.in-store", f"{sha}.json.in-store"]
        async with aiohttp.ClientSession() as session:
            url = f"{running.http_url}/api/markets/import?market=pasar-kosambi"
            async with session.post(url, data=PIHPS.encode(), headers={"Authorization": "Bearer op-token"}) as resp:
                report = await resp.json()
                assert resp.status == 200 and report["taken"] >= 2, report
        assert prices(running, "bawang-merah", "pasar-kosambi") == [36500, 37000]
        assert not list(kept.glob("*.csv")) and not list(kept.glob("*.upload"))  # kept in the store, not here
    finally:
        await running.close()
    # The files put back are neither carried over again nor read: the store holds them.
    for path in kept.glob("*.in-store"):
        shutil.copy(path, path.with_name(path.name.removesuffix(".in-store")))

    # The same hub, its key and its schema, on an empty data_dir (a container on a new volume).
    fresh = tmp_path / "new-volume"
    fresh.mkdir()
    shutil.copy(first / "hub.key", fresh / "hub.key")
    running = await start_hub(config_at(fresh, pg_name))
    try:
        assert prices(running, "cabai-merah", "pasar-senen") == [41000, 42000]
        assert prices(running, "bawang-merah", "pasar-kosambi") == [36500, 37000]
        assert not (fresh / "imports").exists() or not list((fresh / "imports").iterdir())
    finally:
        await running.close()


def test_a_kept_file_is_written_and_read_a_part_at_a_time(tmp_path, pg_name, monkeypatch) -> None:
    """Parts in order, each compressed on its own; keeping a file again replaces its parts; a damaged part is a
    StoreError naming the file."""
    schema = pg_name.replace("-", "_")
    pg.PgHubStore(PG_DSN, schema=schema).close()  # the schema and its tables
    store = pg.PgAggregates(PG_DSN, schema=schema)
    try:
        files = store.imports()
        monkeypatch.setattr(pg, "IMPORT_PART", 7)
        data = tmp_path / "prices.csv"
        data.write_bytes(AGENCY.encode())
        files.keep("ab" * 32, {"defaults": {"source": "agency"}}, data)
        out = io.BytesIO()
        files.write_to("ab" * 32, out)
        assert out.getvalue() == AGENCY.encode()
        with store.tx() as conn:
            (parts,) = conn.execute("SELECT count(*) FROM imported_parts").fetchone()
        assert parts == -(-len(AGENCY.encode()) // 7)
        data.write_bytes(PIHPS.encode())
        files.keep("ab" * 32, {"defaults": {"source": "pihps"}}, data)
        out = io.BytesIO()
        files.write_to("ab" * 32, out)
        assert out.getvalue() == PIHPS.encode() and files.kept() == [("ab" * 32, {"defaults": {"source": "pihps"}})]
        with store.tx() as conn:
            conn.execute("UPDATE imported_parts SET data = 'not zlib' WHERE part = 1")
        with pytest.raises(StoreError, match=r"abababababababab\.\.\. is damaged"):
            files.write_to("ab" * 32, io.BytesIO())
    finally:
        store.close()
