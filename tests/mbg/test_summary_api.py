"""/api/dashboard/summary answers for the day asked, as the other MBG answers do (`jejak mbg summary --date`)."""

from __future__ import annotations

import aiohttp

from hub.app import start_hub
from hub.config import HubConfig, SecurityConfig
from hub.mbg import Kitchen, Plan, School
from ledger import ChainBuilder, Ed25519Signer
from tests.hub.conftest import Clock, enroll
from tests.mbg.common import DATE, MIDNIGHT, H

PLAN = Plan(kitchens=(Kitchen(id="K1"),), schools=(School(id="S1", kitchen="K1", portions=20),))


async def test_the_summary_of_another_day_is_that_days(tmp_path) -> None:
    clock = Clock(MIDNIGHT + 6 * H)
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                       checkpoint_interval=3600, security=SecurityConfig(oscore=False))
    running = await start_hub(config, clock=clock, plan=PLAN)
    try:
        signer = Ed25519Signer.from_seed(b"K1".ljust(32, b"."))
        device_id = enroll(running.hub, signer, clock, site="K1")
        builder = ChainBuilder(signer, clock=clock, boot=1)
        body = {"site": "K1", "event": "departed", "tags": ["04aa000000000001"], "school": "S1"}
        assert running.hub.ingest(device_id, [builder.genesis().raw, builder.append("scan", body).raw]).accepted == 2
        clock.now = MIDNIGHT + 30 * H  # the next day, nothing tapped yet
        async with aiohttp.ClientSession() as session:
            async def get(query: str) -> tuple[int, dict]:
                async with session.get(f"{running.http_url}/api/dashboard/summary{query}") as resp:
                    return resp.status, await resp.json(content_type=None)

            code, today = await get("")
            assert code == 200 and today["date"] != DATE and today["total_scans_today"] == 0
            code, then = await get(f"?date={DATE}")
            assert code == 200 and (then["date"], then["total_scans_today"]) == (DATE, 1)
            assert then["deliveries"]["expected"] == 1 and then["deliveries"]["missing"] == 1
            code, bad = await get("?date=16-01-2026")
            assert code == 400 and bad["error"]["code"] == "MBG_INPUT", bad
    finally:
        await running.close()
