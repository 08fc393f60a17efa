"""The hub's market API on loopback: public paths, quarantine decisions, the price stream and alert webhooks,
all computed from signed records that devices pushed to a real hub."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hub.app import RunningHub, start_hub
from hub.auth import hash_token
from hub.bridges import BridgeConfig, MqttConfig
from hub.config import HubConfig
from hub.markets import MarketConfig, ValidationConfig
from hub.markets.catalog import COMMODITIES_BY_ID, MARKETS_BY_ID
from hub.markets.model import day_of
from hub.markets.synth import SynthConfig, generate
from hub.mbg import Plan
from hub.mbg.plan import Kitchen
from hub.service import Hub
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request
from tests.documented import assert_documented
from tests.wait import PATIENCE, wait_for

OPERATOR = "market-operator-token"
MARKETS = ("pasar-senen", "pasar-kosambi", "pasar-johar")
COMMODITIES = ("cabai-merah", "beras-medium")
DAYS = 70


class Device:
    """A market device that signs its records with the device time it is given."""

    def __init__(self, hub: Hub, site: str) -> None:
        self.hub = hub
        self.signer = Ed25519Signer.generate()
        self.t = int(time.time())
        hub.enroll(make_enroll_request(self.signer, site=site, role="market", name=site, time=self.t,
                                       hub_id=hub.hub_id))
        self.builder = ChainBuilder(self.signer, clock=lambda: self.t, boot=1)
        self.pending = [self.builder.genesis()]

    def sign(self, kind: str, t: int, body: dict) -> str:
        self.t = t
        rec = self.builder.append(kind, body)
        self.pending.append(rec)
        return rec.id.hex()

    def push(self) -> None:
        result = self.hub.ingest(self.builder.device_id, [r.raw for r in self.pending])
        assert result.accepted == len(self.pending), result
        self.pending = []


class Env:
    def __init__(self, hub, views, running, session, devices):
        self.hub, self.views, self.running, self.session, self.devices = hub, views, running, session, devices
        self.signed: set[str] = set()

    async def get(self, path, **kw):
        async with self.session.get(self.running.http_url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(self, path, **kw):
        async with self.session.post(self.running.http_url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def push(self) -> None:
        for d in self.devices.values():
            await asyncio.to_thread(d.push)


def hub_config(tmp_path, *, webhooks=(), kitchens=()) -> HubConfig:
    # The history arrives at once, as a backlog: accept reports as old as the history.
    return HubConfig(name="markets-api", data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                     auto_approve=True, checkpoint_interval=3600, operator_tokens=(hash_token(OPERATOR),),
                     markets=MarketConfig(validation=ValidationConfig(max_age_s=(DAYS + 2) * 86400)),
                     webhooks=tuple(webhooks), webhook_attempts=1,
                     mbg_kitchen_regions={k: "Jawa Barat" for k in kitchens},
                     bridges=BridgeConfig(mqtt=MqttConfig(enabled=False)))


async def make_env(tmp_path, *, webhooks=(), kitchens=()) -> Env:
    config = hub_config(tmp_path, webhooks=webhooks, kitchens=kitchens)
    plan = Plan(kitchens=tuple(Kitchen(id=k) for k in kitchens), schools=())
    running = await start_hub(config, plan=plan)
    devices = {m: Device(running.hub, m) for m in MARKETS}
    return Env(running.hub, running.views, running, aiohttp.ClientSession(), devices)


@pytest.fixture
async def env(tmp_path):
    e = await make_env(tmp_path)
    try:
        yield e
    finally:
        await e.session.close()
        await e.running.close()


def close_backlog_window(running: RunningHub) -> None:
    """Make final the days of a history pushed at once, as the hub's timer does once the markets' backlog window
    has passed (two hours on): each day came in a backlog and waited for the other markets' backlogs of it."""
    views = running.views
    assert views.refilled.wait(60 * PATIENCE), "the refill did not end"  # records pushed meanwhile wait for it
    with views.fresh():
        views.markets.settle(int(time.time()) + views.markets.validator.config.backlog_window_s + 1)
    views.changed()


