"""OSCORE on the wire: an enrolled edge pushes to the hub over contexts derived at enrollment; unprotected
requests are refused with OSCORE_REQUIRED; peers read only what the policy allows."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket

import aiocoap
import aiohttp
import cbor2

from edge.daemon import EdgeDaemon
from edge.security import EdgeSecurity, _enroll_at
from ledger.enroll import make_enroll_request, read_enroll_request
from ledger.sync import encode_heads, encode_records
from tests.ports import free_coap, free_tcp
from tests.wait import wait_for

from .common import NOW, coap, edge, edge_config, enroll_edge, secure_hub


async def test_enrolled_edge_pushes_over_oscore_and_plain_requests_are_refused(tmp_path):
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        assert (tmp_path / "edge" / "oscore" / "hub" / "secret.json").stat().st_mode & 0o777 == 0o600
        async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
            await daemon.submit([("note", {"text": "over oscore"})])
            assert await wait_for(lambda: (s := hub.hub.store.chain_state(key.device_id)) is not None
                                  and s.length == 2), daemon.status()["sync"]
            ctx = await aiocoap.Context.create_client_context()
            try:
                # An unprotected push to the hub: refused before anything is verified or stored.
                raws = daemon.store.log_range(key.device_id, 0, 2)
                code, body = await coap(ctx, aiocoap.POST, f"{hub.coap_url}/sync/records",
                                        encode_records(key.device_id, 0, raws))
                assert (code, body["code"]) == ("UNAUTHORIZED", "OSCORE_REQUIRED")
                code, body = await coap(ctx, aiocoap.POST, f"{hub.coap_url}/sync/heads", encode_heads([]))
                assert body["code"] == "OSCORE_REQUIRED"
                # The edge's own resources refuse unprotected reads and submissions too.
                edge_url = f"coap://127.0.0.1:{daemon.coap_port}"
                code, body = await coap(ctx, aiocoap.POST, f"{edge_url}/submit",
                                        cbor2.dumps({"kind": "note", "body": {"text": "spoof"}}))
                assert (code, body["code"]) == ("UNAUTHORIZED", "OSCORE_REQUIRED")
                code, body = await coap(ctx, aiocoap.GET,
                                        f"{edge_url}/sync/records?d={key.device_id.hex()}&from=0&to=5")
                assert body["code"] == "OSCORE_REQUIRED"
                code, _ = await coap(ctx, aiocoap.GET, f"{edge_url}/.well-known/core")
                assert code == "CONTENT"
            finally:
                await ctx.shutdown()
            assert daemon.store.state(key.device_id).length == 2  # the spoofed submission stored nothing
            assert hub.security.policy.refused["OSCORE_REQUIRED"] >= 2
            assert daemon.security.policy.refused["OSCORE_REQUIRED"] >= 2


async def test_an_edge_enrolls_again_when_its_hub_lost_its_oscore_state(tmp_path, caplog):
    """A hub whose store kept its devices approved (PostgreSQL's, say) but whose data_dir lost the OSCORE contexts
    answers each edge's protected requests with "context not found". The edge enrolls again on its own, with a new
    signed request to the pinned hub: the hub grants a new context at once, the edge believes the grant by the
    pinned key, and its records arrive again, with no visit to the device."""
    http, coap_port = free_tcp(), free_coap()
    async with secure_hub(tmp_path / "hub", http_port=http, coap_port=coap_port) as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
            await daemon.submit([("note", {"text": "before"})])
            await wait_for(lambda: (s := hub.hub.store.chain_state(key.device_id)) is not None and s.length == 2,
                           what="the first note at the hub")
        hub_url = hub.coap_url
        enrolled = hub.hub.store.get_device(key.device_id)
    secret = tmp_path / "edge" / "oscore" / "hub" / "secret.json"
    before = secret.read_bytes()
    shutil.copytree(tmp_path / "hub" / "oscore", tmp_path / "old-oscore")
    shutil.rmtree(tmp_path / "hub" / "oscore")  # lost; the store still holds the device, approved
    caplog.set_level(logging.WARNING, logger="jejak")
    async with secure_hub(tmp_path / "hub", http_port=http, coap_port=coap_port) as hub:
        assert hub.coap_url == hub_url and key.device_id not in hub.security.contexts
        async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
            await daemon.submit([("note", {"text": "after the hub lost its contexts"})])
            await wait_for(lambda: hub.hub.store.chain_state(key.device_id).length == 3,
                           what="the note sent after the loss at the hub")
        assert key.device_id in hub.security.contexts
        assert hub.hub.store.get_device(key.device_id) == enrolled  # the same device, approved as it was
    assert secret.read_bytes() != before  # new keys: no sequence number of the old ones is used again
    again = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "enrolled_again"]
    assert len(again) == 1 and again[0].fields["status"] == "active", [r.getMessage() for r in again]
    # The hub's oscore directory put back from an old copy holds the keys of before: the edge's requests fail to
    # decrypt there ("Decryption failed"), and the edge enrolls again with a request dated after its last.
    shutil.rmtree(tmp_path / "hub" / "oscore")
    shutil.copytree(tmp_path / "old-oscore", tmp_path / "hub" / "oscore")
    async with (secure_hub(tmp_path / "hub", http_port=http, coap_port=coap_port) as hub,
                edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon):
        await daemon.submit([("note", {"text": "after the old copy came back"})])
        await wait_for(lambda: hub.hub.store.chain_state(key.device_id).length == 4,
                       what="the note sent after the old copy came back at the hub")
    again = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "enrolled_again"]
    assert len(again) == 2


async def test_an_edge_that_lost_its_own_context_enrolls_again_by_its_pin(tmp_path):
    """An edge whose oscore/hub is gone (a card restored without it) but whose key and pinned hub are kept enrolls
    again on its own, as a technician would with the QR code, and its records flow again."""
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        shutil.rmtree(tmp_path / "edge" / "oscore" / "hub")
        async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
            await daemon.submit([("note", {"text": "after the card lost its context"})])
            await wait_for(lambda: (s := hub.hub.store.chain_state(key.device_id)) is not None and s.length == 2,
                           what="the note at the hub")
        assert (tmp_path / "edge" / "oscore" / "hub" / "secret.json").exists()


async def test_an_old_enrollment_request_sent_again_does_not_put_old_keys_back(tmp_path):
    """Whoever saw an edge's enrollment request may send it again. After the edge enrolled again (new keys), the
    old request is refused (ENROLL_STALE, 409) and the hub keeps the keys in force; each request the edge sends
    is dated after its last, even with its clock set back."""
    async with secure_hub(tmp_path / "hub") as hub:
        data = tmp_path / "edge"
        key = await enroll_edge(data, hub)
        first = json.loads((data / "hub.pin").read_text())["time"]
        config = edge_config(data, hub=hub.coap_url)
        security = EdgeSecurity(config, key)
        try:
            sent: list[bytes] = []

            def post(url: str, body: bytes) -> bytes:
                sent.append(body)
                return hub.security.grant(body)

            answer = await asyncio.to_thread(_enroll_at_with, security, post, first - 3600)  # clock set back
            assert answer["status"] == "active"
        finally:
            security.close()
        assert read_enroll_request(sent[0]).time == first + 1
        assert json.loads((data / "hub.pin").read_text())["time"] == first + 1
        held = (tmp_path / "hub" / "oscore" / key.device_id.hex() / "secret.json").read_bytes()
        old = make_enroll_request(key, site="sppg-01", role="kitchen_exit", name="sppg-01", time=first,
                                  hub_id=hub.hub.hub_id)
        async with aiohttp.ClientSession() as http, http.post(f"{hub.http_url}/api/enroll/grant", data=old) as resp:
            assert resp.status == 409
            assert (await resp.json())["error"]["code"] == "ENROLL_STALE"
        assert (tmp_path / "hub" / "oscore" / key.device_id.hex() / "secret.json").read_bytes() == held
        async with edge(config) as daemon:  # the edge still talks to the hub with the keys in force
            await daemon.submit([("note", {"text": "still heard"})])
            await wait_for(lambda: (s := hub.hub.store.chain_state(key.device_id)) is not None and s.length == 2,
                           what="the note at the hub")


def _enroll_at_with(security, post, now: int) -> dict:
    pin = security.pin
    return _enroll_at(pin["url"], bytes.fromhex(pin["id"]), bytes.fromhex(pin["key"]), security.key,
                      security.config.data_path, site="sppg-01", role="kitchen_exit", name="sppg-01", post=post,
                      now=now)


async def test_peers_read_by_policy_over_their_pair_context(tmp_path):
    from edge import keys as keyfile

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a_key = keyfile.load_or_create(a_dir / "device.key")
    b_key = keyfile.load_or_create(b_dir / "device.key")
    # A lets B read only B's own log and A's own log; B lets A read everything.
    a_cfg = edge_config(a_dir, peer_keys=(b_key.public_key.hex(),), read=("*:self", "*:own"))
    async with edge(a_cfg) as a:
        await a.submit([("note", {"text": "a1"})])
        a_url = f"coap://127.0.0.1:{a.coap_port}"
        b_cfg = edge_config(b_dir, peers=(a_url,), peer_keys=(f"{a_url} {a_key.public_key.hex()}",))
        async with edge(b_cfg) as b:
            assert await wait_for(lambda: (s := b.store.state(a_key.device_id)) is not None and s.length == 2)
            # A third device's log on A: B may not see it.
            from tests.edge.common import peer_log

            _, recs = peer_log(77, 1)
            third = recs[0].device_id
            a.holder.receive(third, [r.raw for r in recs])
            ctx = await aiocoap.Context.create_client_context()
            ctx.client_credentials[f"{a_url}/*"] = b.security.peer_ctx[a_key.device_id]
            try:
                code, body = await coap(ctx, aiocoap.GET, f"{a_url}/sync/records?d={third.hex()}&from=0&to=2")
                assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")
                code, _ = await coap(ctx, aiocoap.GET,
                                     f"{a_url}/sync/records?d={a_key.device_id.hex()}&from=0&to=2")
                assert code == "CONTENT"
                from ledger.sync import decode_heads

                msg = aiocoap.Message(code=aiocoap.POST, uri=f"{a_url}/sync/heads", payload=encode_heads([]),
                                      content_format=60)
                resp = await ctx.request(msg).response
                seen = {h.device_id for h in decode_heads(resp.payload)}
                assert a_key.device_id in seen and third not in seen
            finally:
                await ctx.shutdown()
            assert b.store.state(third) is None



async def test_a_phone_submits_but_neither_reads_by_a_wildcard_rule_nor_pushes_records(tmp_path):
    """A phone (`phone_keys`) is the least trusted key, in a pocket: `*:own`, meant for neighbouring edges, let it
    read every staff card the edge logged, and a push let it fill the edge's store with logs of made-up keys."""
    from edge import keys as keyfile
    from tests.edge.common import peer_log

    a_dir, p_dir = tmp_path / "a", tmp_path / "phone"
    a_dir.mkdir()
    p_dir.mkdir()
    a_key = keyfile.load_or_create(a_dir / "device.key")
    phone_key = keyfile.load_or_create(p_dir / "device.key")
    async with edge(edge_config(a_dir, phone_keys=(phone_key.public_key.hex(),), read=("*:own",))) as a:
        await a.submit([("note", {"text": "a1"})])
        a_url = f"coap://127.0.0.1:{a.coap_port}"
        # The phone's end of the pair context, as a peer's is derived.
        async with edge(edge_config(p_dir, peer_keys=(f"{a_url} {a_key.public_key.hex()}",))) as phone:
            ctx = await aiocoap.Context.create_client_context()
            ctx.client_credentials[f"{a_url}/*"] = phone.security.peer_ctx[a_key.device_id]
            try:
                own = a_key.device_id.hex()
                code, body = await coap(ctx, aiocoap.GET, f"{a_url}/sync/records?d={own}&from=0&to=2")
                assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")
                code, body = await coap(ctx, aiocoap.GET, f"{a_url}/log/{own}/records")
                assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")
                _, recs = peer_log(91, 3)
                made_up = encode_records(recs[0].device_id, 0, [r.raw for r in recs])
                code, body = await coap(ctx, aiocoap.POST, f"{a_url}/sync/records", made_up)
                assert (code, body["code"]) == ("FORBIDDEN", "NOT_AUTHORIZED")
                assert a.store.state(recs[0].device_id) is None
                code, _ = await coap(ctx, aiocoap.POST, f"{a_url}/submit",
                                     cbor2.dumps({"kind": "note", "body": {"text": "from the phone"}}))
                assert code == "CREATED"
            finally:
                await ctx.shutdown()


async def test_sync_loop_stops_when_cancelled_as_the_hub_answers(tmp_path):
    """Closing an edge while the hub's OSCORE answer to a sync request is on its way stops the sync loop at
    the first cancel. Python 3.11's wait_for drops a cancel that arrives in the same step as what it awaits
    (CPython gh-86296); the loop then carried on and the daemon's close waited for it forever. Each trial
    cancels one loop step later than the last, so some trial lands in that step."""
    async with secure_hub(tmp_path / "hub") as hub:
        await enroll_edge(tmp_path / "edge", hub)
        loop = asyncio.get_running_loop()
        asked = asyncio.Event()
        heads_page = hub.hub.heads_page

        def watched_heads(after, limit):  # type: ignore[no-untyped-def]
            loop.call_soon_threadsafe(asked.set)  # the hub's sync resource calls this in a worker thread
            return heads_page(after, limit)

        hub.hub.heads_page = watched_heads  # type: ignore[method-assign]
        for steps in range(16):
            asked.clear()
            daemon = EdgeDaemon(edge_config(tmp_path / "edge", hub=hub.coap_url), clock=lambda: NOW)
            await daemon.start()
            sync = daemon.supervisor.tasks["sync"]
            try:
                await asyncio.wait_for(asked.wait(), 10)  # the hub is answering the edge's POST /sync/heads
                for _ in range(steps):
                    await asyncio.sleep(0)
                sync.cancel()  # what the daemon's close does first
                done, _ = await asyncio.wait({sync}, timeout=10)
                assert done, f"the sync loop ran on after a cancel {steps} loop steps after the hub took the " \
                             f"request; sync: {daemon.status()['sync']}"
            finally:
                while not sync.done():  # after a failed trial: stop it, so the close below can finish
                    sync.cancel()
                    await asyncio.wait({sync}, timeout=1)
                await asyncio.wait_for(daemon.close(), 10)


async def test_edge_closes_while_its_oscore_request_to_a_silent_hub_is_unanswered(tmp_path):
    """The hub's address answers nothing: the sync round sits in its OSCORE request when the edge closes. The
    close returns, and no OSCORE request task of aiocoap is left waiting for an answer."""
    async with secure_hub(tmp_path / "hub") as hub:
        await enroll_edge(tmp_path / "edge", hub)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(10)
        config = edge_config(tmp_path / "edge", hub=f"coap://127.0.0.1:{silent.getsockname()[1]}")
        daemon = EdgeDaemon(config, clock=lambda: NOW)
        await daemon.start()
        closing = None
        try:
            await asyncio.to_thread(silent.recvfrom, 2048)  # the edge's first request: it stays unanswered
            closing = asyncio.create_task(daemon.close())
            done, _ = await asyncio.wait({closing}, timeout=10)
            assert done, f"close did not return within 10 s; sync: {daemon.status()['sync']}"
            closing.result()
        finally:
            if closing is None:
                await daemon.close()
    await wait_for(lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("OSCORE request")],
                   what="the OSCORE request tasks to end")


