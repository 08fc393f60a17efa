"""Other devices' logs an edge keeps are bounded in number and bytes: a device id costs nothing (a fresh key signs a
valid log of its own), so a LAN host pushing made-up logs is refused past the bound, what is held stays, and the
own log is untouched. A log the hub refused as unknown is not pushed to it every round, and that refusal is said
apart from a refusal of the edge's own log (which alone carries "enroll this edge")."""

from __future__ import annotations

import dataclasses
import logging

import aiocoap
import cbor2

from edge.config import Limits, SyncConfig
from edge.sync import ReplicaQuota
from ledger import ChainBuilder, Ed25519Signer
from ledger.sync import encode_records
from tests.edge.common import edge_config, running
from tests.security.common import edge, enroll_edge, secure_hub
from tests.security.common import edge_config as secure_edge_config
from tests.wait import wait_for

NOW = 1_763_900_000


def _made_up(n: int, records: int = 3) -> list[tuple[bytes, list[bytes]]]:
    """`n` logs of fresh keys, each `records` long: valid, self-signed, enrolled nowhere."""
    logs = []
    for _ in range(n):
        builder = ChainBuilder(Ed25519Signer.generate(), clock=lambda: NOW, boot=1)
        recs = [builder.genesis()] + [builder.append("note", {"text": "x" * 200}) for _ in range(records - 1)]
        logs.append((builder.device_id, [r.raw for r in recs]))
    return logs


async def _push(ctx: aiocoap.Context, port: int, device: bytes, raws: list[bytes]) -> tuple[str, dict]:
    """POST /sync/records as any LAN host may (OSCORE off): the ack's code name and body."""
    msg = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{port}/sync/records",
                          payload=encode_records(device, 0, raws), content_format=60)
    response = await ctx.request(msg).response
    return response.code.name, cbor2.loads(response.payload)


def _quota(daemon) -> ReplicaQuota:
    holder = daemon.holder
    while not isinstance(holder, ReplicaQuota):
        holder = holder.store
    return holder


async def test_the_replica_bounds_are_the_configured_limits(tmp_path):
    config = edge_config(tmp_path / "e", limits=Limits(replica_logs=40, replica_bytes=1 << 20))
    async with running(config) as (daemon, _):
        quota = _quota(daemon)
        assert (quota.max_logs, quota.max_bytes) == (40, 1 << 20)


async def test_made_up_logs_past_the_bound_are_refused_and_what_is_held_stays(tmp_path):
    async with running(edge_config(tmp_path / "e")) as (daemon, _):
        quota = _quota(daemon)
        quota.max_logs = 8  # 6 for devices nobody vouched for, 2 more kept for those vouched for
        own = daemon.key.device_id
        await daemon.submit([("note", {"text": "before"})])
        logs = _made_up(10)
        ctx = await aiocoap.Context.create_client_context()
        try:
            answers = [await _push(ctx, daemon.coap_port, device, raws) for device, raws in logs]
            vouched = _made_up(3)
            for device, _ in vouched:
                quota.vouch(device)
            vouched_answers = [await _push(ctx, daemon.coap_port, device, raws) for device, raws in vouched]
            again = await _push(ctx, daemon.coap_port, *logs[0])  # a held log sent again: duplicates, no refusal
        finally:
            await ctx.shutdown()
        assert [a[1]["accepted"] for a in answers] == [3] * 6 + [0] * 4, answers
        for code, body in answers[6:]:
            assert code == "CHANGED" and body["problem"].startswith("LIMIT_EXCEEDED: this edge keeps at most 6 logs")
            assert "[limits] replica_logs" in body["problem"], body
        assert [a[1]["accepted"] for a in vouched_answers] == [3, 3, 0], vouched_answers
        assert again[1]["duplicates"] == 3 and again[1]["problem"] is None, again
        held = {h.device_id: h.length for h in daemon.store.heads()}
        assert len(held) == 1 + 8
        for device, raws in logs[:6] + vouched[:2]:
            assert daemon.store.log_range(device, 0, 3) == raws
        for device, _ in logs[6:] + vouched[2:]:
            assert device not in held
        assert daemon.store.replicas()[0] == 8
        records = await daemon.submit([("note", {"text": "after"})])  # the own log is never bounded here
        assert records[0].seq == 2 and held[own] == 2