def synth_history(env: Env, *, seed: int = 5, shocks: float = 3.0) -> None:
    """Sign DAYS of generated prices and readings ending today, one device per market."""
    first = dt.date.today() - dt.timedelta(days=DAYS - 1)
    data = generate(SynthConfig(seed=seed, start=first.isoformat(), days=DAYS, reporters=(1, 2),
                                markets=tuple(MARKETS_BY_ID[m] for m in MARKETS), shocks_per_year=shocks,
                                commodities=tuple(COMMODITIES_BY_ID[c] for c in COMMODITIES)))
    now = int(time.time())
    for t, body in data.price_bodies():
        if t < now:
            env.signed.add(env.devices[body["market"]].sign("price", t, body))
    for t, body in data.reading_bodies():
        if t < now:
            env.devices[body["site"]].sign("reading", t, body)


async def test_public_paths_answer_from_signed_price_records(env):
    synth_history(env)
    await env.push()
    code, live = await env.get("/api/public/commodity/price/live", params={"commodity": "cabai-merah"})
    assert code == 200, live
    assert {p["market_id"] for p in live["prices"]} == set(MARKETS)
    assert all(p["trust"] == "signed" and p["record"] in env.signed for p in live["prices"])
    assert live["trust"]["attested"] == 0

    code, hist = await env.get("/api/public/commodity/price/history",
                               params={"commodity": "cabai-merah", "market_id": "pasar-senen", "limit": "2000"})
    assert code == 200, hist
    # Each observation of the days listed (the last raw_days), at least one a day; older days are aggregates.
    first = env.views.markets.listed_from()
    assert hist["observations_from"] == dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + first).isoformat()
    days = {h["day"] for h in hist["history"]}
    raw_days = env.views.markets.config.raw_days
    assert days <= set(range(first, first + raw_days)) and len(days) >= raw_days - 1
    assert all(h["record"] in env.signed for h in hist["history"])

    code, imp = await env.get("/api/public/impact", params={"commodity": "cabai-merah", "market_id": "pasar-senen"})
    assert code == 200, imp
    (row,) = imp["impact"]
    assert 0 <= row["score"] <= 100 and (row["dominant"] in row["weights"] or row["dominant"] == "none")
    assert abs(sum(row["weights"].values()) - 1) < 0.01
    assert imp["inputs"]["signed"] == len(hist["history"]) and imp["inputs"]["attested"] == 0

    code, fc = await env.get("/api/forecast/cabai-merah", params={"market_id": "pasar-senen"})
    assert code == 200, fc
    assert len(fc["forecast"]) == 7 and fc["market"] == "pasar-senen"
    assert all(p["low"] <= p["low80"] <= p["mean"] <= p["high80"] <= p["high"] for p in fc["forecast"])
    # Forecasts start the day after the last accepted price (a held one, even provisionally, is not a price).
    assert fc["forecast"][0]["day"] == max(h["day"] for h in hist["history"] if not h["quarantined"]) + 1
    code, conf = await env.get("/api/forecast/confidence", params={"commodity": "cabai-merah",
                                                                   "market_id": "pasar-senen"})
    assert code == 200 and 0 < conf["confidence"] < 1 and conf["attested_share"] == 0

    # The early warning has run on the worker; every live alert names a series of these records.
    await wait_for(lambda: env.views.markets.tracker._last, timeout=20)
    code, alerts = await env.get("/api/public/alerts/live")
    assert code == 200 and isinstance(alerts["alerts"], list)
    assert {a["series"].split("/")[0] for a in alerts["live"]} <= set(MARKETS)
    code, bands = await env.get("/api/markets/map")
    assert {m["id"] for m in bands["markets"]} == set(MARKETS)
    assert all(len(m["alps"]) == len(COMMODITIES) for m in bands["markets"])


