"""An edge started on an old copy of its store learns its head from the hub before it signs: it fetches the
records the hub holds past the copy's head, and its next record follows the hub's head (it forked its own log,
and the hub held the device as `forked`). A hub that cannot be reached leaves it working offline, said once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import socket

import aiocoap
import aiocoap.resource as resource
import pytest

from coap_server.sync import add_sync_resources
from edge import keys as keyfile
from edge.config import SyncConfig
from edge.daemon import EdgeDaemon
from ledger import Ed25519Signer, ForkEvidence, decode_record
from tests.netns.evil_peer import Holder, other_history
from tests.ports import free_coap, free_udp
from tests.security.common import edge, edge_config, enroll_edge, secure_hub
from tests.wait import wait_for

STAFF = "5a000001"  # the checkpoint's default staff card


async def _synced(data, hub, notes: int):
    """An edge enrolled with `hub` that made `notes` records and stopped once the hub held them all."""
    key = await enroll_edge(data, hub)
    config = edge_config(data, hub=hub.coap_url)
    async with edge(config) as daemon:
        await _notes(daemon, 0, notes)
        await wait_for(lambda: _held(hub, key.device_id) == notes + 1,
                       what="the records at the hub")
    return key, config


async def _states_until_answered(daemon) -> list[str]:
    """The head's states, from `not_confirmed` until it is another."""
    seen = [daemon.status()["head"]["state"]]
    assert seen == ["not_confirmed"], daemon.status()["head"]

    def answered() -> bool:
        now = daemon.status()["head"]["state"]
        if now != seen[-1]:
            seen.append(now)
        return now != "not_confirmed"

    await wait_for(answered, what="an answer from the hub")
    return seen


def _held(hub, device: bytes) -> int:
    """How many records of `device`'s log the hub holds."""
    state = hub.hub.store.chain_state(device)
    return state.length if state is not None else 0


async def _notes(daemon, first: int, count: int) -> list[bytes]:
    return [r.id for r in await daemon.submit([("note", {"text": f"note {i}"}) for i in range(first, first + count)])]


async def test_an_edge_started_on_an_old_copy_of_its_store_continues_after_the_hubs_head(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jejak.edge")
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(data, hub)
        device = key.device_id
        config = edge_config(data, hub=hub.coap_url)
        async with edge(config) as daemon:
            await _notes(daemon, 0, 5)
            await wait_for(lambda: _held(hub, key.device_id) == 6, what="the first records at the hub")
        shutil.copytree(data / "store", tmp_path / "store.copy")  # the backup, taken early
        async with edge(config) as daemon:
            later = await _notes(daemon, 5, 600)  # more than one records request carries
            await wait_for(lambda: _held(hub, key.device_id) == 606, what="the later records at the hub")
        held = hub.hub.store.log_range(device, 0, 606)
        shutil.rmtree(data / "store")
        shutil.copytree(tmp_path / "store.copy", data / "store")  # the card restored from the backup

        async with edge(config) as daemon:
            assert daemon.tap is not None
            await daemon.tap.tap(STAFF)
            shown = await daemon.tap.tap("04aa000000000001")
            assert shown and shown[-1]["status"] == "accepted", shown
            own = daemon.store.state(device)
            assert own is not None and own.length > 606, own
            # The records made after the copy came back from the hub, and the new ones follow them.
            assert daemon.store.log_range(device, 0, 606) == held
            assert daemon.status()["head"]["state"] == "confirmed"
            assert daemon.status()["head"]["check"]["fetched"] == 600
            await wait_for(lambda: _held(hub, key.device_id) == own.length, what="the new records at the hub")
        info = hub.hub.store.get_device(device)
        assert info is not None and info.status == "active", info
        assert hub.hub.store.log_range(device, 0, 606) == held
        assert [hub.hub.store.locate(rid) is not None for rid in later] == [True] * 600
    caught = [r for r in caplog.records if "records of this device's own log and the hub" in r.getMessage()]
    assert len(caught) == 1 and caught[0].levelno == logging.WARNING


async def test_a_current_store_is_confirmed_and_nothing_is_fetched(tmp_path):
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub") as hub:
        _, config = await _synced(data, hub, 3)
        async with edge(config) as daemon:
            record = (await daemon.submit([("note", {"text": "after a restart"})]))[0]
            assert record.seq == 4
            head = daemon.status()["head"]
            assert head["state"] == "confirmed" and head["check"]["outcome"] == "current", head
            assert "jejak_edge_head_unconfirmed 0" in daemon.metrics_text()


@pytest.mark.parametrize("hub", ["refusing", "silent"])
async def test_a_hub_that_cannot_be_reached_leaves_the_edge_offline_and_says_so_once(tmp_path, caplog, hub):
    """Refusing: its host answers that nothing listens, and taps are signed at once. Silent: nothing answers,
    and taps wait [sync] head_wait_s."""
    caplog.set_level(logging.INFO, logger="jejak.edge")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1] if hub == "silent" else free_udp()
        config = edge_config(tmp_path / "edge", hub=f"coap://127.0.0.1:{port}", oscore=False)
        wait = 1.0 if hub == "silent" else 600
        config = dataclasses.replace(config, sync=SyncConfig(mdns=False, interval_s=0.2, head_wait_s=wait))
        await _offline(config)
    warned = [r for r in caplog.records if r.getMessage().startswith("head not confirmed by the hub")]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]


