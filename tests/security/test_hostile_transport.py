"""Abuse of the transports under the routes of a running `jejak hub run` and `jejak edge run`: CoAP bodies sent
block by block with gaps, overlaps and sizes past any limit, never finished, to every resource both list. Each
is refused with a typed 4.xx (a CBOR {code}), never 5.00 or a traceback in the server's log, and the servers go
on answering other clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiocoap
import cbor2
import pytest
from aiocoap.optiontypes import BlockOption

from tests.ports import free_coap

from .test_attacker import resources
from .test_fuzz_routes import ROOT, _get, _wait, hub_process

__all__ = ["hub_process"]  # a fixture, used by name


@pytest.fixture
def edge_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with running_edge(tmp_path) as running:
        yield running


@contextlib.contextmanager
def running_edge(tmp_path: Path, settings: str = "") -> Iterator[tuple[str, Path]]:
    """`jejak edge run` on a free port with `settings` (TOML tables) added to its config; its URL and log."""
    port = free_coap()
    config = tmp_path / "edge.toml"
    config.write_text(f'site = "sppg-abuse"\ndata_dir = "{tmp_path / "edge"}"\nsensors = []\n'
                      f'[coap]\nhost = "127.0.0.1"\nport = {port}\n[sync]\nmdns = false\n[sim]\ntap_interval_ms = 0\n'
                      f'{settings}')
    log = tmp_path / "edge.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "edge", "run", "--config", str(config)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"coap://127.0.0.1:{port}"
    try:
        _wait(proc, lambda: asyncio.run(resources(url)))
        yield url, log
        assert proc.poll() is None, "the edge exited"
    finally:
        proc.terminate()
        proc.wait(30)


class Blocks:
    """A client that sends Block1 blocks as it is told to, from its own socket (one remote, one body key)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("coap://").rsplit(":", 1)
        self.where = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(10)
        self.mid = 0

    def send(self, path: tuple[str, ...], number: int, more: bool, payload: bytes, *, exp: int = 6,
             size1: int | None = None, code: aiocoap.Code = aiocoap.POST) -> tuple[str, Any]:
        self.mid += 1
        msg = aiocoap.Message(code=code, payload=payload, uri_path=path)
        msg.mtype, msg.mid, msg.token = aiocoap.CON, self.mid, self.mid.to_bytes(2, "big")
        msg.opt.block1 = BlockOption.BlockwiseTuple(number, more, exp)
        if size1 is not None:
            msg.opt.size1 = size1
        self.sock.sendto(msg.encode(), self.where)
        while True:
            answer = aiocoap.Message.decode(self.sock.recv(65536))
            if answer.mid == self.mid:
                break
        body = cbor2.loads(answer.payload) if answer.payload else None
        return str(answer.code), body

    def close(self) -> None:
        self.sock.close()


def abuse(url: str, path: tuple[str, ...]) -> dict[str, str]:
    """Each misuse of Block1 on `path` by POST and GET: the code it was refused with, or what it was answered
    when that is not a typed 4.xx refusal (a CBOR map with a code)."""
    codes: dict[str, str] = {}
    for method in (aiocoap.POST, aiocoap.GET):
        client = Blocks(url)

        def answer(what: str, got: tuple[str, Any], method: aiocoap.Code = method) -> None:
            status, body = got
            typed = status.startswith("4.") and isinstance(body, dict) and isinstance(body.get("code"), str)
            codes[f"{method} {what}"] = body["code"] if typed else f"{status} {body!r}"

        try:
            if client.send(path, 0, True, b"\xa0" * 1024, code=method)[0] == "2.31 Continue":
                answer("a gap", client.send(path, 2, True, b"\xa0" * 1024, code=method))
                client.send(path, 0, True, b"\xa0" * 1024, code=method)
                client.send(path, 1, True, b"\xa0" * 1024, code=method)
                answer("an overlap", client.send(path, 1, True, b"\xa0" * 1024, code=method))
                client.send(path, 0, True, b"\xa0" * 1024, code=method)
                answer("a block of another size", client.send(path, 1, True, b"\xa0" * 100, code=method))
            answer("a block whose body never began", client.send(path, 7, True, b"\xa0" * 1024, code=method))
            answer("a body of 2 GB declared", client.send(path, 0, True, b"\xa0" * 1024, size1=1 << 31, code=method))
            answer("the last block of a 1 GB body", client.send(path, (1 << 20) - 1, True, b"\xa0" * 1024,
                                                                code=method))
        finally:
            client.close()
    return codes


async def test_block1_abuse_on_every_coap_resource_of_hub_and_edge(hub_process, edge_process, tmp_path):
    http_url, hub_coap, hub = hub_process
    edge_coap, edge_log = edge_process
    seen: dict[str, dict[str, str]] = {}
    for url, who in ((hub_coap, "hub"), (edge_coap, "edge")):
        paths = await resources(url)
        assert len(paths) >= 5, paths
        for path in paths:
            seen[f"{who} /{'/'.join(path)}"] = await asyncio.to_thread(abuse, url, path)
    wrong = [f"{where} {what}: {code}" for where, codes in seen.items() for what, code in codes.items()
             if not code.isupper()]
    assert not wrong, "\n".join(wrong)
    heads = seen["hub /sync/heads"]  # a resource that takes a body
    assert heads["POST a gap"] == heads["POST an overlap"] == heads["POST a block whose body never began"] \
        == "INCOMPLETE_BODY"
    assert heads["POST a block of another size"] == "BAD_REQUEST"
    for where in ("hub /checkpoint", "hub /.well-known/core", "edge /status"):  # resources that take none
        assert seen[where]["POST a body of 2 GB declared"] == seen[where]["GET a gap"] == "TOO_LARGE", where
    assert hub.poll() is None and _get(f"{http_url}/api/status")["hub"]
    for log in (tmp_path / "hub.log", edge_log):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