async def test_quarantine_decision_needs_the_operator_token_and_leaves_an_audit_entry(env):
    synth_history(env)
    await env.push()
    close_backlog_window(env.running)  # the history's days are final: a price sent now is judged against them
    now = int(time.time())
    dev = env.devices["pasar-kosambi"]
    fake = dev.sign("price", now - 60, {"market": "pasar-kosambi", "commodity": "cabai-merah", "unit": "kg",
                                        "price_idr": 400_000, "reporter": "rep-x", "region": "Jawa Barat"})
    await env.push()
    code, held = await env.get("/api/markets/quarantine")
    assert code == 200
    entry = next(e for e in held["entries"] if e["observation"]["id"] == fake)
    assert entry["state"] == "pending" and "hampel" in entry["verdict"]["fired"]
    decide = f"/api/markets/quarantine/{fake}/decide"
    body = {"action": "release", "by": "siti", "why": "checked with the trader"}
    code, answer = await env.post(decide, json=body)
    assert code == 403, answer
    code, answer = await env.post(decide, json=body, headers={"Authorization": "Bearer not-the-token"})
    assert code == 401, answer
    code, audit = await env.get("/api/markets/quarantine/audit", params={"id": fake},
                                headers={"Authorization": f"Bearer {OPERATOR}"})
    assert audit["audit"] == []
    code, answer = await env.post(decide, json=body, headers={"Authorization": f"Bearer {OPERATOR}"})
    assert code == 200, answer
    assert answer["decision"]["from"] == "pending" and answer["decision"]["to"] == "released"
    code, audit = await env.get("/api/markets/quarantine/audit", params={"id": fake},
                                headers={"Authorization": f"Bearer {OPERATOR}"})
    assert [(a["action"], a["by"], a["why"]) for a in audit["audit"]] == [("release", "siti",
                                                                          "checked with the trader")]
    code, prices = await env.get("/api/markets/prices", params={"commodity": "cabai-merah",
                                                                "market": "pasar-kosambi"})
    point = next(p for s in prices["series"] for p in s["points"] if p["id"] == fake)
    assert point["quarantined"] is False
    # Released twice is a conflict, not a second audit entry.
    code, answer = await env.post(decide, json=body, headers={"Authorization": f"Bearer {OPERATOR}"})
    assert code == 409, answer
    code, audit = await env.get("/api/markets/quarantine/audit", params={"id": fake},
                                headers={"Authorization": f"Bearer {OPERATOR}"})
    assert len(audit["audit"]) == 1