async def _offline(config) -> None:
    async with edge(config) as daemon:
        assert daemon.tap is not None
        await daemon.tap.tap(STAFF)
        shown = await daemon.tap.tap("04aa000000000001")
        assert shown and shown[-1]["status"] == "accepted", shown
        for i in range(3):
            await daemon.tap.tap(f"04aa00000000010{i}")
        status = daemon.status()
        assert status["head"]["state"] == "not_confirmed" and not status["head"]["held"], status["head"]
        assert "jejak_edge_head_unconfirmed 1" in daemon.metrics_text()
        assert daemon.store.state(daemon.key.device_id).length >= 5  # genesis, and the taps' records


async def test_a_hub_that_does_not_know_the_device_yet_holds_nothing_back(tmp_path):
    """Enrolled but pending: the hub serves it nothing, and the edge signs on its own head at once (as before)."""
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub", auto_approve=False) as hub:
        await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url)
        config = dataclasses.replace(config, sync=SyncConfig(mdns=False, interval_s=0.2, head_wait_s=600))
        async with edge(config) as daemon:
            record = (await daemon.submit([("note", {"text": "while pending"})]))[0]
            assert record.seq == 1
            head = daemon.status()["head"]
            assert head["state"] == "unknown_to_hub" and not head["held"], head


async def test_a_whole_data_dir_restored_from_a_backup_catches_up_over_oscore(tmp_path, caplog):
    """The card's image holds oscore/ too, at the sequence number of its day: the hub has seen a week of this
    context's numbers since and refuses the edge's requests as replays. The edge moves its sequence number past
    them, then learns its head as above (it stayed offline and forked its log)."""
    from coap_server.security import skip_sequence_numbers

    caplog.set_level(logging.WARNING, logger="jejak.edge")
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url)
        async with edge(config) as daemon:
            await _notes(daemon, 0, 2)
            await wait_for(lambda: _held(hub, key.device_id) == 3, what="the first records at the hub")
        shutil.copytree(data, tmp_path / "image")  # key, boot counter, hub.pin, oscore/ and store
        async with edge(config) as daemon:
            assert daemon.security is not None
            skip_sequence_numbers(daemon.security.hub_ctx, 100_000)  # a week of requests
            await _notes(daemon, 2, 20)
            await wait_for(lambda: _held(hub, key.device_id) == 23, what="the later records at the hub")
        shutil.rmtree(data)
        shutil.copytree(tmp_path / "image", data)
        async with edge(config) as daemon:
            record = (await daemon.submit([("note", {"text": "after the card was restored"})]))[0]
            assert record.seq == 23, daemon.status()["head"]
            await wait_for(lambda: _held(hub, key.device_id) == 24, what="the new record at the hub")
        info = hub.hub.store.get_device(key.device_id)
        assert info is not None and info.status == "active", info
    assert [r for r in caplog.records if "refuses this edge's OSCORE requests as replays" in r.getMessage()]


