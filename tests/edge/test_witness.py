"""Edges witness their hub: after each sync an edge presents the hub's checkpoint it holds and takes the next one
only if the pinned key signed it and it extends the held one. A hub restarted on an older copy of its whole
data_dir is caught by the first edge that holds a checkpoint of the lost records: it stops signing. A forged or
inconsistent checkpoint is kept as evidence by the edge, which keeps the one it held."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.witness import EVIDENCE, HELD, OLDER
from hub.app import RunningHub, start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig as HubSettings
from hub.config import SecurityConfig as HubSecurityConfig
from hub.lastsigned import OlderStore
from ledger import Ed25519Signer, decode_checkpoint, sign_checkpoint, verify_checkpoints_consistent
from ledger.follow import verify_split_view
from tests.ports import free_coap
from tests.security.common import NOW, edge, edge_config, enroll_edge
from tests.wait import wait_for

WAIT = 120  # a busy 2-core machine runs many of these at once


@contextlib.asynccontextmanager
async def _hub(data: Path, coap_port: int) -> AsyncIterator[RunningHub]:
    """The hub on `data`, at the same CoAP address at each start (the edges know it by its address)."""
    config = HubSettings(data_dir=str(data), http_port=0, coap_port=coap_port, mdns=False, auto_approve=True,
                         checkpoint_interval=3600, security=HubSecurityConfig(oscore=True),
                         bridges=BridgeConfig(enabled=False))
    running = await start_hub(config, clock=lambda: NOW)
    try:
        yield running
    finally:
        await running.close()


def _length(hub: RunningHub, device: bytes) -> int:
    state = hub.hub.store.chain_state(device)
    return state.length if state is not None else 0


async def _notes(daemon, count: int, tag: str) -> None:
    await daemon.submit([("note", {"text": f"{tag} {i}"}) for i in range(count)])


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return bytes(resp.read())


def _held(daemon) -> int | None:
    held = daemon.status()["hub_witness"]["held"]
    return held["tree_size"] if held else None


async def test_an_edge_holds_the_hubs_checkpoint_and_advances_it_over_syncs(tmp_path):
    data = tmp_path / "edge"
    async with _hub(tmp_path / "hub", free_coap()) as hub:
        key = await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url)
        async with edge(config) as daemon:
            assert daemon.status()["hub_witness"]["state"] == "none"
            await _notes(daemon, 3, "first")
            await wait_for(lambda: _length(hub, key.device_id) == 4, WAIT, what="the records at the hub")
            first = hub.hub.checkpoint()
            assert first is not None
            await wait_for(lambda: _held(daemon) == first.tree_size, WAIT, what="the first checkpoint held")
            await _notes(daemon, 5, "second")
            await wait_for(lambda: _length(hub, key.device_id) == 9, WAIT, what="the later records at the hub")
            second = hub.hub.checkpoint()
            assert second is not None and second.tree_size > first.tree_size
            await wait_for(lambda: _held(daemon) == second.tree_size, WAIT, what="the second checkpoint held")
            status = daemon.status()["hub_witness"]
            assert status["state"] == "held" and status["evidence"] is None and status["checked"] >= 2, status
            assert status["held"]["root"] == second.root.hex()
            metrics = daemon.metrics_text()
            assert "jejak_edge_hub_split_view 0" in metrics and "jejak_edge_hub_store_older 0" in metrics
        # Kept durably: the file is the hub's signed checkpoint, and a restarted edge starts from it.
        kept = decode_checkpoint(bytes.fromhex(json.loads((data / HELD).read_text())["cose"]))
        assert kept.raw == second.raw
        verify_checkpoints_consistent(first, kept, hub.hub.consistency(first.tree_size, kept.tree_size),
                                      hub.hub.signer.public_key)
        async with edge(config) as daemon:
            assert _held(daemon) == second.tree_size
            await _notes(daemon, 2, "third")
            await wait_for(lambda: _length(hub, key.device_id) == 11, WAIT, what="the third records at the hub")
            third = hub.hub.checkpoint()
            assert third is not None
            await wait_for(lambda: _held(daemon) == third.tree_size, WAIT, what="the third checkpoint held")


async def test_a_hub_restarted_on_an_older_copy_of_its_data_dir_is_caught_by_the_first_edge_sync(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    hub_data, port = tmp_path / "hub", free_coap()
    a_data, b_data = tmp_path / "a", tmp_path / "b"
    async with _hub(hub_data, port) as hub:
        a = await enroll_edge(a_data, hub, site="sppg-01")
        b = await enroll_edge(b_data, hub, site="sppg-02")
        a_config, b_config = edge_config(a_data, hub=hub.coap_url), edge_config(b_data, hub=hub.coap_url)
        for config, device in ((a_config, a.device_id), (b_config, b.device_id)):
            async with edge(config) as daemon:
                await _notes(daemon, 2, "before the copy")
                await wait_for(lambda d=device: _length(hub, d) == 3, WAIT, what="the records at the hub")
        assert hub.hub.checkpoint() is not None
    shutil.copytree(hub_data, tmp_path / "hub.copy")  # the backup of the whole data_dir, taken while stopped

    async with _hub(hub_data, port) as hub, edge(a_config) as daemon:
        await _notes(daemon, 5, "after the copy")
        await wait_for(lambda: _length(hub, a.device_id) == 8, WAIT, what="A's later records at the hub")
        signed = hub.hub.checkpoint()
        assert signed is not None
        await wait_for(lambda: _held(daemon) == signed.tree_size, WAIT, what="A holding the checkpoint")
    shutil.rmtree(hub_data)
    shutil.copytree(tmp_path / "hub.copy", hub_data)  # restored: its last-checkpoint.json agrees with its store

    async with _hub(hub_data, port) as hub:
        assert len(hub.hub.tree) < signed.tree_size  # the check at start cannot see it
        async with edge(b_config) as daemon:  # B's new records take the places A's had
            await _notes(daemon, 6, "after the restore")
            await wait_for(lambda: _length(hub, b.device_id) == 9, WAIT, what="B's new records at the hub")
        caplog.clear()
        async with edge(a_config) as daemon:
            await wait_for(lambda: hub.hub.signing_stopped is not None, WAIT, what="the hub to stop signing")
            await wait_for(lambda: daemon.status()["hub_witness"]["state"] == "hub_store_older", WAIT,
                           what="the edge to say the hub runs on an older copy")
            # Records are still taken: A's re-pushed ones are all at the hub.
            await wait_for(lambda: _length(hub, a.device_id) == 8, WAIT, what="A's records at the hub again")
            assert hub.hub.checkpoint() is None
            stopped = json.loads(await asyncio.to_thread(_get, f"{hub.http_url}/api/status"))["signing_stopped"]
            assert stopped["code"] == "HUB_STORE_OLDER" and str(signed.tree_size) in stopped["message"], stopped
            assert "jejak_hub_signing_stopped 1.0" in (await asyncio.to_thread(_get, f"{hub.http_url}/metrics")).decode()
            # No false alarm about the edge itself: its own head is confirmed, and no split view is recorded.
            status = daemon.status()
            assert status["head"]["state"] == "confirmed", status["head"]
            assert status["hub_witness"]["evidence"] is None and not (a_data / EVIDENCE).exists()
            assert "jejak_edge_hub_store_older 1" in daemon.metrics_text()
            assert "jejak_edge_hub_split_view 0" in daemon.metrics_text()
            kept = json.loads((a_data / OLDER).read_text())
            assert kept["tree_size"] == signed.tree_size and kept["root"] == signed.root.hex()
    critical = [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert len(critical) == 1 and "signing stopped" in critical[0].getMessage(), [r.getMessage() for r in critical]
    edge_errors = [r for r in caplog.records if r.name.startswith("jejak.edge") and r.levelno >= logging.ERROR]
    assert edge_errors == [], [r.getMessage() for r in edge_errors]
    # The presented checkpoint is now the latest signed one on record: a restart refuses the store as well.
    with pytest.raises(OlderStore):
        async with _hub(hub_data, port):
            pass


@pytest.mark.parametrize("shown", ["other_key", "other_root"])
async def test_a_forged_or_inconsistent_checkpoint_is_kept_as_evidence_and_the_held_one_stays(tmp_path, caplog,
                                                                                               shown):
    caplog.set_level(logging.INFO, logger="jejak.edge")
    data = tmp_path / "edge"
    async with _hub(tmp_path / "hub", free_coap()) as hub:
        key = await enroll_edge(data, hub)
        config = edge_config(data, hub=hub.coap_url)
        async with edge(config) as daemon:
            await _notes(daemon, 3, "first")
            await wait_for(lambda: _length(hub, key.device_id) == 4, WAIT, what="the records at the hub")
            held = hub.hub.checkpoint()
            assert held is not None
            await wait_for(lambda: _held(daemon) == held.tree_size, WAIT, what="the checkpoint held")
            # What answers for the hub now shows another log: a checkpoint signed with another key, or one signed
            # with the hub's key whose root its consistency proof does not join to the held one.
            signer = Ed25519Signer.generate() if shown == "other_key" else hub.hub.signer
            bad = sign_checkpoint(signer, tree_size=held.tree_size + 2, root=bytes(range(32)), time=NOW)
            hub.hub._checkpoints.append(bad)
            await _notes(daemon, 2, "second")  # a sync, then the witness's request
            await wait_for(lambda: daemon.status()["hub_witness"]["state"] == "split_view", WAIT,
                           what="the split view reported")
            await wait_for(lambda: any("still shows" in r.getMessage() for r in caplog.records), WAIT,
                           what="a later sync meeting it again")
            status = daemon.status()["hub_witness"]
            assert status["held"]["tree_size"] == held.tree_size and status["held"]["root"] == held.root.hex()
            assert status["evidence_cause"] == ("INVALID_CHECKPOINT" if shown == "other_key" else "SPLIT_VIEW")
            assert "jejak_edge_hub_split_view 1" in daemon.metrics_text()
        evidence = json.loads((data / EVIDENCE).read_text())
        assert evidence["code"] == "HUB_SPLIT_VIEW"
        assert evidence["held"]["cose"] == held.raw.hex() and evidence["shown"]["cose"] == bad.raw.hex()
        if shown == "other_root":  # evidence anyone holding the hub's key can check (FORMAT.md §10.1)
            verify_split_view(bytes.fromhex(evidence["split_view"]), hub.hub.signer.public_key)
        assert decode_checkpoint(bytes.fromhex(json.loads((data / HELD).read_text())["cose"])).raw == held.raw
        async with edge(config) as daemon:  # the evidence outlives a restart, and is not said again
            assert daemon.status()["hub_witness"]["state"] == "split_view"
            assert "jejak_edge_hub_split_view 1" in daemon.metrics_text()
    said = [r for r in caplog.records if r.levelno >= logging.ERROR and "HUB_SPLIT_VIEW" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


async def _neighbours(*daemons) -> None:
    """Each edge finds the others (as mDNS would)."""
    for daemon in daemons:
        for other in daemons:
            if other is not daemon:
                daemon.sync.add(f"coap://127.0.0.1:{other.coap_port}", "edge")


async def test_two_edges_shown_two_views_by_one_hub_key_find_the_split_view_when_they_sync(tmp_path, caplog):
    """Edges that sync with each other compare the hub checkpoints they hold. On one hub they are one log (the
    hub's consistency proof joins them). Then the hub's data dir is copied and runs twice under its one key, each
    copy serving one edge and signing its own records: each edge's view is consistent in itself, and the hub's
    witness exchange finds nothing; the edges find the split view when they next sync with each other, and
    each keeps both checkpoints as evidence."""
    from tests.security.common import secure_hub

    caplog.set_level(logging.INFO, logger="jejak.edge")
    port = free_coap()
    async with secure_hub(tmp_path / "hub", oscore=False, coap_port=port) as hub:
        keys = [await enroll_edge(tmp_path / name, hub) for name in ("a", "b")]
        configs = [edge_config(tmp_path / name, hub=hub.coap_url, oscore=False) for name in ("a", "b")]
        async with edge(configs[0]) as a, edge(configs[1]) as b:
            await _notes(a, 1, "a")
            await _notes(b, 2, "b")
            await wait_for(lambda: [_length(hub, k.device_id) for k in keys] == [2, 3], WAIT, what="the records")
            first = hub.hub.checkpoint()
            assert first is not None
            await wait_for(lambda: _held(a) == _held(b) == first.tree_size, WAIT, what="the checkpoint held")
            await _notes(a, 1, "a later")  # the hub's next checkpoint is larger: a proof joins the two
            await wait_for(lambda: _length(hub, keys[0].device_id) == 3, WAIT, what="the later record")
            second = hub.hub.checkpoint()
            assert second is not None
            await wait_for(lambda: _held(a) == second.tree_size, WAIT, what="the later checkpoint held by a")
            await _neighbours(a, b)
            await wait_for(lambda: b.status()["hub_witness"]["compared"] >= 1, WAIT, what="b comparing a's")
            await wait_for(lambda: a.status()["hub_witness"]["compared"] >= 1, WAIT, what="a comparing b's")
            for daemon in (a, b):
                assert daemon.status()["hub_witness"]["state"] == "held", daemon.status()["hub_witness"]
            assert _held(b) == second.tree_size  # a's checkpoint extends b's: held from then on
    shutil.copytree(tmp_path / "hub", tmp_path / "hub2")
    other = free_coap()
    async with secure_hub(tmp_path / "hub", oscore=False, coap_port=port) as hub, \
            secure_hub(tmp_path / "hub2", oscore=False, coap_port=other) as hub2:
        assert hub.hub.signer.public_key == hub2.hub.signer.public_key
        configs[1] = edge_config(tmp_path / "b", hub=hub2.coap_url, oscore=False)
        async with edge(configs[0]) as a, edge(configs[1]) as b:
            for daemon, running, key in ((a, hub, keys[0]), (b, hub2, keys[1])):  # each copy takes its edge's record
                before = _length(running, key.device_id)
                await _notes(daemon, 1, "split")
                await wait_for(lambda r=running, k=key, n=before: _length(r, k.device_id) == n + 1, WAIT,
                               what="the record at its copy of the hub")
            views = [hub.hub.checkpoint(), hub2.hub.checkpoint()]
            assert views[0] is not None and views[1] is not None
            assert views[0].tree_size == views[1].tree_size and views[0].root != views[1].root
            await wait_for(lambda: (_held(a), _held(b)) == (views[0].tree_size,) * 2, WAIT, what="each view held")
            assert [d.status()["hub_witness"]["state"] for d in (a, b)] == ["held", "held"]
            await _neighbours(a, b)
            for daemon, name in ((a, "a"), (b, "b")):
                await wait_for(lambda d=daemon, n=name: d.status()["hub_witness"]["state"] == "split_view"
                               and (tmp_path / n / EVIDENCE).exists(), WAIT, what="the split view found and kept")
                assert "jejak_edge_hub_split_view 1" in daemon.metrics_text()
    for name, view, seen in (("a", views[0], views[1]), ("b", views[1], views[0])):
        evidence = json.loads((tmp_path / name / EVIDENCE).read_text())
        assert (evidence["code"], evidence["cause"]) == ("HUB_SPLIT_VIEW", "SPLIT_VIEW"), evidence
        assert evidence["held"]["cose"] == view.raw.hex() and evidence["shown"]["cose"] == seen.raw.hex()
        assert evidence["via"].startswith("coap://127.0.0.1:")
        assert verify_split_view(bytes.fromhex(evidence["split_view"]), hub.hub.signer.public_key).conclusive
        assert decode_checkpoint(bytes.fromhex(json.loads((tmp_path / name / HELD).read_text())["cose"])).raw == \
            view.raw
    said = [r for r in caplog.records if r.levelno >= logging.ERROR and "HUB_SPLIT_VIEW" in r.getMessage()]
    assert len(said) == 2 and all("showed the neighbour coap://" in r.getMessage() for r in said), said
