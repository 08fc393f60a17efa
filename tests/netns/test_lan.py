"""A hub and three edges, each in its own network namespace on one bridge, with real multicast.

Scenarios in order on one LAN: discovery from a cold start (no addresses configured), a link cut while an
edge records and then healed, an edge whose uplink is down reaching the hub through a neighbour, and an edge
destroyed for good after a neighbour replicated it. After each, every record is at the hub exactly once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
import urllib.request

import aiocoap
import cbor2
import pytest

from hub.auth import hash_token
from ledger import verify_bundle
from tests.wait import wait_until

from .harness import Lan, available, python

EDGES = ("a", "b", "c")
AUDITOR = "auditor-token-for-the-lan"
# What a host answers while it is still starting: no answer yet, or one without the data yet.
STARTING = (OSError, ValueError, KeyError, aiocoap.error.Error)


def _wait(predicate, timeout: float, *, what: str):  # type: ignore[no-untyped-def]
    return wait_until(predicate, timeout, what=what, step=0.25, tolerate=STARTING)


def _coap_logs(ip: str, *, own: bool = False) -> dict[str, int]:
    async def ask() -> dict[str, int]:
        ctx = await aiocoap.Context.create_client_context()
        try:
            msg = aiocoap.Message(code=aiocoap.GET, uri=f"coap://{ip}:5683/logs")
            resp = await asyncio.wait_for(ctx.request(msg).response, 5)
            return {entry["device"].hex(): entry["length"] for entry in cbor2.loads(resp.payload)
                    if entry["own"] or not own}
        finally:
            await ctx.shutdown()

    return asyncio.run(ask())


def _hub_heads(ip: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{ip}:8470/api/heads", timeout=5) as resp:
        return {h["device"]: h["length"] for h in json.loads(resp.read())["heads"]}


def _hub_status(ip: str) -> dict:
    with urllib.request.urlopen(f"http://{ip}:8470/api/status", timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def lan(tmp_path):
    why = available()
    if why is not None:
        pytest.fail(f"these tests need network namespaces: {why}")
    net = Lan()
    try:
        yield net
    finally:
        net.close()


def _start_hub(lan: Lan, tmp_path):
    hub = lan.add("hub")
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "hub"}"\nhttp_host = "{hub.ip}"\ncoap_host = "{hub.ip}"\n'
                   'auto_approve = true\nmdns = true\ncheckpoint_interval = 1.0\n'
                   f'auditor_tokens = ["{hash_token(AUDITOR)}"]\n')
    lan.run(hub, [python(), "-m", "tools.cli", "hub", "run", "--config", str(cfg)], tmp_path / "hub.log")
    _wait(lambda: _hub_status(hub.ip), 30, what="the hub to answer")
    return hub


def _start_edge(lan: Lan, tmp_path, name: str, hub_ip: str, *, enroll: bool = True):
    host = lan.hosts.get(name) or lan.add(name)
    data = tmp_path / name
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'site = "site-{name}"\ndata_dir = "{data}"\nsensors = []\n'
                   f'[coap]\nhost = "{host.ip}"\nport = 5683\n'
                   f'[sim]\ntap_interval_ms = 100\n'
                   f'[sync]\nmdns = true\ninterfaces = ["{host.ip}"]\nannounce = "{host.ip}"\ninterval_s = 1.0\n')
    if enroll:
        ident = lan.exec(host, [python(), "-m", "tools.cli", "edge", "id", "--config", str(cfg)])
        assert ident.returncode == 0, ident.stderr
        status = _hub_status(hub_ip)
        uri = f"jejak-enroll:?hub=http://{hub_ip}:8470&id={status['hub']}&key={status['pubkey']}"
        done = lan.exec(host, [python(), "-m", "tools.cli", "enroll", "request", uri, "--key",
                               str(data / "device.key"), "--site", f"site-{name}", "--role", "kitchen_exit"])
        assert done.returncode == 0, done.stderr
    lan.run(host, [python(), "-m", "tools.cli", "edge", "run", "--config", str(cfg)], tmp_path / f"{name}.log")
    _wait(lambda: _coap_logs(host.ip), 30, what=f"edge {name} to answer")
    return host


def _own_length(ip: str) -> tuple[str, int]:
    """The log this edge signs (the others it holds are replicas)."""
    (device, length), = _coap_logs(ip, own=True).items()
    return device, length


def _records_while_blocked(hub_ip: str, edge_ip: str, device: str) -> None:
    """Wait until the edge has signed ten records more than the hub held of its log when the block began."""
    at_block = _hub_heads(hub_ip).get(device, 0)
    _wait(lambda: _own_length(edge_ip)[1] >= at_block + 10, 30, what="records made while the uplink is down")


def _caught_up(hub_ip: str, device: str, length: int) -> bool:
    return _hub_heads(hub_ip).get(device, 0) >= length


def test_lan_discovery_partition_relay_and_loss(lan, tmp_path):
    started = time.monotonic()
    hub = _start_hub(lan, tmp_path)
    edges = {name: _start_edge(lan, tmp_path, name, hub.ip) for name in EDGES}
    ids = {}
    for name, host in edges.items():
        ids[name] = _wait(lambda h=host: _own_length(h.ip)[0], 20, what="an own log")

    # 1. Cold start: nobody was told where the hub is; mDNS finds it and records flow.
    for name in EDGES:
        _wait(lambda n=name: _hub_heads(hub.ip).get(ids[n], 0) > 5, 60, what=f"records of {name} at the hub")

    # 2. A's link is cut while it records, then healed: everything reaches the hub.
    a = edges["a"]
    lan.cut(a)
    time.sleep(3)  # how long the outage lasts (A cannot be asked anything while its link is down)
    lan.heal(a)
    healed = time.monotonic()
    length_a = _own_length(a.ip)[1]
    _wait(lambda: _caught_up(hub.ip, ids["a"], length_a), 60, what="A to catch up after the heal")
    convergence = time.monotonic() - healed

    # 3. B's uplink to the hub is down; its records reach the hub through A or C.
    b = edges["b"]
    lan.block(b, hub)
    _records_while_blocked(hub.ip, b.ip, ids["b"])
    length_b = _own_length(b.ip)[1]
    _wait(lambda: _caught_up(hub.ip, ids["b"], length_b), 60, what="B's records relayed by a neighbour")

    # 4. C records without an uplink, a neighbour replicates it, then C is destroyed for good.
    c = edges["c"]
    lan.block(c, hub)
    _records_while_blocked(hub.ip, c.ip, ids["c"])
    length_c = _wait(lambda: min(_coap_logs(a.ip).get(ids["c"], 0), _coap_logs(b.ip).get(ids["c"], 0))
                     or None, 30, what="neighbours to replicate C")
    lan.kill(c)
    shutil.rmtree(tmp_path / "c")
    _wait(lambda: _caught_up(hub.ip, ids["c"], length_c), 60, what="C's records after C is gone")

    # Exactly once: the hub's log holds each device's chain once, and an export verifies offline. The edges
    # stop first, so that the log and the heads are read at rest.
    for name in ("a", "b"):
        lan.kill(edges[name], signal.SIGTERM)
    # The hub may still be taking a push the edges made as they stopped: read once log and heads agree.
    # The hub's tree also holds its own log (genesis and decisions), among its heads only if it lists itself.
    def _sizes_match() -> bool:
        status, heads = _hub_status(hub.ip), _hub_heads(hub.ip)
        own = 0 if status["hub"] in heads else status["own_log"]
        return bool(status["size"] == sum(heads.values()) + own)

    _wait(_sizes_match, 10, what="the hub's log size to equal the sum of its heads and its own log")
    export = urllib.request.Request(f"http://{hub.ip}:8470/api/export",
                                    headers={"Authorization": f"Bearer {AUDITOR}"})  # bodies: an auditor's
    with urllib.request.urlopen(export, timeout=30) as resp:
        report = verify_bundle(resp.read())
    assert report.ok, report.to_json()["problems"]
    assert {d.device for d in report.devices} >= set(ids.values())
    print(f"convergence after heal: {convergence:.1f}s; whole scenario {time.monotonic() - started:.0f}s")


def _edge_status(ip: str) -> dict:
    async def ask() -> dict:
        ctx = await aiocoap.Context.create_client_context()
        try:
            resp = await asyncio.wait_for(ctx.request(aiocoap.Message(code=aiocoap.GET,
                                                                      uri=f"coap://{ip}:5683/status")).response, 5)
            return cbor2.loads(resp.payload)
        finally:
            await ctx.shutdown()

    return asyncio.run(ask())


def _hub_target(ip: str) -> dict:
    (target,) = [t for t in _edge_status(ip)["sync"] if t["role"] == "hub"]
    return target


def test_forged_and_forked_logs_from_a_peer_are_refused_and_reported(lan, tmp_path):
    hub = _start_hub(lan, tmp_path)
    a = _start_edge(lan, tmp_path, "a", hub.ip)
    b = _start_edge(lan, tmp_path, "b", hub.ip)
    device_a = _wait(lambda: _own_length(a.ip)[0], 20, what="A's own log")
    _wait(lambda: _coap_logs(b.ip).get(device_a, 0) > 20, 60, what="B to replicate A")
    # A forger copies A's log, flips a bit in one record and announces itself on the LAN.
    forger = lan.add("forger")
    lan.run(forger, [python(), "-m", "tests.netns.evil_peer", "--victim", f"coap://{a.ip}:5683",
                     "--ip", forger.ip, "--mode", "forge"], tmp_path / "forger.log")
    _wait(lambda: any("INVALID_SIGNATURE" in p for t in _edge_status(b.ip)["sync"] for p in t["problems"]),
          60, what="B to refuse the forged log and report it")
    assert device_a not in _edge_status(b.ip)["forked"]
    # A device that equivocates: its key signs a second history, offered by another node.
    lan.kill(a)
    twin = lan.add("twin")
    lan.run(twin, [python(), "-m", "tests.netns.evil_peer", "--victim", f"coap://{b.ip}:5683", "--ip", twin.ip,
                   "--mode", "fork", "--key", str(tmp_path / "a" / "device.key")], tmp_path / "twin.log")
    _wait(lambda: device_a in _edge_status(b.ip)["forked"], 60, what="B to catch A's fork and freeze A's log")
    length_at_hub = _hub_heads(hub.ip)[device_a]
    for _ in range(2):  # two more rounds of B with the hub, each of which could have carried A's log on
        ok = _hub_target(b.ip)["last_ok"]
        _wait(lambda ok=ok: _hub_target(b.ip)["last_ok"] != ok, 30, what="B to sync with the hub again")
    assert _hub_heads(hub.ip)[device_a] == length_at_hub, "a frozen log is not replicated further"