async def test_the_held_list_comes_a_page_at_a_time_with_every_pending_value_whatever_its_day(env):
    synth_history(env)
    dev = env.devices["pasar-kosambi"]
    old = int(time.time()) - 40 * 86400  # older than the days listed (raw_days), still waiting for a decision
    fake = dev.sign("price", old, {"market": "pasar-kosambi", "commodity": "cabai-merah", "unit": "kg",
                                   "price_idr": 400_000, "reporter": "rep-x", "region": "Jawa Barat"})
    await env.push()
    close_backlog_window(env.running)
    code, held = await env.get("/api/markets/quarantine")
    assert code == 200, held
    assert_documented("GET", "/api/markets/quarantine", code, held)
    ids = [e["observation"]["id"] for e in held["entries"]]
    assert held["total"] == len(ids) > 7 and held["offset"] == 0 and fake in ids
    assert day_of(old) < env.views.markets.listed_from()
    # The prices answer lists the days listed only: the older pending value is not among its held ones.
    code, prices = await env.get("/api/markets/prices", params={"commodity": "cabai-merah"})
    assert fake not in {o["id"] for o in prices["quarantined"]}
    paged: list[str] = []
    for offset in range(0, len(ids) + 7, 7):
        code, page = await env.get("/api/markets/quarantine", params={"state": "pending", "offset": str(offset),
                                                                       "limit": "7"})
        assert code == 200 and page["total"] == len(ids) and page["offset"] == offset, page
        assert len(page["entries"]) == max(0, min(7, len(ids) - offset))
        assert set(page["names"]) == {e["observation"]["commodity"] for e in page["entries"]}
        paged += [e["observation"]["id"] for e in page["entries"]]
    assert paged == ids
    # The front page counts the same queue without listing it, also once a decision took one out; beside the
    # observations of the days listed it counts how many of those are held, as the prices answers mark them.
    code, summary = await env.get("/api/dashboard/summary")
    assert code == 200 and summary["markets"]["awaiting_decision"] == held["total"]
    assert_documented("GET", "/api/dashboard/summary", code, summary)
    listed = env.views.markets.checked()
    assert summary["markets"]["observations"] == len(listed)
    assert summary["markets"]["observations_from"] == env.views.markets.listed_since()
    in_days = sum(o["quarantined"] for o in listed)
    assert summary["markets"]["quarantined"] == in_days
    assert 0 < in_days < held["total"]  # the queue holds values of older days too, the old one among them
    code, answer = await env.post(f"/api/markets/quarantine/{fake}/decide", headers={"Authorization": f"Bearer {OPERATOR}"},
                                  json={"action": "confirm", "by": "siti", "why": "a typo of 40,000"})
    assert code == 200, answer
    code, summary = await env.get("/api/dashboard/summary")
    code, held = await env.get("/api/markets/quarantine")
    assert summary["markets"]["awaiting_decision"] == held["total"] == len(ids) - 1
    assert summary["markets"]["quarantined"] == in_days  # the value decided was of no day listed
    for state in ("pending", "confirmed", "released", "cleared", None):
        assert env.views.markets.held_count(state) == env.views.markets.held_page(state)[1], state
    # Decided, the old value is listed no longer (its day is past the days listed), though the store keeps it.
    assert env.views.markets.quarantine.store.count("confirmed") == 1 and env.views.markets.held_count("confirmed") == 0
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"offset": "-1"}, {"limit": "ten"}):
        code, answer = await env.get("/api/markets/quarantine", params=bad)
        assert code == 400 and answer["error"]["code"] == "BAD_REQUEST", (bad, answer)
        assert next(iter(bad)) in answer["error"]["message"]


async def test_price_updates_stream_with_their_impact(env):
    synth_history(env)
    await env.push()
    with env.views.fresh():  # the history's prices are in, and told, before the stream is watched
        pass
    events: list[dict] = []

    async def listen() -> None:
        async with env.session.get(env.running.http_url + "/api/events") as resp:
            kind = None
            async for line in resp.content:
                text = line.decode().strip()
                if text.startswith("event:"):
                    kind = text[6:].strip()
                elif text.startswith("data:") and kind == "price":
                    events.append(json.loads(text[5:]))
                    return

    task = asyncio.create_task(listen())
    await wait_for(lambda: env.running.api.events.watched, what="the event stream to be subscribed")
    rid = env.devices["pasar-senen"].sign("price", int(time.time()) - 30, {
        "market": "pasar-senen", "commodity": "cabai-merah", "unit": "kg", "price_idr": 52_000,
        "reporter": "rep-live", "region": "DKI Jakarta"})
    await env.push()
    await asyncio.wait_for(task, 10 * PATIENCE)
    (update,) = events
    assert update["observation"]["id"] == rid and update["verdict"] in ("accepted", "quarantined")
    assert update["impact"]["score"] >= 0 and "dominant" in update["impact"]


def trending_prices(env: Env, market: str, commodity: str, *, days: int = 60) -> list[int]:
    """A flat price that rises over the last week, signed one a day; returns the days."""
    now = int(time.time())
    out = []
    for k in range(days):
        t = now - (days - k) * 86400 + 3600
        lift = 1.0 + (0.04 * (k - (days - 8)) if k > days - 8 else 0.0)
        price = round(40_000 * lift * (1 + 0.01 * ((k * 7) % 5 - 2)) / 100) * 100
        env.devices[market].sign("price", t, {"market": market, "commodity": commodity, "unit": "kg",
                                              "price_idr": price, "reporter": "rep-1", "region": "Jawa Barat"})
        out.append(t)
    return out


