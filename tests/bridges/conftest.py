"""Fixtures: a real edge daemon with its HTTP endpoint, and a real hub with views and bridges on loopback."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.config import HttpConfig
from hub.app import start_hub
from hub.auth import hash_token
from hub.bridges import BridgeConfig, Bridges, MqttConfig
from hub.clock import HubClock
from hub.config import HubConfig
from hub.mbg import Plan
from hub.mbg.plan import Kitchen, School
from hub.service import Hub
from hub.views import Views
from ledger import ChainBuilder, Ed25519Signer, decode_record
from ledger.enroll import make_enroll_request

from ..edge.common import edge_config, running

OPERATOR = "operator-secret-for-tests"
GATEWAY = "gateway-secret-for-tests"  # seed 1's gateway token: the hub takes no gateway batch without one
MARKET = "pasar-minggu"  # a catalogue market the seed-2 device registers at
SIGNED_MARKET = "pasar-senen"  # where a Jejak-signing device reports


@pytest.fixture
async def edge(tmp_path):
    config = edge_config(tmp_path / "edge", http=HttpConfig(enabled=True, host="127.0.0.1", port=0))
    async with running(config) as (daemon, _client):
        yield daemon


def own_records(daemon) -> list:
    own = daemon.store.state(daemon.key.device_id)
    return [decode_record(r) for r in daemon.store.log_range(daemon.key.device_id, 0, own.length)]


@dataclass
class HubEnv:
    hub: Hub
    views: Views
    bridges: Bridges
    running: object
    topic: str
    session: aiohttp.ClientSession
    clock: HubClock = field(default_factory=HubClock)

    @property
    def url(self) -> str:
        return self.running.http_url  # type: ignore[attr-defined]

    def attest_length(self) -> int:
        state = self.hub.store.chain_state(self.hub.hub_id)
        return state.length if state else 0

    def attested(self) -> list:
        return [decode_record(r) for r in self.hub.store.log_range(self.hub.hub_id, 0, self.attest_length())
                if decode_record(r).kind == "attest"]

    async def post(self, path: str, **kw):
        if path == "/api/sync_gateway_data":  # a configured seed-1 gateway, unless the test sends its own
            kw["headers"] = {"Authorization": f"Bearer {GATEWAY}", **kw.get("headers", {})}
        async with self.session.post(self.url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str, **kw):
        async with self.session.get(self.url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)


def unique_topic() -> str:
    """A topic of this test run only: parallel runs on the shared broker never see each other's messages."""
    return f"jejak-test-{uuid.uuid4().hex[:12]}/pasar/data"


async def make_hub(tmp_path: Path, *, mqtt: MqttConfig | None = None, topic: str | None = None,
                   **bridge_options: Any) -> HubEnv:
    topic = topic or unique_topic()
    mqtt = mqtt or MqttConfig(enabled=True, topic=topic, clean_session=True,
                              client_id=f"jejak-hub-test-{uuid.uuid4().hex[:8]}")
    config = HubConfig(name="bridges-test", data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                       auto_approve=True, checkpoint_interval=3600, operator_tokens=(hash_token(OPERATOR),),
                       bridges=BridgeConfig(state_dir=str(tmp_path / "bridges"), mqtt=mqtt,
                                            **{"auto_approve": True, "gateway_tokens": (hash_token(GATEWAY),),
                                               **bridge_options}))
    clock = HubClock()  # wall time unless a test sets it (to ingest a past day as it happened)
    plan = Plan(kitchens=(Kitchen(id="sppg-test"),), schools=(School(id="sd-1", kitchen="sppg-test", portions=100),))
    run = await start_hub(config, clock=clock, plan=plan)
    assert run.bridges is not None
    session = aiohttp.ClientSession()
    return HubEnv(hub=run.hub, views=run.views, bridges=run.bridges, running=run, topic=topic, session=session,
                  clock=clock)


async def close_hub(env: HubEnv) -> None:
    await env.session.close()
    await env.running.close()  # type: ignore[attr-defined]


@pytest.fixture
async def hubenv(tmp_path):
    env = await make_hub(tmp_path)
    try:
        yield env
    finally:
        await close_hub(env)


def signed_price_device(env: HubEnv, *, days: int, commodity: str = "cabai-merah", market: str = SIGNED_MARKET):
    """A Jejak device that signs its own price records, one a day for `days` days, each reaching the hub
    the day it was made (the hub's clock set to that day), as a device with an uplink would."""
    hub = env.hub
    signer = Ed25519Signer.generate()
    now = int(time.time())
    t = [now - days * 86400]
    builder = ChainBuilder(signer, clock=lambda: t[0], boot=1)
    hub.enroll(make_enroll_request(signer, site=market, role="market_stall", name="signed reporter",
                                   time=now, hub_id=hub.hub_id))
    records = [builder.genesis()]
    try:
        for day in range(days):
            t[0] = now - (days - day) * 86400
            env.clock.set(t[0] + 600)
            batch = [builder.append("price", {"market": market, "commodity": commodity, "unit": "kg",
                                              "price_idr": 40000 + 250 * day})]
            if day == 0:
                batch.insert(0, records[0])
            result = hub.ingest(builder.device_id, [r.raw for r in batch])
            assert result.accepted == len(batch), result
            records.extend(batch[-1:])
    finally:
        env.clock.set(None)
    return builder.device_id, records