async def test_a_tap_that_waits_for_the_hub_keeps_the_time_it_was_made(tmp_path):
    """Signed once the wait for the hub is over, a tap still says when the staff tapped: a school gate whose uplink
    is down at boot records the delivery's arrival, not the end of the edge's wait."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a hub whose uplink is down: nothing answers
    silent.bind(("127.0.0.1", 0))
    config = edge_config(tmp_path / "edge", hub=f"coap://127.0.0.1:{silent.getsockname()[1]}", oscore=False)
    config = dataclasses.replace(config, sync=SyncConfig(mdns=False, interval_s=0.2, head_wait_s=2.0))
    now = [1_763_960_000]
    daemon = EdgeDaemon(config, clock=lambda: now[0])
    await daemon.start()
    try:
        assert daemon.tap is not None and daemon.key is not None and daemon.commit is not None
        assert daemon.commit.held
        await daemon.tap.tap(STAFF)
        tapped = now[0]
        tap = asyncio.create_task(daemon.tap.tap("04aa000000000001"))
        commit = daemon.commit
        await wait_for(lambda: commit.pending > 0, what="the tap waiting to be signed")
        now[0] += 600  # the wait: ten minutes of the edge's clock pass before it may sign
        shown = await tap
        assert shown and shown[-1]["status"] == "accepted", shown
        later = (await daemon.submit([("note", {"text": "after the wait"})]))[0]
        device = daemon.key.device_id
        own = daemon.store.state(device)
        assert own is not None
        records = [decode_record(raw) for raw in daemon.store.log_range(device, 0, own.length)]
    finally:
        await daemon.close()
        silent.close()
    scans = [r for r in records if r.kind == "scan"]
    assert [r.time for r in scans] == [tapped], [(r.seq, r.time) for r in records]
    assert records[later.seq].time == tapped + 600
    times = [r.time for r in records]
    assert times == sorted(times)  # the log's times never go back


async def test_a_lost_store_is_fetched_from_the_hub_before_genesis(tmp_path):
    """The key kept, the store gone: the edge's log comes back from the hub at start, where a new genesis forked
    it at seq 0."""
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub") as hub:
        key, config = await _synced(data, hub, 3)
        shutil.rmtree(data / "store")
        async with edge(config) as daemon:
            record = (await daemon.submit([("note", {"text": "on the fetched log"})]))[0]
            assert record.seq == 4, daemon.status()["head"]
            assert daemon.status()["head"]["check"]["fetched"] == 4
            await wait_for(lambda: _held(hub, key.device_id) == 5, what="the new record")
        info = hub.hub.store.get_device(key.device_id)
        assert info is not None and info.status == "active", info


async def test_records_signed_offline_on_an_old_copy_are_forked_not_confirmed_when_the_hub_is_back(tmp_path):
    """The hub down at start, the edge signs on the old copy's head; the hub, back, holds fewer records than the
    store now has but another one at a seq they share: its head is not in this log, so the head is `forked` (it
    said `confirmed`, and the next push was refused as a fork)."""
    data = tmp_path / "edge"
    port = free_coap()
    async with secure_hub(tmp_path / "hub", coap_port=port) as hub:
        key = await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url)
        async with edge(config) as daemon:
            await _notes(daemon, 0, 3)
            await wait_for(lambda: _held(hub, key.device_id) == 4, what="the first records at the hub")
        shutil.copytree(data / "store", tmp_path / "store.copy")
        async with edge(config) as daemon:
            await _notes(daemon, 3, 5)
            await wait_for(lambda: _held(hub, key.device_id) == 9, what="the later records at the hub")
    shutil.rmtree(data / "store")
    shutil.copytree(tmp_path / "store.copy", data / "store")
    config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, head_wait_s=600))
    async with edge(config) as daemon:  # the hub is down: nothing listens on its port
        await _notes(daemon, 3, 10)
        async with secure_hub(tmp_path / "hub", coap_port=port) as hub:
            seen = await _states_until_answered(daemon)
            assert seen == ["not_confirmed", "forked"], (seen, daemon.status()["head"])
            assert "jejak_edge_head_unconfirmed 1" in daemon.metrics_text()


def _replica(daemon, device: bytes) -> int:
    return daemon.store.log_length(device)


def keyfile_id(data) -> bytes:
    data.mkdir(parents=True, exist_ok=True)
    return keyfile.load_or_create(data / "device.key").device_id


async def _old_copy_and_neighbour(tmp_path, neighbour):
    """An edge's data dir holding an old copy of its store (4 records), and the `neighbour` the 9 it made since:
    (its config, with the neighbour as its peer and a hub whose host refuses; its device id; the 9 records)."""
    data = tmp_path / "edge"
    url = f"coap://127.0.0.1:{neighbour.coap_port}"
    config = edge_config(data, hub=f"coap://127.0.0.1:{free_udp()}", oscore=False, peers=(url,))
    device = keyfile_id(data)
    async with edge(config) as daemon:
        await _notes(daemon, 0, 3)
        await wait_for(lambda: _replica(neighbour, device) == 4, what="the first records at the neighbour")
    shutil.copytree(data / "store", tmp_path / "store.copy")
    async with edge(config) as daemon:
        await _notes(daemon, 3, 5)
        await wait_for(lambda: _replica(neighbour, device) == 9, what="the later records at the neighbour")
    shutil.rmtree(data / "store")
    shutil.copytree(tmp_path / "store.copy", data / "store")
    return config, device, neighbour.store.log_range(device, 0, 9)


@pytest.mark.parametrize("hub", ["refusing", "silent"])
async def test_an_old_copy_catches_up_from_a_neighbour_when_the_hub_is_down(tmp_path, caplog, hub):
    """The hub unreachable (its host refuses, or its uplink is down and nothing answers), a neighbour holds the
    records made after the copy: they are fetched from it and verified before a record is signed, and the new
    records follow them, where they forked the log. Only a hub's answer confirms the head."""
    caplog.set_level(logging.INFO, logger="jejak.edge")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1] if hub == "silent" else free_udp()
        async with edge(edge_config(tmp_path / "neighbour", oscore=False)) as neighbour:
            config, device, held = await _old_copy_and_neighbour(tmp_path, neighbour)
            config = dataclasses.replace(config, hub=dataclasses.replace(config.hub, address=f"coap://127.0.0.1:{port}"),
                                         sync=dataclasses.replace(config.sync, head_wait_s=10))
            async with edge(config) as daemon:
                record = (await daemon.submit([("note", {"text": "on the fetched log"})]))[0]
                assert record.seq == 9, daemon.status()["head"]
                assert daemon.store.log_range(device, 0, 9) == held
                head = daemon.status()["head"]
                assert head["state"] == "not_confirmed" and head["check"] is None, head
                assert [(c["source"], c["outcome"], c["fetched"]) for c in head["neighbours"]] == [
                    (f"coap://127.0.0.1:{neighbour.coap_port}", "caught_up", 5)], head
                assert "jejak_edge_head_unconfirmed 1" in daemon.metrics_text()
                if hub == "refusing":  # a silent hub holds the sync rounds for its request's timeout
                    await wait_for(lambda: _replica(neighbour, device) == 10, what="the new record at the neighbour")
            assert neighbour.store.blocked() == frozenset()  # no fork: the neighbour took the new record
    caught = [r for r in caplog.records if "records of this device's own log and the neighbour" in r.getMessage()]
    assert len(caught) == 1 and caught[0].levelno == logging.WARNING


