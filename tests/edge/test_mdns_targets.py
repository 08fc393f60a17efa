"""An mDNS announcement proves nothing and must not slow anything down (SECURITY.md): many announcements of the
pinned hub's id make one hub target, a peer that never answers does not hold the push to the hub back, and refused
announcements are logged at most once a minute."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from coap_server.discovery import SERVICE, Discovery
from edge.sync import MAX_ANNOUNCED_PEERS, SyncAgent
from tests.security.common import edge, edge_config, enroll_edge, secure_hub
from tests.wait import wait_for


def _held(hub, device: bytes) -> int:
    state = hub.hub.store.chain_state(device)
    return state.length if state is not None else 0


@contextlib.contextmanager
def _silent(n: int) -> Iterator[list[int]]:
    """n bound UDP ports on loopback that never answer."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        yield [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.asynccontextmanager
async def _announced(role: str, device: str, ports: list[int]) -> AsyncIterator[None]:
    """What an attacker on the LAN does: one `_jejak._udp` service per port, each claiming `role` and `device`."""
    zc = AsyncZeroconf(ip_version=IPVersion.V4Only, interfaces=["127.0.0.1"])
    infos = [AsyncServiceInfo(SERVICE, f"{role}-fake{i:04d}-{device[:8]}.{SERVICE}", port=port,
                              properties={"role": role, "id": device, "proto": "1", "heads": "0:0:0"},
                              addresses=[socket.inet_aton("127.0.0.1")], server=f"fake{i}.local.")
             for i, port in enumerate(ports)]
    try:
        for info in infos:
            await zc.async_register_service(info)
        yield
    finally:
        for info in infos:
            await zc.async_unregister_service(info)
        await zc.async_close()


async def test_announcements_of_the_pinned_hub_id_make_one_hub_target_and_the_push_is_not_delayed(tmp_path):
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(data, hub)
        hub_id = hub.hub.hub_id
        config = edge_config(data)  # no [hub] address: the hub is found over mDNS
        config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, mdns=True,
                                                                      interfaces=("127.0.0.1",)))
        real = Discovery(role="hub", device_id=hub_id, port=hub.coap_port, addresses=["127.0.0.1"],
                         interfaces=["127.0.0.1"])
        await real.start()
        try:
            async with edge(config) as daemon:
                agent = daemon.sync
                assert agent is not None and daemon.discovery is not None
                await wait_for(lambda: (t := agent.targets.get(hub.coap_url)) is not None and t.last_ok,
                               what="a round with the hub found over mDNS")
                await daemon.submit([("note", {"text": "before"})])
                await wait_for(lambda: _held(hub, key.device_id) == daemon.store.log_length(key.device_id),
                               what="the record at the hub")
                with _silent(20) as ports:
                    async with _announced("hub", hub_id.hex(), ports):
                        await wait_for(lambda: len(daemon.discovery.hubs()) >= 21, timeout=20,
                                       what="the edge to see the 20 fake hubs")
                        hubs = [t.url for t in agent.targets.values() if t.role == "hub"]
                        assert hubs == [hub.coap_url], hubs  # the one that answers is kept
                        started = time.monotonic()
                        await daemon.submit([("note", {"text": "after the fakes"})])
                        await wait_for(lambda: _held(hub, key.device_id) == daemon.store.log_length(key.device_id),
                                       timeout=5, what="the record at the hub, not after a timeout per fake hub")
                        assert time.monotonic() - started < 5
                        assert [t.url for t in agent.targets.values() if t.role == "hub"] == [hub.coap_url]
        finally:
            await real.close()


async def test_a_peer_that_never_answers_does_not_hold_the_push_to_the_hub_back(tmp_path):
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub", oscore=False) as hub:
        await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url, oscore=False)
        with _silent(3) as ports:
            async with edge(config) as daemon:
                agent, device = daemon.sync, daemon.key.device_id
                assert agent is not None
                await wait_for(lambda: daemon.status()["head"]["state"] == "confirmed", what="the hub's answer")
                agent.peer_round_budget = 1.0
                for i, port in enumerate(ports):  # what discovery does when peers are announced
                    agent.add(f"coap://127.0.0.1:{port}", "edge", device=f"{i:032x}")
                rounds = agent.rounds
                await wait_for(lambda: agent.rounds > rounds, what="a round with the silent peers")
                for n in range(3):
                    started = time.monotonic()
                    await daemon.submit([("note", {"text": f"note {n}"})])
                    await wait_for(lambda: _held(hub, device) == daemon.store.log_length(device), timeout=4,
                                   what="the record at the hub, within the peers' budget of a round")
                    assert time.monotonic() - started < 4


def _agent(**kwargs) -> SyncAgent:
    return SyncAgent(_NoHolder(), interval=3600, **kwargs)  # type: ignore[arg-type]


class _NoHolder:
    def heads(self):
        return []


async def test_announced_targets_are_bounded():
    pinned = os.urandom(16).hex()
    agent = _agent()
    for port in range(18850, 18870):
        agent.add(f"coap://127.0.0.1:{port}", "hub", device=pinned)
    assert [t.url for t in agent.targets.values()] == ["coap://127.0.0.1:18869"]  # the latest replaces the others
    agent.remove("coap://127.0.0.1:18869")  # gone from the LAN: another address announced with the id takes over
    assert [t.role for t in agent.targets.values()] == ["hub"]

    configured = _agent(hubs=["coap://hub.example:5683"])
    configured.add("coap://127.0.0.1:18850", "hub", device=pinned)
    assert list(configured.targets) == ["coap://hub.example:5683"]  # [hub] address is preferred

    for i in range(MAX_ANNOUNCED_PEERS + 20):
        agent.add(f"coap://10.0.{i // 250}.{i % 250}:5683", "edge", device=os.urandom(16).hex())
    assert sum(t.role == "edge" for t in agent.targets.values()) == MAX_ANNOUNCED_PEERS
    assert agent.peers_refused == 20


async def test_refused_announcements_are_logged_once_a_minute_with_their_count(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="jejak.edge.security")
    async with edge(edge_config(tmp_path / "edge")) as daemon:  # OSCORE on, no [security] peer_keys
        security = daemon.security
        assert security is not None
        now = [1000.0]
        security.refusals.clock = lambda: now[0]
        caplog.clear()
        for i in range(51):
            assert not security.admit("edge", os.urandom(16).hex(), f"coap://127.0.0.1:{18850 + i % 30}")
            now[0] += 0.5
        lines = [r.getMessage() for r in caplog.records if "mDNS announcements" in r.getMessage()]
        assert len(lines) == 1 and "UNTRUSTED_PEER" in lines[0], lines
        now[0] += 60
        security.admit("edge", os.urandom(16).hex(), "coap://127.0.0.1:18899")
        lines = [r.getMessage() for r in caplog.records if "mDNS announcements" in r.getMessage()]
        assert len(lines) == 2 and lines[1].startswith("refused 51 mDNS announcements"), lines
        assert not [r for r in caplog.records if r.getMessage().startswith("UNTRUSTED_PEER")]
        assert security.status()["refused"]["UNTRUSTED_PEER"] == 52
