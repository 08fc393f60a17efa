"""A hub whose /api/status answers serves CoAP too: a health check, a readiness probe or a test that polls the HTTP
status takes the hub for up, and a device that pushes on its word must not be refused over UDP or TCP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import CONTENT

from coap_server.ports import TCP, UDP, PortInUse, claim
from hub.app import start_hub
from hub.bridges.config import BridgeConfig
from hub.config import HubConfig
from tests.ports import free_coap, free_tcp
from tests.wait import PATIENCE

ROOT = Path(__file__).resolve().parents[2]
SLOW_BIND_S = 1.0

# `jejak hub run` whose CoAP bind takes a second longer, as on a busy machine: a hub that started HTTP first
# answered /api/status all that second while CoAP refused (on an idle machine the window was too short to hit
# from here; on a busy one a CoAP-TCP connect was refused). The real bind follows; nothing else of the hub changes.
RUN_WITH_SLOW_COAP_BIND = f"""
import asyncio, sys
import coap_server.ports as ports
bind = ports.serve_coap
async def slow_bind(*args, **kwargs):
    print("slow CoAP bind", file=sys.stderr, flush=True)
    await asyncio.sleep({SLOW_BIND_S})
    return await bind(*args, **kwargs)
ports.serve_coap = slow_bind
from tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _status(url: str) -> Any:
    with urllib.request.urlopen(f"{url}/api/status", timeout=10) as resp:
        return json.loads(resp.read())


async def _first_status(url: str, proc: subprocess.Popen[bytes]) -> Any:
    """The hub's first /api/status answer, asked for every 10 ms from its start."""
    deadline = time.monotonic() + 60 * PATIENCE
    while True:
        assert proc.poll() is None, f"the hub exited with {proc.returncode} while starting"
        try:
            return await asyncio.to_thread(_status, url)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("the hub's /api/status never answered") from None
            await asyncio.sleep(0.01)


async def _ask(client: aiocoap.Context, uri: str) -> object:
    """The code of the answer to a GET of `uri`, or the error of a port not bound yet: refused at once (ICMP port
    unreachable, a TCP reset), so no retransmission waits for the bind."""
    try:
        response = await asyncio.wait_for(client.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response,
                                          10 * PATIENCE)
    except aiocoap.error.NetworkError as exc:
        return f"refused: {exc.__cause__ or exc!r}"
    return response.code


async def test_once_the_status_answers_coap_over_udp_and_tcp_answers_at_once(tmp_path: Path) -> None:
    http, coap = free_tcp(), free_coap()
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_port = {http}\ncoap_port = {coap}\nmdns = false\n'
                      '[bridges]\nenabled = false\n')
    log = tmp_path / "hub.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", RUN_WITH_SLOW_COAP_BIND, "hub", "run", "--config",
                                 str(config)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = await aiocoap.Context.create_client_context()  # made first: the requests go out as the status answers
    try:
        status = await _first_status(f"http://127.0.0.1:{http}", proc)
        answers = {scheme: await _ask(client, f"{scheme}://127.0.0.1:{coap}/.well-known/core")
                   for scheme in ("coap", "coap+tcp")}
        assert answers == {"coap": CONTENT, "coap+tcp": CONTENT}, answers
        assert status["hub"], status
        assert "slow CoAP bind" in log.read_text()  # the bind this test slows is the one the hub made
    finally:
        await client.shutdown()
        proc.terminate()
        proc.wait(30)
    assert "Traceback" not in log.read_text()


async def test_an_http_port_taken_after_the_claim_stops_the_start_and_lets_the_coap_port_go(tmp_path: Path) -> None:
    http, coap = free_tcp(), free_coap()
    with socket.socket() as other:
        def take_http_port(app: object) -> None:  # another process, between the hub's claim and its HTTP bind
            other.bind(("127.0.0.1", http))
            other.listen()

        config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=http, coap_port=coap, mdns=False,
                           bridges=BridgeConfig(enabled=False))
        with pytest.raises(PortInUse) as refused:
            await start_hub(config, routes=[take_http_port])
        assert refused.value.where == "http_port"
        claim("127.0.0.1", coap, [UDP, TCP], setting="coap_port")  # CoAP, bound first, is free again for both
        # Whatever started before the failure stopped with it: the same process starts the hub again on that
        # data_dir, with no store, read model or worker of the failed start left open.
        threads = {t.name for t in threading.enumerate()}
        assert not {"jejak-views", "jejak-refill"} & threads, threads
        running = await start_hub(replace(config, http_port=free_tcp()))
        try:
            assert (await asyncio.to_thread(_status, running.http_url))["hub"]
        finally:
            await running.close()
