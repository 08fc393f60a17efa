"""Alert delivery against a real aiohttp server on 127.0.0.1: formats, retries, back-off, records."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from hub.markets.warning import Alert
from hub.markets.webhooks import Subscriber, WebhookSender

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


async def test_retries_with_backoff_then_success(server: tuple[Server, str]) -> None:
    srv, base = server
    srv.fail_first = 2
    sleeps: list[float] = []
    async with _sender(sleeps) as sender:
        d = await sender.send(Subscriber(id="ops", kind="json", url=f"{base}/hook"), ALERT)
    assert d.ok and d.attempts == 3 and d.statuses == (503, 503, 200)
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.75 and sleeps[1] == 0.0  # second honours Retry-After: 0
    assert sender.log == [d]


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
