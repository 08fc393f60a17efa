"""Alert delivery against a real aiohttp server on 127.0.0.1: formats, retries, back-off, records."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hub.app import start_hub
from hub.journal import Journal
from hub.markets.errors import BadObservation
from hub.markets.staleness import HeldRun
from hub.markets.warning import Alert, held_alert
from hub.markets.webhooks import (
    Redelivery,
    RetryPolicy,
    Subscriber,
    Told,
    Waiting,
    WebhookSender,
    delivery_id,
)
from hub.mbg import Plan
from tests.documented import assert_documented
from tests.wait import wait_for

from .test_api import MARKETS, OPERATOR, Device, Env, hub_config, synth_history

ALERT = Alert(id="a1", series="pasar-senen/cabai-merah", market="pasar-senen", commodity="cabai-merah",
              region="DKI Jakarta", indicator="ALPS", previous="normal", band="alert", value=1.4, day=19_900,
              price_idr=61_000, message="cabai-merah at pasar-senen: ALPS normal -> alert")


class Server:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict]] = []
        self.fail_first = 0  # answer this many requests with 503
        self.status_after = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, headers={"Retry-After": "0"} if len(self.requests) == 2 else {})
        return web.json_response({"ok": True}, status=self.status_after)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield srv, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _sender(sleeps: list[float]) -> WebhookSender:
    async def sleep(s: float) -> None:
        sleeps.append(s)

    return WebhookSender(max_attempts=4, backoff_s=0.5, sleep=sleep, rng=random.Random(1))


async def test_three_formats(server: tuple[Server, str]) -> None:
    srv, base = server
    subs = [
        Subscriber(id="ops", kind="json", url=f"{base}/hook", token="s3cret"),
        Subscriber(id="tg", kind="telegram", url=base, token="123:ABC", chat_id="-100200"),
        Subscriber(id="wa", kind="whatsapp", url=f"{base}/v21.0", token="EAAG", phone_number_id="1055",
                   to="6281234567890"),
    ]
    async with _sender([]) as sender:
        deliveries = await sender.broadcast(subs, [ALERT])
    assert all(d.ok and d.attempts == 1 for d in deliveries)
    by_path = {p: (h, b) for p, h, b in srv.requests}
    h, b = by_path["/hook"]
    assert b["type"] == "jejak.market.alert" and b["alert"]["band"] == "alert" and h["Authorization"] == "Bearer s3cret"
    _, b = by_path["/bot123:ABC/sendMessage"]
    assert b["chat_id"] == "-100200" and "ALPS normal -> alert" in b["text"]
    h, b = by_path["/v21.0/1055/messages"]
    assert b["messaging_product"] == "whatsapp" and b["to"] == "6281234567890" and b["type"] == "text"
    assert "ALERT" in b["text"]["body"] and h["Authorization"] == "Bearer EAAG"
    tg = next(d for d in deliveries if d.subscriber == "tg")
    assert "123:ABC" not in tg.url and "***" in tg.url  # the record keeps no secrets
    assert len(tg.body_sha256) == 64 and json.dumps(tg.to_dict())
    # Every kind says which delivery it is, each subscriber's its own; the generic JSON body says it too.
    ids = {p: h["X-Jejak-Delivery"] for p, h, _ in srv.requests}
    assert by_path["/hook"][1]["delivery"] == ids["/hook"]
    assert sorted(ids.values()) == sorted(d.delivery for d in deliveries) and len(set(ids.values())) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids.values())


async def test_retries_with_backoff_then_success(server: tuple[Server, str]) -> None:
    srv, base = server
    srv.fail_first = 2
    sleeps: list[float] = []
    async with _sender(sleeps) as sender:
        d = await sender.send(Subscriber(id="ops", kind="json", url=f"{base}/hook"), ALERT)
    assert d.ok and d.attempts == 3 and d.statuses == (503, 503, 200)
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.75 and sleeps[1] == 0.0  # second honours Retry-After: 0
    assert sender.log == [d]
    # Each try is the same delivery, by its header and its body: a receiver that took one drops the others.
    assert [h["X-Jejak-Delivery"] for _, h, _ in srv.requests] == [d.delivery] * 3
    assert [b["delivery"] for _, _, b in srv.requests] == [d.delivery] * 3


def test_a_delivery_id_names_the_subscriber_and_the_change_told() -> None:
    """The same alert to the same subscriber is the same delivery whenever it is built; another subscriber, day,
    band or band told from is another one (a band eased to is not the same news as that band raised to)."""
    same = delivery_id("ops", ALERT)
    assert same == delivery_id("ops", replace(ALERT, value=1.5, message="judged again")) == delivery_id("ops", ALERT)
    others = {delivery_id("tg", ALERT), delivery_id("ops", ALERT.since("crisis")),
              delivery_id("ops", replace(ALERT, id="a2", day=19_901))}
    assert len(others) == 3 and same not in others


def test_a_held_run_is_a_band_subscribers_filter_and_a_waiting_delivery_keeps() -> None:
    """A series held for a decision counts as stress for min_band; its run and its end are two deliveries, and
    either waits in the redelivery journal as it was told."""
    run = HeldRun(first_day=19_900, last_day=19_903, days=4, reports=5)
    held = held_alert(series="pasar-senen/cabai-merah", market="pasar-senen", commodity="cabai-merah",
                      region="DKI Jakarta", run=run, day=19_899, price_idr=41_000)
    ended = held_alert(series="pasar-senen/cabai-merah", market="pasar-senen", commodity="cabai-merah",
                       region="DKI Jakarta", run=None, day=19_904, price_idr=56_000)
    assert (held.previous, held.band, ended.previous, ended.band) == ("normal", "held", "held", "normal")
    assert "5 reports of cabai-merah at pasar-senen held in quarantine on 4 reported days" in held.message
    wanted = {band: Subscriber(id=band, kind="json", url="http://x/", min_band=band).wants(held)
              for band in ("normal", "stress", "alert", "crisis")}
    assert wanted == {"normal": True, "stress": True, "alert": False, "crisis": False}
    assert not Subscriber(id="bali", kind="json", url="http://x/", regions=("Bali",)).wants(held)
    assert delivery_id("ops", held) != delivery_id("ops", ended)
    for alert in (held, ended):
        line = Waiting(subscriber="ops", alert=alert, rounds=2, due=1.0, since=0.5).to_line()
        assert Waiting.from_line(json.loads(json.dumps(line))).alert == alert


async def test_gives_up_after_max_attempts_and_on_client_errors(server: tuple[Server, str]) -> None:
    srv, base = server
    srv.fail_first = 10
    sleeps: list[float] = []
    async with _sender(sleeps) as sender:
        d = await sender.send(Subscriber(id="ops", kind="json", url=f"{base}/hook"), ALERT)
        assert not d.ok and d.attempts == 4 and len(sleeps) == 3
        assert sleeps[2] > sleeps[0]  # exponential
        srv.fail_first = 0
        srv.status_after = 400
        bad = await sender.send(Subscriber(id="ops", kind="json", url=f"{base}/hook"), ALERT)
        assert not bad.ok and bad.attempts == 1  # a 400 will not get better by resending
        refused = await sender.send(Subscriber(id="gone", kind="json", url="http://127.0.0.1:9/x"), ALERT)
        assert not refused.ok and refused.attempts == 4 and all(isinstance(s, str) for s in refused.statuses)
    assert len(sender.log) == 3


async def test_subscriber_filters(server: tuple[Server, str]) -> None:
    srv, base = server
    subs = [Subscriber(id="beras-only", kind="json", url=f"{base}/a", commodities=("beras-medium",)),
            Subscriber(id="crisis-only", kind="json", url=f"{base}/b", min_band="crisis"),
            Subscriber(id="jakarta", kind="json", url=f"{base}/c", regions=("DKI Jakarta",))]
    async with _sender([]) as sender:
        deliveries = await sender.broadcast(subs, [ALERT])
    assert [d.subscriber for d in deliveries] == ["jakarta"]
    assert [p for p, _, _ in srv.requests] == ["/c"]


async def test_a_url_is_shown_and_logged_with_its_secrets_masked(server: tuple[Server, str], caplog) -> None:
    srv, base = server
    # Where a secret rides in a webhook URL: the user information's password, the path after an id (Slack's
    # /services/T.../B.../<secret>) and the query's values.
    secret_url = base.replace("http://", "http://ops:pa55word@") + "/services/T0A1B2/B3C4D5/hunter2tok?key=k3y&ch=x"
    sub = Subscriber(id="ops", kind="json", url=secret_url)
    shown = base.replace("http://", "http://ops:***@") + "/services/***/***/***?key=***&ch=***"
    srv.fail_first = 1
    async with WebhookSender(max_attempts=1) as sender:
        with caplog.at_level(logging.WARNING, logger="jejak.hub.webhooks"):
            failed = await sender.send(sub, ALERT)
            sent = await sender.send(sub, ALERT)
    # The receiver got the real URL; what the hub keeps and logs shows where it went without the secrets.
    assert [p for p, _, _ in srv.requests] == ["/services/T0A1B2/B3C4D5/hunter2tok"] * 2
    assert srv.requests[0][1]["Authorization"].startswith("Basic ")  # the password went, as aiohttp sends it
    assert not failed.ok and sent.ok and failed.url == sent.url == shown
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == f"webhook ops: alert a1 to {shown} not delivered (delivery {failed.delivery}); each try answered: 503"
    for secret in ("pa55word", "T0A1B2", "B3C4D5", "hunter2tok", "k3y"):
        assert secret not in json.dumps([d.to_dict() for d in sender.log]) and secret not in caplog.text
    # A URL the subscriber refuses is named masked too.
    with pytest.raises(BadObservation, match=r"got 'ftp://ops:\*\*\*@h.example/\*\*\*'") as caught:
        Subscriber(id="ops", kind="json", url="ftp://ops:pa55word@h.example/hunter2tok")
    assert "pa55word" not in str(caught.value)


class Delays:
    """The redelivery's waits, recorded and kept short (its back-off is set in hundredths of a second)."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, s: float) -> None:
        self.seen.append(s)
        await asyncio.sleep(s)