@contextlib.asynccontextmanager
async def _forger(tmp_path):
    """An edge that made 4 records and stopped, and a neighbour serving them with 3 more signed by another key:
    (the edge's config, whose hub's host refuses, waiting for it up to 600 s; its device id; its 4 records; the
    neighbour's address)."""
    data = tmp_path / "edge"
    config = edge_config(data, hub=f"coap://127.0.0.1:{free_udp()}", oscore=False)
    async with edge(config) as daemon:
        await _notes(daemon, 0, 3)
        device = daemon.key.device_id
        genuine = daemon.store.log_range(device, 0, 4)
    forger = Holder(other_history(genuine, 4, Ed25519Signer.generate(), 3))  # forged: another key signs them
    site = resource.Site()
    add_sync_resources(site, forger)
    port = free_coap()
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    try:
        yield (dataclasses.replace(config, sync=dataclasses.replace(config.sync, head_wait_s=600)), device, genuine,
               f"coap://127.0.0.1:{port}")
    finally:
        await server.shutdown()


def _named_once(caplog) -> None:
    """The forging neighbour was named once, with the code of its records' refusal."""
    warned = [r for r in caplog.records if "offered records of this device's own log that are refused here"
              in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "INVALID_SIGNATURE" in warned[0].getMessage()


async def test_a_neighbour_offering_forged_records_of_the_own_log_is_refused_and_the_store_untouched(tmp_path,
                                                                                                     caplog):
    caplog.set_level(logging.INFO, logger="jejak.edge")
    async with _forger(tmp_path) as (config, device, genuine, url):
        config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, peers=(url,)))
        async with edge(config) as daemon:
            head = await wait_for(lambda: (h := daemon.status()["head"])["neighbours"] and h, what="the neighbour")
            assert daemon.store.log_range(device, 0, 10) == genuine
            assert daemon.store.blocked() == frozenset() and daemon.store.forks() == []
            (check,) = head["neighbours"]
            assert check["outcome"] == "refused" and check["length"] == 4, check
            assert check["detail"].startswith("INVALID_SIGNATURE: "), check
            record = (await daemon.submit([("note", {"text": "on the own head"})]))[0]
            assert record.seq == 4
            assert daemon.status()["head"]["state"] == "not_confirmed"
    _named_once(caplog)