async def test_an_edge_not_enrolled_says_once_why_the_hub_gets_nothing(tmp_path, caplog):
    """With OSCORE on and no context with the hub (not enrolled yet), nothing is sent: the edge says so once, with
    the fix, however many rounds pass (it kept its records in silence before)."""
    caplog.set_level(logging.WARNING, logger="jejak.edge.security")
    async with secure_hub(tmp_path / "hub") as hub, edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
        agent = daemon.sync
        assert agent is not None
        target = next(iter(agent.targets.values()))
        await wait_for(lambda: any(hub.coap_url in r.getMessage() for r in caplog.records), what="the warning")
        skips: list[float] = []
        await wait_for(lambda: skips.append(target.next_try) or len(set(skips)) >= 4, what="three more rounds")
        told = [r.getMessage() for r in caplog.records if hub.coap_url in r.getMessage()]
        assert len(told) == 1, told
        assert "no OSCORE context" in told[0] and "jejak enroll request" in told[0], told
        assert daemon.status()["sync"][0]["last_error"].startswith("OSCORE_REQUIRED")
        assert daemon.key is not None and hub.hub.store.chain_state(daemon.key.device_id) is None


async def test_edge_status_of_an_oscore_edge_says_how_to_read_it(tmp_path, capsys):
    """`jejak edge status --url` to an edge that answers only over OSCORE: OSCORE_REQUIRED (exit 72) with the way
    that works, not an INTERNAL error asking to be reported."""
    from edge.cli import main

    async with edge(edge_config(tmp_path / "edge")) as daemon:
        code = await asyncio.to_thread(main, ["status", "--url", f"coap://127.0.0.1:{daemon.coap_port}"])
    error = json.loads(capsys.readouterr().err.strip().splitlines()[-1])["error"]
    assert code == 72 and error["code"] == "OSCORE_REQUIRED", error
    assert "jejak edge status --config" in error["hint"]