async def test_a_redirect_is_not_followed_and_an_endless_answer_is_not_read_to_its_end(
        server: tuple[Server, str]) -> None:
    """A subscriber's server cannot send the hub's deliveries on to another address (its own network, a cloud
    metadata service) with a redirect, nor hold the hub reading an answer without end."""
    srv, inside = server
    endless = 0

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{inside}/internal")

    async def stream(request: web.Request) -> web.StreamResponse:
        nonlocal endless
        answer = web.StreamResponse(status=200)
        await answer.prepare(request)
        with contextlib.suppress(ConnectionError):
            while endless < 64 << 20:  # 64 MB, far past what the hub reads
                await answer.write(b"x" * 65536)
                endless += 65536
        return answer

    app = web.Application()
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    outside = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        async with _sender([]) as sender:
            [moved] = await sender.broadcast([Subscriber(id="moved", kind="json", url=f"{outside}/redirect")],
                                             [ALERT])
            [streamed] = await sender.broadcast([Subscriber(id="stream", kind="json", url=f"{outside}/stream")],
                                                [ALERT])
        assert (moved.ok, moved.statuses) == (False, (307,))
        assert srv.requests == []  # the address it was sent on to never heard of it
        assert streamed.ok and streamed.attempts == 1
        assert endless < 64 << 20  # the hub stopped reading, and its side of the connection closed
    finally:
        await runner.cleanup()