async def test_replica_bytes_are_bounded_too(tmp_path):
    async with running(edge_config(tmp_path / "e")) as (daemon, _):
        quota = _quota(daemon)
        quota.max_bytes = 4000  # 3000 for devices nobody vouched for
        logs = _made_up(8)
        ctx = await aiocoap.Context.create_client_context()
        try:
            answers = [await _push(ctx, daemon.coap_port, device, raws) for device, raws in logs]
        finally:
            await ctx.shutdown()
        taken = [a[1]["accepted"] for a in answers]
        kept = taken.index(0)
        assert 1 <= kept < 8 and set(taken[kept:]) == {0}, taken
        assert "bytes of other devices' logs" in answers[kept][1]["problem"]
        logs_held, used = daemon.store.replicas()
        assert logs_held == kept and used == sum(len(r) for _, raws in logs[:kept] for r in raws)
        assert used < 3000 + len(b"".join(logs[0][1]))  # past the bound by one request at most
        await daemon.submit([("note", {"text": "own"})])


async def test_replica_bytes_are_counted_from_the_store_after_a_restart(tmp_path):
    config = edge_config(tmp_path / "e")
    logs = _made_up(3)
    async with running(config) as (daemon, _):
        for device, raws in logs:
            assert daemon.holder.receive(device, raws)["accepted"] == 3
    async with running(config) as (daemon, _):
        assert daemon.store.replicas() == (3, sum(len(r) for _, raws in logs for r in raws))


async def test_a_log_the_hub_refused_as_unknown_is_not_pushed_there_again_and_is_said_apart(tmp_path, caplog):
    """A made-up log held here goes to the hub once, which refuses it UNKNOWN_DEVICE: it is named, without the
    own log's fix, and not sent there again next rounds; the own log goes on to the hub."""
    caplog.set_level(logging.INFO, logger="jejak.edge.sync")
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(data, hub)
        config = secure_edge_config(data, hub=hub.coap_url)
        config = dataclasses.replace(config, sync=SyncConfig(mdns=False, interval_s=0.2))
        async with edge(config) as daemon:
            [(device, raws)] = _made_up(1)
            assert daemon.holder.receive(device, raws)["accepted"] == 3
            daemon.sync.trigger()
            target = daemon.sync.targets[hub.coap_url]

            def refused() -> int:
                return sum(1 for p in target.problems if p.startswith(device.hex()))

            await wait_for(lambda: refused() == 1, what="the hub's refusal of the made-up log")
            rounds = daemon.sync.rounds
            await daemon.submit([("note", {"text": "later"})])
            await wait_for(lambda: daemon.sync.rounds >= rounds + 3, what="three more rounds")
            await wait_for(lambda: hub.hub.store.chain_state(key.device_id).length == 2, what="the own log at the hub")
            assert refused() == 1, target.problems
            assert daemon.store.log_range(device, 0, 3) == raws  # kept here all the same
    said = [r.getMessage() for r in caplog.records if r.name == "jejak.edge.sync" and device.hex() in r.getMessage()]
    assert len(said) == 1 and "UNKNOWN_DEVICE" in said[0] and "not this device's" in said[0], said
    assert "enroll this edge" not in said[0]
    assert not [r for r in caplog.records if "refuses this device's records" in r.getMessage()]


async def test_an_own_log_refusal_is_said_after_a_replica_refusal_with_the_same_code(tmp_path, caplog):
    """The hub refuses a made-up log held here and, the edge not enrolled, its own log, both UNKNOWN_DEVICE: the
    own log's refusal is said with the fix (enroll this edge), the replica's apart, naming its device."""
    caplog.set_level(logging.INFO, logger="jejak.edge.sync")
    async with secure_hub(tmp_path / "hub", oscore=False) as hub:
        config = secure_edge_config(tmp_path / "edge", hub=hub.coap_url, oscore=False)
        config = dataclasses.replace(config, sync=SyncConfig(mdns=False, interval_s=0.2, head_wait_s=0))
        async with edge(config) as daemon:
            [(device, raws)] = _made_up(1)
            assert daemon.holder.receive(device, raws)["accepted"] == 3
            await daemon.submit([("note", {"text": "unenrolled"})])
            daemon.sync.trigger()

            def said(text: str) -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == "jejak.edge.sync" and text in r.getMessage()]

            await wait_for(lambda: said("refuses this device's records: UNKNOWN_DEVICE")
                           and said(device.hex()), what="both refusals said")
            own = said("refuses this device's records: UNKNOWN_DEVICE")
            assert len(own) == 1 and "enroll this edge" in own[0] and device.hex() not in own[0], own
            replica = said(device.hex())
            assert len(replica) == 1 and "enroll this edge" not in replica[0] and "UNKNOWN_DEVICE" in replica[0], replica
