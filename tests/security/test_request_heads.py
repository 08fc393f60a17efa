"""Every request head on a connection has HEAD_S to end, not only the first: a client that is answered once and
then trickles its next request's head (slowloris on a kept-alive connection) is closed. A WebSocket's frames and a
body's bytes are not a head: they are never cut by it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from coap_server import httpd
from coap_server.limits import Cap
from tests.wait import PATIENCE

HEAD_S = 1.5  # the deadline in these tests, for speed


@pytest.fixture
async def server(monkeypatch):
    monkeypatch.setattr(httpd, "HEAD_S", HEAD_S)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    httpd.guard(runner, Cap(total=64, per_address=64))
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * PATIENCE)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    await asyncio.wait_for(reader.readexactly(length), 10 * PATIENCE)
    return head


async def test_a_kept_alive_connection_that_trickles_its_next_head_is_closed(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    try:
        writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        while True:  # a header line now and then, never the blank line that ends the head
            assert time.monotonic() - started < 20 * HEAD_S * PATIENCE, "the trickled head was never cut"
            writer.write(b"X-Trickle: 1\r\n")
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), HEAD_S / 5) == b"":
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                break
        assert time.monotonic() - started >= HEAD_S * 0.9  # closed by the deadline, not at once
    finally:
        writer.close()


async def test_a_kept_alive_connection_with_heads_in_time_stays_open(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    try:
        for _ in range(4):  # each head sent whole, the connection idle between them longer than HEAD_S
            writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(HEAD_S * 1.2)
    finally:
        writer.close()


async def test_a_websocket_is_not_cut_by_the_head_deadline(server):
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{server}/ws") as ws:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 3 * HEAD_S:
            await ws.send_str(str(n))
            assert (await ws.receive(timeout=10 * PATIENCE)).data == str(n)
            n += 1
            await asyncio.sleep(HEAD_S / 4)
        assert not ws.closed


async def test_a_connection_opened_and_never_used_is_closed_without_a_warning(server, caplog):
    """Browsers open spare connections ahead of requests they may not make: one that sends nothing is closed at
    the deadline like any other, but it is nobody's slow request, and the operator's log does not say so."""
    caplog.set_level("DEBUG", logger="jejak.http")
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server)
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server)
    try:
        slow_writer.write(b"GET /status HTTP/1.1\r\n")  # a head begun and never ended
        for reader in (idle_reader, slow_reader):
            assert await asyncio.wait_for(reader.read(), 20 * HEAD_S * PATIENCE) == b""  # closed at the deadline
    finally:
        idle_writer.close()
        slow_writer.close()
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warned] == [f"closed a connection whose request head took over {HEAD_S:.0f} s"]
    assert any(r.getMessage().startswith("closed a connection that sent nothing") for r in caplog.records)