def _alert(series: str, band: str = "alert") -> Alert:
    return replace(ALERT, id=f"{series}-{band}", series=series, band=band)


async def _first_try(sender: WebhookSender, told: Told, again: Redelivery, sub: Subscriber, alert: Alert) -> None:
    """What `Alerts` does with an alert to tell: claim it, send it once, keep the outcome, queue it if it failed."""
    claimed, before = told.claim(sub.id, alert)
    assert claimed
    delivery = await sender.send(sub, alert)
    told.settle(delivery, alert, before)
    again.add(sub, alert, delivery)


async def test_a_failed_delivery_is_sent_again_with_capped_backoff_until_it_succeeds_and_then_never(
        server: tuple[Server, str], tmp_path) -> None:
    srv, base = server
    srv.fail_first = 5
    sub = Subscriber(id="ops", kind="json", url=f"{base}/hook")
    told = Told(Journal(tmp_path / "told.jsonl"))
    delays = Delays()
    policy = RetryPolicy(backoff_s=0.01, max_backoff_s=0.04, queue=4)

    async def still_open(alert: Alert) -> bool:
        return True

    async with WebhookSender(max_attempts=1) as sender:
        again = Redelivery(sender, told, still_open=still_open, policy=policy, sleep=delays, rng=random.Random(7))
        await _first_try(sender, told, again, sub, ALERT)
        assert again.waiting() == 1 and told.band(sub.id, ALERT.series, "ALPS") is None
        await wait_for(lambda: again.delivered == 1, 10, what="the alert delivered by a later round")
        assert [d.statuses for d in sender.log] == [(503,)] * 5 + [(200,)]
        assert again.waiting() == 0 and not again.dropped
        # Doubling from 10 ms up to the 40 ms cap, each drawn from half to one and a half times that.
        assert len(delays.seen) == 5
        for rounds, waited in enumerate(delays.seen, 1):
            step = min(0.04, 0.01 * 2 ** (rounds - 1))
            assert 0.5 * step <= waited <= 1.5 * step, (rounds, waited)
        assert told.band(sub.id, ALERT.series, "ALPS") == "alert"
        assert Told(Journal(tmp_path / "told.jsonl")).band(sub.id, ALERT.series, "ALPS") == "alert"
        # A delivery of the same band that failed elsewhere and is queued after the success is not sent again.
        again.add(sub, ALERT, replace(sender.log[0], ok=False))
        await wait_for(lambda: again.dropped["told"] == 1, 10, what="the told band dropped")
        assert len(srv.requests) == 6 and again.waiting() == 0