async def test_records_signed_offline_on_a_current_store_are_confirmed_when_the_hub_is_back(tmp_path):
    """Not an old copy: the hub, back, holds fewer records than the store, and its last one (from its heads) is
    this log's at that seq. The head goes from `not_confirmed` to `confirmed`, and the records signed offline
    reach the hub."""
    data = tmp_path / "edge"
    port = free_coap()
    async with secure_hub(tmp_path / "hub", coap_port=port) as hub:
        key, config = await _synced(data, hub, 3)
    config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, head_wait_s=600))
    async with edge(config) as daemon:
        await _notes(daemon, 3, 4)
        async with secure_hub(tmp_path / "hub", coap_port=port) as hub:
            seen = await _states_until_answered(daemon)
            assert seen == ["not_confirmed", "confirmed"], (seen, daemon.status()["head"])
            check = daemon.status()["head"]["check"]
            assert (check["outcome"], check["length"]) == ("hub_behind", 8), check
            assert check["detail"] == "the hub holds 4 of the 8 records held here", check  # its head was compared
            assert "jejak_edge_head_unconfirmed 0" in daemon.metrics_text()
            await wait_for(lambda: _held(hub, key.device_id) == 8, what="the offline records")
            assert daemon.status()["head"]["state"] == "confirmed"


@contextlib.asynccontextmanager
async def _two_copies(tmp_path):
    """A hub holding 4 records of a device, and two cards of it running at once (a copy started while the first
    still runs), both heads confirmed: (hub, device id, first, second)."""
    data = tmp_path / "edge"
    async with secure_hub(tmp_path / "hub", oscore=False) as hub:
        key = await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url, oscore=False)
        async with edge(config) as daemon:
            await _notes(daemon, 0, 3)
            await wait_for(lambda: _held(hub, key.device_id) == 4, what="the first records")
        shutil.copytree(data, tmp_path / "copy")
        copy = dataclasses.replace(config, data_dir=str(tmp_path / "copy"))
        async with edge(config) as first, edge(copy) as second:
            for daemon in (first, second):
                await wait_for(lambda d=daemon: d.status()["head"]["state"] == "confirmed", what="the head confirmed")
            yield hub, key.device_id, first, second


