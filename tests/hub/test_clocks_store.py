"""On PostgreSQL the devices' clocks found off are kept in the hub's store: a hub restarted on a fresh data_dir
still names the clock it named, and a device-clocks.json an earlier hub kept in data_dir is carried over once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hub.app import start_hub
from hub.config import HubConfig, StoreConfig
from hub.mbg import Plan
from tests.pg import PG_DSN, journal_in_store

JOURNAL = "device-clocks.json"
DESK, GATE = b"\x01" * 16, b"\x02" * 16
NOW = 1_768_000_000


def config_at(data_dir: Path, name: str) -> HubConfig:
    return HubConfig(name=name, data_dir=str(data_dir), http_port=0, coap_port=0, mdns=False,
                     checkpoint_interval=3600, store=StoreConfig(backend="postgres", dsn=PG_DSN))


def clocks_in_store(name: str) -> list[dict[str, Any]]:
    return journal_in_store(name, JOURNAL)


async def test_clocks_found_off_on_postgres_outlive_the_data_dir_and_a_file_is_carried_over_once(tmp_path,
                                                                                                pg_name) -> None:
    first = tmp_path / "hub"
    first.mkdir()
    # A return desk a day behind, named by an earlier hub in data_dir's file.
    (first / JOURNAL).write_text(json.dumps([[DESK.hex(), -86_400, NOW]]))
    plan = Plan(kitchens=(), schools=())
    running = await start_hub(config_at(first, pg_name), plan=plan)
    try:
        clocks = running.hub.device_clocks
        assert [(d, c.offset_s) for d, c in clocks.off()] == [(DESK, -86_400)]
        assert not (first / JOURNAL).exists() and (first / f"{JOURNAL}.in-store").exists()
        clocks.saw(GATE, NOW + 7_200, NOW)  # a gate two hours fast, found by this hub
    finally:
        await running.close()
    assert [(i["device"], i["offset_s"]) for i in clocks_in_store(pg_name)] == [(DESK.hex(), -86_400),
                                                                                   (GATE.hex(), 7_200)]
    # The file put back is neither carried over again nor read: the store holds the clocks.
    shutil.copy(first / f"{JOURNAL}.in-store", first / JOURNAL)

    # The same hub, its key and its schema, on an empty data_dir (a container on a new volume).
    fresh = tmp_path / "new-volume"
    fresh.mkdir()
    shutil.copy(first / "hub.key", fresh / "hub.key")
    running = await start_hub(config_at(fresh, pg_name), plan=plan)
    try:
        clocks = running.hub.device_clocks
        assert [(d, c.offset_s) for d, c in clocks.off()] == [(DESK, -86_400), (GATE, 7_200)]
        clocks.saw(DESK, NOW + 3_600, NOW + 3_600)  # the desk's clock set right: no longer said
        assert not (fresh / JOURNAL).exists()
    finally:
        await running.close()
    # The desk's span is closed, kept to time what it sent meanwhile; the gate's is still open.
    assert [(i["device"], i["until"]) for i in clocks_in_store(pg_name)] == [(DESK.hex(), NOW + 3_600),
                                                                             (GATE.hex(), None)]