def test_an_error_answer_becomes_the_error_of_its_code():
    """What a server answered keeps its code's exit code in a command; a code nothing here declares is INTERNAL."""
    from coap_server.errors import CoapError, Internal, TooManyConnections

    err = CoapError("TOO_MANY_CONNECTIONS", "full", hint="later").coded("coap://x")
    assert isinstance(err, TooManyConnections) and err.exit_code == 78
    assert err.message == "coap://x answered TOO_MANY_CONNECTIONS: full" and err.hint == "later"
    assert isinstance(CoapError("NO_SUCH_CODE", "?").coded("coap://x"), Internal)


async def test_restore_fetches_the_own_log_over_oscore_from_a_hub_that_requires_it(tmp_path, capsys):
    """`python -m edge.restore` after a corrupt store, against a hub with OSCORE on: the log comes back over the
    context enrollment set up (the hub answered the plain request 4.01 and the restore found no source). A try
    that finds no source leaves no store behind to stop the next one."""
    from edge import restore
    from tests.ports import free_udp

    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        async with edge(edge_config(tmp_path / "edge", hub=hub.coap_url)) as daemon:
            await daemon.submit([("note", {"text": "kept by the hub"})])
            await wait_for(lambda: (s := hub.hub.store.chain_state(key.device_id)) is not None and s.length == 2,
                           what="the hub to hold the log")
        store = tmp_path / "edge" / "store"
        store.rename(tmp_path / "edge" / "store.corrupt")
        toml = tmp_path / "edge.toml"
        toml.write_text(f'data_dir = "{tmp_path / "edge"}"\nsite = "sppg-01"\nsensors = []\n[hub]\naddress = '
                        f'"{hub.coap_url}"\n[sync]\nmdns = false\n[security]\noscore = true\n')
        code = await asyncio.to_thread(restore.main, ["--config", str(toml), "--from",
                                                      f"coap://127.0.0.1:{free_udp()}"])
        assert code == 33 and not store.exists(), capsys.readouterr().err
        code = await asyncio.to_thread(restore.main, ["--config", str(toml), "--from", hub.coap_url])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(out.strip().splitlines()[-1])["length"] == 2