async def test_a_copy_whose_push_the_hub_refuses_as_a_fork_says_forked(tmp_path, caplog):
    """Two cards of one device run at once: both heads are confirmed at start, then each signs its own records from
    the same seq. The hub takes the first's and refuses the second's as a fork; the second says `forked` (it said
    `confirmed`), and so does the first, whose records the hub kept, at its next round: the hub says it holds the
    device as forked (the first said `confirmed` until it signed again and the hub held that record back)."""
    caplog.set_level(logging.INFO, logger="jejak.edge")
    async with _two_copies(tmp_path) as (hub, device, first, second):
        await _notes(first, 3, 1)
        await wait_for(lambda: _held(hub, device) == 5, what="the first's record")
        await _notes(second, 10, 2)  # longer than the hub's copy: pushed
        await wait_for(lambda: second.status()["head"]["state"] == "forked", what="the second's push refused")
        assert second.status()["head"]["forked"].endswith("(FORK_DETECTED)"), second.status()["head"]
        assert "jejak_edge_head_unconfirmed 1" in second.metrics_text()
        await _forked_at_the_hub(first)
        info = hub.hub.store.get_device(device)
        assert info is not None and info.status == "forked", info
    refused = [r for r in caplog.records if "refuses this device's records as a fork" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR
    told = [r for r in caplog.records if "holds fork evidence against this device" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.ERROR, [r.getMessage() for r in told]
    assert "resolve-fork " + device.hex() in told[0].getMessage()


async def _forked_at_the_hub(daemon) -> None:
    """`daemon`, the copy whose records the hub kept, says `forked` without signing again."""
    length = daemon.store.log_length(daemon.key.device_id)
    head = await wait_for(lambda: (h := daemon.status()["head"])["state"] != "confirmed" and h,
                          what="the hub's word on the fork")
    assert head["state"] == "forked", head
    assert head["forked"].endswith("holds fork evidence against this device (forked at the hub)"), head
    assert "jejak_edge_head_unconfirmed 1" in daemon.metrics_text()
    assert daemon.store.log_length(daemon.key.device_id) == length


async def test_a_copy_that_signed_as_many_records_as_the_hub_holds_says_forked(tmp_path):
    """Two cards of one device run at once, and each signs one record at the same seq: the hub takes the first's,
    and the second then holds as many records as the hub, with another last one. Its next round pushes that record:
    the hub keeps the fork evidence, and the second says `forked` (it said `confirmed` until it signed again); so
    does the first, whose record the hub kept: the device's identity is forked at the hub."""
    async with _two_copies(tmp_path) as (hub, device, first, second):
        (mine,) = await _notes(first, 3, 1)
        await wait_for(lambda: _held(hub, device) == 5, what="the first's record")
        (theirs,) = await _notes(second, 10, 1)  # as many records as the hub holds
        head = await wait_for(lambda: (h := second.status()["head"])["state"] != "confirmed" and h,
                              what="the second's record pushed")
        assert head["state"] == "forked" and head["forked"].endswith("(FORK_DETECTED)"), head
        [(held, raw)] = hub.hub.store.forks()
        evidence = ForkEvidence.from_cbor(raw)
        assert (held, evidence.seq, evidence.first.id, evidence.second.id) == (device, 4, mine, theirs)
        assert _held(hub, device) == 5 and hub.hub.store.record_id(device, 4) == mine
        info = hub.hub.store.get_device(device)
        assert info is not None and info.status == "forked", info
        await _forked_at_the_hub(first)


async def test_a_fork_resolved_at_the_hub_is_cleared_on_the_copy_whose_branch_it_kept_without_a_restart(tmp_path,
                                                                                                          caplog):
    """The way out the forked copies name: stop the other card, and the hub's operator resolves the fork keeping
    the branch the hub holds. The copy whose records those are says `confirmed` again at its next round, and its
    next record is taken; before, it said `forked` until it was restarted."""
    caplog.set_level(logging.INFO, logger="jejak.edge")
    async with _two_copies(tmp_path) as (hub, device, first, second):
        await _notes(first, 3, 1)
        await wait_for(lambda: _held(hub, device) == 5, what="the first's record")
        await _notes(second, 10, 2)
        await wait_for(lambda: second.status()["head"]["state"] == "forked", what="the second's push refused")
        await _forked_at_the_hub(first)
        await second.close()  # the other card stopped
        hub.hub.resolve_fork(device)
        head = await wait_for(lambda: (h := first.status()["head"])["state"] != "forked" and h,
                              what="the first's word after the fork was resolved")
        assert head["state"] == "confirmed" and head["forked"] is None, head
        assert "jejak_edge_head_unconfirmed 0" in first.metrics_text()
        (after,) = await _notes(first, 20, 1)
        await wait_for(lambda: _held(hub, device) == 6, what="the first's next record taken")
        assert hub.hub.store.record_id(device, 5) == after
    resolved = [r for r in caplog.records if "the fork was resolved" in r.getMessage()]
    assert len(resolved) == 1 and resolved[0].levelno == logging.WARNING


async def test_the_copy_whose_branch_the_hub_did_not_keep_stays_forked_after_the_fork_is_resolved(tmp_path):
    """Each card signed one record at one seq and the hub kept the first's. The first card is the one stopped, and
    the fork is resolved keeping the branch the hub holds: the second, whose record at that seq is another, stays
    `forked` round after round, and the hub keeps the first's record."""
    async with _two_copies(tmp_path) as (hub, device, first, second):
        (mine,) = await _notes(first, 3, 1)
        await wait_for(lambda: _held(hub, device) == 5, what="the first's record")
        await _notes(second, 10, 1)
        await wait_for(lambda: second.status()["head"]["state"] == "forked", what="the second's record pushed")
        await first.close()
        hub.hub.resolve_fork(device)
        assert second.sync is not None
        rounds = second.sync.rounds
        await wait_for(lambda: second.sync.rounds >= rounds + 3, what="three rounds of the second after it")
        assert second.status()["head"]["state"] == "forked", second.status()["head"]
        assert hub.hub.store.record_id(device, 4) == mine


async def test_a_neighbour_found_after_the_start_is_asked_for_a_longer_copy_of_the_own_log(tmp_path, caplog):
    """mDNS finds a neighbour only after the edge released its records (the hub's host refused, no neighbour was
    known): while the hub has not confirmed the head, the neighbour is asked once, as at start, and the records it
    holds past the store's head are fetched and verified; the next record follows them."""
    caplog.set_level(logging.INFO, logger="jejak.edge")
    async with edge(edge_config(tmp_path / "neighbour", oscore=False)) as neighbour:
        config, device, held = await _old_copy_and_neighbour(tmp_path, neighbour)
        url = f"coap://127.0.0.1:{neighbour.coap_port}"
        # The hub's host refuses (the edge signs at once), and the neighbour is not configured: found later.
        config = dataclasses.replace(config, sync=dataclasses.replace(config.sync, peers=(), head_wait_s=600))
        async with edge(config) as daemon:
            assert daemon.commit is not None and daemon.sync is not None
            await wait_for(lambda: not daemon.commit.held, what="the records released")
            assert daemon.store.log_length(device) == 4 and daemon.status()["head"]["neighbours"] == []
            daemon.sync.add(url, "edge")  # what discovery does when it finds the neighbour
            head = await wait_for(lambda: (h := daemon.status()["head"])["neighbours"] and h, what="the neighbour")
            assert [(c["source"], c["outcome"], c["fetched"]) for c in head["neighbours"]] == [(url, "caught_up", 5)]
            assert head["state"] == "not_confirmed", head
            record = (await daemon.submit([("note", {"text": "on the fetched log"})]))[0]
            assert record.seq == 9
            assert daemon.store.log_range(device, 0, 9) == held
            await wait_for(lambda: _replica(neighbour, device) == 10, what="the new record at the neighbour")
        assert neighbour.store.blocked() == frozenset()
    caught = [r for r in caplog.records if "records of this device's own log and the neighbour" in r.getMessage()]
    assert len(caught) == 1 and caught[0].levelno == logging.WARNING


async def test_a_neighbour_found_after_the_start_offering_forged_records_is_named_and_not_asked_again(tmp_path,
                                                                                                     caplog):
    caplog.set_level(logging.INFO, logger="jejak.edge")
    async with _forger(tmp_path) as (config, device, genuine, url), edge(config) as daemon:
        agent = daemon.sync
        assert daemon.commit is not None and agent is not None
        await wait_for(lambda: not daemon.commit.held, what="the records released")
        agent.add(url, "edge")  # found by mDNS
        head = await wait_for(lambda: (h := daemon.status()["head"])["neighbours"] and h, what="the neighbour")
        (check,) = head["neighbours"]
        assert (check["source"], check["outcome"], check["length"]) == (url, "refused", 4), check
        assert check["detail"].startswith("INVALID_SIGNATURE: "), check
        assert daemon.store.log_range(device, 0, 10) == genuine
        assert daemon.store.blocked() == frozenset() and daemon.store.forks() == []
        agent.remove(url)  # gone from the LAN, and found again
        agent.add(url, "edge")
        rounds = agent.rounds
        await wait_for(lambda: agent.rounds >= rounds + 2, what="two rounds after it was found again")
        record = (await daemon.submit([("note", {"text": "on the own head"})]))[0]
        assert record.seq == 4 and daemon.status()["head"]["state"] == "not_confirmed"
    _named_once(caplog)
