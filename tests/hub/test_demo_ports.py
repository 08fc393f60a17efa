"""`jejak demo` on any free port: the port it picks can be taken before its hub binds it (a second demo started at
once), and then it picks another rather than stopping or sharing; a port asked for and taken stops it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from coap_server.ports import PortInUse
from hub import demo
from tests.ports import free_tcp


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A TCP port another process listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other


async def test_a_free_port_taken_before_the_demo_binds_it_is_replaced_by_another(
        tmp_path: Path, taken: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    port = taken.getsockname()[1]
    picks = iter([port, port])  # the other demo holds what this one picked, twice

    def pick(host: str = "127.0.0.1") -> int:
        return next(picks, None) or free_tcp(host)

    monkeypatch.setattr(demo, "free_coap_port", pick)
    running = await demo.start_demo(data_dir=str(tmp_path / "demo"), port=0, speed=1000.0)
    try:
        assert running.running.http_port not in (port, 0)
        assert next(picks, None) is None  # both taken picks were tried
    finally:
        await running.running.close()


async def test_a_port_asked_for_and_taken_stops_the_demo(tmp_path: Path, taken: socket.socket) -> None:
    port = taken.getsockname()[1]
    with pytest.raises(PortInUse) as refused:
        await demo.start_demo(data_dir=str(tmp_path / "demo"), port=port, speed=1000.0)
    assert refused.value.where == "http_port"