async def test_dominant_factor_follows_the_inputs_crowd_then_mbg_demand(tmp_path):
    env = await make_env(tmp_path, kitchens=("SPPG-A",))
    try:
        market, commodity = "pasar-kosambi", "beras-medium"
        times = trending_prices(env, market, commodity)
        # Crowd counts that triple in the week prices rose.
        for k, t in enumerate(times):
            crowd = 300 if k >= len(times) - 7 else 100 + (k % 3)
            env.devices[market].sign("reading", t, {"site": market, "sensor": "bme280", "temp_cc": 2900,
                                                    "rh_cp": 7800, "crowd": crowd})
        await env.push()
        code, imp = await env.get("/api/markets/impact", params={"commodity": commodity, "market": market})
        assert code == 200, imp
        assert imp["impact"][0]["dominant"] == "crowd", imp["impact"][0]["statement"]

        # MBG kitchens in the region start cooking with this commodity: their stock "use" records rise.
        kitchen = Device(env.hub, "SPPG-A")
        for k, t in enumerate(times):
            kg = 600 if k >= len(times) - 7 else 20
            kitchen.sign("stock", t - 1800, {"site": "SPPG-A", "item": "beras", "movement": "use",
                                             "qty": kg * 1000, "unit": "g"})
        await asyncio.to_thread(kitchen.push)
        assert env.views.demand.kg[("Jawa Barat", commodity, day_of(times[-1] - 1800))] == 600
        code, imp = await env.get("/api/markets/impact", params={"commodity": commodity, "market": market})
        assert imp["impact"][0]["dominant"] == "mbg", imp["impact"][0]["statement"]
        assert imp["impact"][0]["weights"]["mbg"] > imp["impact"][0]["weights"]["crowd"]
    finally:
        await env.session.close()
        await env.running.close()


async def receiver() -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A webhook subscriber on a free port: its runner (clean it up), its URL and what it received."""
    received: list[dict[str, Any]] = []

    async def inbox(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", inbox)
    app.router.add_post("/hook/{tail:.*}", inbox)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook", received


async def test_alps_worsening_is_sent_to_webhook_subscribers_and_recorded(tmp_path):
    runner, url, received = await receiver()
    # The subscriber's secret rides in its URL: the operator's answer shows where deliveries went, masked.
    hook = {"id": "ops", "kind": "json", "url": f"{url}/B0S3CR3T/x?key=hunter2", "min_band": "stress"}
    env = await make_env(tmp_path, webhooks=(hook,))
    try:
        synth_history(env, seed=11, shocks=24.0)
        await env.push()
        await wait_for(lambda: env.views.alerts.sender.log, timeout=20)
        code, _ = await env.get("/api/markets/webhooks")
        assert code == 403
        code, hooks = await env.get("/api/markets/webhooks", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert code == 200 and hooks["subscribers"][0]["id"] == "ops"
        assert hooks["subscribers"][0]["url"] == f"{url}/***/***?key=***"
        assert hooks["deliveries"] and all(d["ok"] and d["subscriber"] == "ops" for d in hooks["deliveries"])
        assert all(d["url"] == f"{url}/***/***?key=***" for d in hooks["deliveries"])
        assert "B0S3CR3T" not in json.dumps(hooks) and "hunter2" not in json.dumps(hooks)
        assert_documented("GET", "/api/markets/webhooks", code, hooks)
        await wait_for(lambda: len(received) >= len(hooks["deliveries"]), timeout=20)
        # What the subscriber got is what the record says was sent: one body per delivery, each an alert that
        # the early warning raised and the views published.
        published = {a["id"].split("/", 1)[1] for a in env.views.alerts.listing()["alerts"] if "/" in a["id"]}
        assert {d["alert"] for d in hooks["deliveries"]} <= published
        assert len(received) == len(hooks["deliveries"])
        assert all(r["type"] == "jejak.market.alert" and r["alert"]["id"] in published for r in received)
    finally:
        await env.session.close()
        await env.running.close()
        await runner.cleanup()
