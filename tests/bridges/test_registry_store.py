"""On PostgreSQL the seed-2 device registrations are kept in the hub's store: a hub restarted on a fresh data_dir
still knows each device, its status and its token, and a registry file an earlier hub kept is carried over once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import aiohttp

from hub.app import start_hub
from hub.auth import hash_token
from hub.bridges import BridgeConfig, MqttConfig
from hub.bridges.registry import Registry
from hub.config import HubConfig, StoreConfig
from hub.mbg import Plan
from hub.pending import PendingLimits
from tests.pg import PG_DSN, journal_in_store

from .conftest import MARKET, OPERATOR
from .test_hub_seed2 import payload

JOURNAL = "bridges/legacy-devices.json"


def config_at(data_dir: Path, name: str) -> HubConfig:
    return HubConfig(name=name, data_dir=str(data_dir), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                     checkpoint_interval=3600, operator_tokens=(hash_token(OPERATOR),),
                     store=StoreConfig(backend="postgres", dsn=PG_DSN),
                     bridges=BridgeConfig(mqtt=MqttConfig(enabled=False), auto_approve=False))


def devices_in_store(name: str) -> list[dict[str, Any]]:
    return journal_in_store(name, JOURNAL)


async def _post(session: aiohttp.ClientSession, url: str, token: str, **kw: Any) -> tuple[int, Any]:
    async with session.post(url, headers={"Authorization": f"Bearer {token}"}, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_seed2_devices_on_postgres_outlive_the_data_dir_and_a_file_is_carried_over_once(tmp_path,
                                                                                            pg_name) -> None:
    first = tmp_path / "hub"
    # A device an earlier hub approved and kept in data_dir's registry file.
    old = Registry(first / "bridges")
    _, old_token = old.register(device_id="DEV-OLD", market_id=MARKET, market=MARKET, role="operator", now=1,
                                status="active", limits=PendingLimits())
    plan = Plan(kitchens=(), schools=())
    session = aiohttp.ClientSession()
    try:
        running = await start_hub(config_at(first, pg_name), plan=plan)
        try:
            url = running.http_url
            assert [d["device_id"] for d in devices_in_store(pg_name)] == ["DEV-OLD"]
            assert not old.path.exists() and old.path.with_name("legacy-devices.json.in-store").exists()
            async with session.post(f"{url}/api/auth/device/register",
                                    json={"market_id": MARKET, "device_id": "DEV-NEW", "role": "operator"}) as resp:
                assert resp.status == 200
                reg = await resp.json()
            assert reg["status"] == "pending"
            code, dev = await _post(session, f"{url}/api/bridges/devices/DEV-NEW/approve", OPERATOR)
            assert code == 200 and dev["status"] == "active", dev
        finally:
            await running.close()
        # The file put back is not carried over again, nor read: the store holds the devices.
        shutil.copy(old.path.with_name("legacy-devices.json.in-store"), old.path)

        # The same hub, its key and its schema, on an empty data_dir (a container on a new volume).
        fresh = tmp_path / "new-volume"
        fresh.mkdir()
        shutil.copy(first / "hub.key", fresh / "hub.key")
        running = await start_hub(config_at(fresh, pg_name), plan=plan)
        try:
            url = running.http_url
            assert running.bridges is not None
            assert {d.device_id: d.status for d in running.bridges.registry.devices()} == {
                "DEV-OLD": "active", "DEV-NEW": "active"}
            for device_id, token in (("DEV-OLD", old_token), ("DEV-NEW", reg["token"])):
                code, answer = await _post(session, f"{url}/ingest", token, json=payload(device_id=device_id))
                assert code == 200 and answer["trust"] == "attested", (device_id, answer)
        finally:
            await running.close()
        assert [d["device_id"] for d in devices_in_store(pg_name)] == ["DEV-OLD", "DEV-NEW"]
    finally:
        await session.close()
