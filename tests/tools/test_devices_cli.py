"""Enrollment as an operator does it: the edge's config says who it is, `jejak devices` approves and revokes,
and until then both sides say why the records are refused, once, with the fix."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiocoap
import pytest

from coap_server.sync import sync_once
from edge.sync import SyncAgent
from hub.app import start_hub
from hub.auth import hash_token
from hub.config import HubConfig
from tests.hub.conftest import enroll, new_device
from tests.hub.test_sync_coap import MemoryHolder
from tools import cli

TOKEN = "operator-secret-token"


async def jejak(*args: str) -> int:
    return await asyncio.to_thread(cli.main, list(args))


async def test_enroll_from_the_edge_config_then_approve_and_revoke(tmp_path: Path, hub, capsys, monkeypatch) -> None:
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                        operator_tokens=(hash_token(TOKEN),)), hub=hub)
    try:
        edge = tmp_path / "edge.toml"
        edge.write_text(f'site = "sppg-cibinong-1"\nname = "gate reader"\ndata_dir = "{tmp_path / "edge"}"\n'
                        '[checkpoint]\nrole = "school_gate"\n')
        uri = cli.enroll_uri(running.http_url, hub.signer.public_key)
        assert await jejak("enroll", "request", uri, "--config", str(edge)) == 0
        answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        device = answer["device"]
        known = hub.store.get_device(bytes.fromhex(device))
        assert known is not None and (known.site, known.role, known.name) == ("sppg-cibinong-1", "school_gate",
                                                                             "gate reader")
        # The token never on argv: without one the command says where to put it.
        monkeypatch.delenv("JEJAK_TOKEN", raising=False)
        assert await jejak("devices", "list", "--hub-url", running.http_url) == 2
        assert '"USAGE"' in capsys.readouterr().err
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        assert await jejak("devices", "list", "--hub-url", running.http_url, "--token-file", str(token_file)) == 0
        listing = capsys.readouterr()
        assert device in listing.out and "pending" in listing.out and "approve with" in listing.err
        monkeypatch.setenv("JEJAK_TOKEN", TOKEN)
        assert await jejak("devices", "approve", device, "--hub-url", running.http_url) == 0
        assert hub.store.get_device(bytes.fromhex(device)).status == "active"
        assert await jejak("devices", "revoke", device, "--hub-url", running.http_url) == 0
        assert hub.store.get_device(bytes.fromhex(device)).status == "revoked"
        monkeypatch.setenv("JEJAK_TOKEN", "wrong")
        assert await jejak("devices", "approve", device, "--hub-url", running.http_url) == 85
        assert "UNAUTHORIZED" in capsys.readouterr().err
    finally:
        await running.close()


async def test_list_follows_the_pages_to_every_device_or_the_first_n(tmp_path: Path, hub, clock, capsys,
                                                                    monkeypatch) -> None:
    ids = sorted(enroll(hub, new_device(clock)[0], clock, approve=i % 2 == 0).hex() for i in range(7))
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                        operator_tokens=(hash_token(TOKEN),)), hub=hub)
    monkeypatch.setenv("JEJAK_TOKEN", TOKEN)
    monkeypatch.setattr(cli, "DEVICE_PAGE", 3)  # 7 devices (and the hub's own log): three pages or more
    try:
        assert await jejak("devices", "list", "--hub-url", running.http_url, "--json") == 0
        listing = json.loads(capsys.readouterr().out)
        known = sorted(d.device_id.hex() for d in hub.store.devices())
        assert [d["device"] for d in listing] == known and set(ids) <= set(known)
        assert await jejak("devices", "list", "--hub-url", running.http_url, "--json", "--limit", "4") == 0
        assert [d["device"] for d in json.loads(capsys.readouterr().out)] == known[:4]
        assert await jejak("devices", "list", "--hub-url", running.http_url) == 0
        shown = capsys.readouterr()
        assert all(i in shown.out for i in ids) and "3 pending" in shown.err
        with pytest.raises(SystemExit) as refused:
            await jejak("devices", "list", "--hub-url", running.http_url, "--limit", "0")
        assert refused.value.code == 2 and "at least 1" in capsys.readouterr().err
    finally:
        await running.close()


async def test_refusals_are_logged_once_with_the_fix_on_both_sides(tmp_path: Path, hub, clock, caplog) -> None:
    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False),
                              hub=hub)
    signer, builder = new_device(clock)
    holder = MemoryHolder([builder.genesis(), builder.append("note", {"text": "n"})])
    agent = SyncAgent(holder, hubs=[running.coap_url], monotonic=lambda: 0.0)
    ctx = await aiocoap.Context.create_client_context()
    caplog.set_level(logging.INFO, logger="jejak")
    try:
        for _ in range(3):
            await agent.round(ctx)
        edge_lines = [r for r in caplog.records if "refuses this device's records" in r.getMessage()]
        assert len(edge_lines) == 1, [r.getMessage() for r in edge_lines]
        assert "UNKNOWN_DEVICE" in edge_lines[0].getMessage() and "jejak enroll request" in edge_lines[0].getMessage()
        hub_lines = [r for r in caplog.records if "keeps sending records" in r.getMessage()]
        assert len(hub_lines) == 1 and "jejak devices approve" in hub_lines[0].getMessage()
        shown = agent.targets[running.coap_url].to_json()  # what `edge status` lists
        assert shown["problems"] and "UNKNOWN_DEVICE" in shown["last_error"]
        report = await sync_once(ctx, running.coap_url, holder, pull=False)
        assert report.refused and report.refused[0].code == "UNKNOWN_DEVICE"
        # Enrolled but not yet approved: refused for another cause, which is not "accepted again".
        enroll(running.hub, signer, clock, approve=False)
        caplog.clear()
        await agent.round(ctx)
        said = [r.getMessage() for r in caplog.records if r.name == "jejak.edge.sync"]
        assert any("DEVICE_BLOCKED" in m for m in said) and not any("accepts this device" in m for m in said), said
        running.hub.approve(builder.device_id)
        caplog.clear()
        await agent.round(ctx)
        said = [r.getMessage() for r in caplog.records if r.name == "jejak.edge.sync"]
        assert any("accepts this device's records again (was DEVICE_BLOCKED)" in m for m in said), said
    finally:
        await ctx.shutdown()
        await running.close()


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch):
    monkeypatch.delenv("JEJAK_TOKEN_FILE", raising=False)


async def test_a_forked_device_is_listed_with_the_way_out_and_resolved_from_the_command_line(tmp_path: Path, hub,
                                                                                            clock, capsys) -> None:
    """An edge started on an old copy of its store forks its log; the operator sees it in `jejak devices list`
    and resolves it with `jejak devices resolve-fork` (it took a hand-made POST before)."""
    from ledger import ChainBuilder, verify_chain

    running = await start_hub(HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                                        operator_tokens=(hash_token(TOKEN),)), hub=hub)
    try:
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock)
        raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(3)]
        other = ChainBuilder(signer, clock=clock, boot=2, state=verify_chain(raws[:2]))
        assert hub.ingest(device_id, raws).accepted == 4
        assert hub.ingest(device_id, [other.append("note", {"text": "after a restore"}).raw]).fork
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        auth = ("--hub-url", running.http_url, "--token-file", str(token_file))
        assert await jejak("devices", "list", *auth) == 0
        listing = capsys.readouterr()
        assert "forked" in listing.out and "jejak devices resolve-fork <device>" in listing.err
        assert await jejak("devices", "resolve-fork", device_id.hex(), *auth) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "active"
        assert hub.store.get_device(device_id).status == "active"
    finally:
        await running.close()