async def test_redelivery_stops_when_the_alert_closes_and_its_queue_is_bounded(
        server: tuple[Server, str], tmp_path, caplog) -> None:
    srv, base = server
    srv.fail_first = 1_000_000
    sub = Subscriber(id="ops", kind="json", url=f"{base}/hook")
    told = Told(Journal(tmp_path / "told.jsonl"))
    open_series = {"pasar-senen/cabai-merah", "pasar-johar/cabai-merah", "pasar-kosambi/cabai-merah"}

    async def still_open(alert: Alert) -> bool:
        return alert.series in open_series

    async with WebhookSender(max_attempts=1) as sender:
        again = Redelivery(sender, told, still_open=still_open, sleep=Delays(), rng=random.Random(7),
                           policy=RetryPolicy(backoff_s=0.01, max_backoff_s=0.02, queue=2))
        with caplog.at_level(logging.WARNING, logger="jejak.hub.webhooks"):
            for series in sorted(open_series):
                await _first_try(sender, told, again, sub, _alert(series))
        assert again.waiting() == 2 and again.dropped == Counter({"queue_full": 1})
        assert "2 alerts already wait for this subscriber" in caplog.text
        # A newer alert of a waiting series takes its place.
        await _first_try(sender, told, again, sub, _alert("pasar-johar/cabai-merah", "crisis"))
        assert again.waiting() == 2 and again.dropped["superseded"] == 1
        await wait_for(lambda: len(srv.requests) >= 10, 10, what="rounds against the failing subscriber")
        open_series.clear()  # the bands moved on: nothing waits any more
        await wait_for(lambda: again.waiting() == 0, 10, what="the closed alerts dropped")
        assert again.dropped["closed"] == 2 and again.delivered == 0
        assert told.band(sub.id, "pasar-senen/cabai-merah", "ALPS") is None
        # A subscriber that refuses an alert (a 4xx) does not get it again.
        srv.fail_first, srv.status_after = 0, 400
        open_series.add("pasar-senen/cabai-merah")
        await _first_try(sender, told, again, sub, _alert("pasar-senen/cabai-merah"))
        assert again.waiting() == 0 and again.dropped["refused"] == 1
        await again.close()


async def test_the_hub_sends_failed_alerts_again_while_they_are_open(server: tuple[Server, str], tmp_path) -> None:
    """A running hub: the subscriber fails the first deliveries; each alert arrives once, by a later round, and
    what was told is kept."""
    srv, base = server
    srv.fail_first = 3
    config = dataclasses.replace(
        hub_config(tmp_path, webhooks=({"id": "ops", "kind": "json", "url": f"{base}/hook", "min_band": "stress"},)),
        webhook_retry=RetryPolicy(backoff_s=0.02, max_backoff_s=0.1))
    running = await start_hub(config, plan=Plan(kitchens=(), schools=()))
    session = aiohttp.ClientSession()
    try:
        env = Env(running.hub, running.views, running, session, {m: Device(running.hub, m) for m in MARKETS})
        synth_history(env, seed=11, shocks=24.0)
        await env.push()
        alerts = running.views.alerts
        assert alerts.sender is not None and alerts.redelivery is not None
        again = alerts.redelivery
        await wait_for(lambda: again.delivered and not again.waiting() and not alerts._sends, 30,
                       what="the failed deliveries sent again")
        log_ = alerts.sender.log
        assert [d.ok for d in log_].count(False) == 3 and not again.dropped
        received = [body["alert"]["id"] for _, _, body in srv.requests[3:]]
        assert sorted(received) == sorted(d.alert_id for d in log_ if d.ok), "every alert arrives, once"
        assert {d.alert_id for d in log_} == set(received)
        code, hooks = await env.get("/api/markets/webhooks", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert code == 200 and hooks["redelivery"] == {"waiting": 0, "delivered": again.delivered, "dropped": {}}
        assert_documented("GET", "/api/markets/webhooks", code, hooks)
        async with session.get(running.http_url + "/metrics") as resp:
            scraped = {(f.name, tuple(sorted(s.labels.items()))): s.value
                       for f in text_string_to_metric_families(await resp.text()) for s in f.samples}
        assert scraped[("jejak_hub_webhook_redelivered", ())] == again.delivered
        assert scraped[("jejak_hub_webhook_redelivery_waiting", ())] == 0
        told = Told(Journal(tmp_path / "hub" / "alerts" / "told.jsonl"))
        assert all(told.band("ops", b["alert"]["series"], b["alert"]["indicator"]) == b["alert"]["band"]
                   for _, _, b in srv.requests[3:])
    finally:
        await session.close()
        await running.close()
