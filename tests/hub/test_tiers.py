"""A national hub pulls a regional hub's logs over CoAP, verifies them again, and refuses forgeries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import urllib.request

import aiocoap
import pytest

from coap_server.lanes import WIDTH
from coap_server.sync import remote_heads
from hub.app import RunningHub, start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from hub.service import Hub
from hub.store import DeviceInfo, LmdbHubStore
from hub.tiers import (
    RegionHealth,
    SummaryPuller,
    SummaryRound,
    TierLinks,
    UpstreamHolder,
    mirror_revocations,
    pull_all,
    pull_once,
)
from hub.verify import CrossLogVerifier
from ledger import ChainBuilder, Ed25519Signer, LedgerError, verify_bundle
from ledger.sync import Limits, RequestSize

from .conftest import enroll, new_device


async def test_national_pulls_and_reverifies(tmp_path, hub, clock):
    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(700)]
    assert hub.ingest(device_id, raws).accepted == len(raws)
    regional = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0, coap_port=0, mdns=False),
                               hub=hub)
    national_store = LmdbHubStore(tmp_path / "national")
    national = Hub(national_store, Ed25519Signer.from_seed(b"\x61" * 32), clock=clock)
    ctx = await aiocoap.Context.create_client_context()
    try:
        size = RequestSize()
        report = await pull_once(national, regional.coap_url, ctx, size)
        assert report.fetched == len(raws) and not report.problems
        assert size.records > size.floor_records, "quick answers grew the requests, for the next round too"
        again = await pull_once(national, regional.coap_url, ctx)
        assert again.fetched == 0
        assert national_store.chain_state(device_id).length == len(raws)
        assert national_store.get_device(device_id).site.startswith("via coap://")
        bundle = national.export()
        assert verify_bundle(bundle).ok
    finally:
        await ctx.shutdown()
        await regional.close()
        national_store.close()


def test_relayed_forgery_is_refused(tmp_path, clock):
    _signer, builder = new_device(clock)
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(5)]
    forged = bytearray(raws[3])
    forged[-1] ^= 1
    store = LmdbHubStore(tmp_path / "national")
    national = Hub(store, Ed25519Signer.from_seed(b"\x62" * 32), clock=clock)
    try:
        holder = UpstreamHolder(national, "coap://regional")
        result = holder.receive(builder.device_id, [*raws[:3], bytes(forged), *raws[4:]])
        assert result["accepted"] == 3
        assert result["problem"]["code"] == "INVALID_SIGNATURE"
        not_genesis = holder.receive(b"\x07" * 16, raws[1:])
        assert not_genesis["problem"]["code"] in ("UNKNOWN_DEVICE", "BROKEN_CHAIN", "MALFORMED")
        # Three records, and the national hub's own log: its genesis and its approval of the relayed device.
        assert store.size() == 3 + 2 and len(national.own_log()) == 2
    finally:
        store.close()


@pytest.mark.timeout(900)  # about 17 MB over CoAP in 1 KiB blocks, both hubs on one core: minutes, not seconds
async def test_national_pulls_a_region_of_50000_devices_in_pages(tmp_path, clock):
    """More logs than one heads message may carry (4,096) come a page at a time, and the many short logs of a
    round in a few ranges requests; two regions are pulled at once."""
    count = 50_000
    regional_store = LmdbHubStore(tmp_path / "regional", durable=False)
    second_store = LmdbHubStore(tmp_path / "second", durable=False)
    for i in range(count):  # reduced records: a genesis each, written straight into the store
        signer = Ed25519Signer.from_seed((1 << 40 | i).to_bytes(32, "big"))
        builder = ChainBuilder(signer, clock=clock, boot=1)
        genesis = builder.genesis()
        store = regional_store if i < count - 10 else second_store
        store.put_device(DeviceInfo(device_id=builder.device_id, pubkey=signer.public_key, site="sppg",
                                    role="kitchen_exit", status="active", enrolled_at=clock(), name=""))
        store.append(builder.device_id, [genesis], builder.state, clock())
    config = dict(bridges=BridgeConfig(enabled=False), http_port=0, coap_port=0, mdns=False)
    regions = [await start_hub(HubConfig(data_dir=str(tmp_path / f"r{n}"), **config),
                               hub=Hub(store, Ed25519Signer.from_seed(bytes([0x70 + n]) * 32), clock=clock))
               for n, store in enumerate((regional_store, second_store))]
    national_store = LmdbHubStore(tmp_path / "national", durable=False)
    national = Hub(national_store, Ed25519Signer.from_seed(b"\x63" * 32), clock=clock)
    ctx = await aiocoap.Context.create_client_context()
    try:
        urls = [r.coap_url for r in regions]
        started = time.monotonic()
        heads = await remote_heads(ctx, urls[0])
        paged = time.monotonic()
        assert len(heads) == count - 10 > Limits().max_devices
        reports = await pull_all(national, urls, ctx, {})
        print(f"heads of {len(heads)} logs in {paged - started:.1f} s; pulled {count} logs in "
              f"{time.monotonic() - paged:.1f} s")
        assert [r.fetched for r in reports.values()] == [count - 10, 10]
        assert not any(r.problems for r in reports.values())
        assert national_store.size() == count + len(national.own_log()), "every record once, beside the hub's own"
        assert {h.device_id: h.head for h in national.heads()} == {
            h.device_id: h.head for h in [*heads, *await remote_heads(ctx, urls[1])]}
        assert sum(r.fetched for r in (await pull_all(national, urls, ctx, {})).values()) == 0
    finally:
        await ctx.shutdown()
        for r in regions:
            await r.close()
        for s in (national_store, regional_store, second_store):
            s.close()


def test_many_logs_verified_on_every_core_then_merged_in_order(tmp_path, clock):
    logs = []
    for _ in range(40):
        _signer, builder = new_device(clock)
        logs.append((builder.device_id, [builder.genesis().raw]
                     + [builder.append("note", {"text": str(i)}).raw for i in range(4)]))
    forged = bytearray(logs[7][1][2])
    forged[-1] ^= 1
    logs[7] = (logs[7][0], [*logs[7][1][:2], bytes(forged), *logs[7][1][3:]])
    store = LmdbHubStore(tmp_path / "national")
    verifier = CrossLogVerifier(workers=2)
    try:
        holder = UpstreamHolder(Hub(store, Ed25519Signer.from_seed(b"\x64" * 32), clock=clock), "coap://r",
                                verifier)
        results = holder.receive_many(logs)
        assert [r["accepted"] for r in results] == [5] * 7 + [2] + [5] * 32
        assert results[7]["problem"]["code"] == "INVALID_SIGNATURE", "a forgery checked ahead is still refused"
        more = holder.receive_many([(logs[0][0], logs[0][1])])
        assert more[0]["duplicates"] == 5 and more[0]["accepted"] == 0
    finally:
        verifier.close()
        store.close()


async def test_national_pulls_over_oscore_and_an_unpaired_hub_gets_nothing(tmp_path, hub, clock):
    """Tier pulls like every other link: the regional hub requires OSCORE and names the national hub's key
    (peer_hubs) and what it may read; the national hub names the regional hub's key in `upstream`. Over UDP
    the national hub's requests are in flight on several lanes at once, all under its one OSCORE context."""
    from hub.app import load_or_create_key
    from hub.config import SecurityConfig
    from ledger import device_id_for
    from tests.sync.test_lanes import relay_to
    from tests.wait import wait_for, wait_until

    signer, builder = new_device(clock)
    device_id = enroll(hub, signer, clock)
    # Enough records that the requests grow to carry the most, and then two are in flight at once.
    raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(999)]
    assert hub.ingest(device_id, raws).accepted == len(raws)
    national_key = load_or_create_key(tmp_path / "n" / "hub.key").public_key
    stranger_key = load_or_create_key(tmp_path / "s" / "hub.key").public_key
    national_id = device_id_for(national_key).hex()
    regional = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0, coap_port=0, mdns=False,
        security=SecurityConfig(oscore=True, peer_hubs=(national_key.hex(),), read=("*:self", f"{national_id}:*"))),
        hub=hub)
    relay, _, listen = await relay_to(int(regional.coap_url.rsplit(":", 1)[1]), set())  # sees the ports apart
    national = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "n"),
                                         http_port=0, coap_port=0, mdns=False, checkpoint_interval=0.2,
                                         upstream=(f"coap://127.0.0.1:{listen} {hub.signer.public_key.hex()}",)))
    stranger = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "s"),
                                         http_port=0, coap_port=0, mdns=False, checkpoint_interval=0.2,
                                         upstream=(f"{regional.coap_url} {hub.signer.public_key.hex()}",)))
    # the stranger names the regional key; the regional not its
    try:
        assert stranger.hub.signer.public_key == stranger_key
        assert await wait_for(lambda: (s := national.hub.store.chain_state(device_id)) is not None
                              and s.length == len(raws), timeout=30)
        assert stranger.hub.store.chain_state(device_id) is None  # no context at the regional hub: 4.01

        def refused() -> dict | None:  # the stranger's operator is told why, not that the region is unreachable
            with urllib.request.urlopen(f"{stranger.http_url}/api/regions", timeout=30) as response:
                [shown] = json.loads(response.read())["regions"]
            return shown if shown["state"] == "refused" else None

        shown = await asyncio.to_thread(wait_until, refused, 30, what="the stranger's region refused")
        assert shown["mode"] == "records" and shown["problem"]["code"] == "REGION_UNPROTECTED", shown
        assert shown["hub"] == hub.hub_id.hex()  # the pinned key's: the region as its entry names it
        assert "security.peer_hubs" in shown["problem"]["message"]
        assert regional.security.policy.refused.get("OSCORE_REQUIRED", 0) == 0  # both spoke OSCORE
        assert len(relay.relays) > 1, "the national hub's requests all came from one port"
    finally:
        relay.close()
        await stranger.close()
        await national.close()
        await regional.close()


async def test_tier_links_give_each_region_a_context_of_its_own_and_lanes_over_udp(tmp_path):
    """Each region its own client context (no socket, connection or message id shared with another region), with
    only that region's credentials; one pool of lanes per region pulled over UDP, so that regions stay parallel,
    each sharing its context's credentials (a region's OSCORE context reaches every lane); all closed with the
    links."""
    from tests.sync.test_lanes import sockets

    secret = object()  # stands for the OSCORE context of the region whose key is named
    urls = ("coap://127.0.0.1:9", "coap://127.0.0.1:10", "coap+tcp://127.0.0.1:11")
    links = TierLinks(None, urls, {"coap://127.0.0.1:9": secret})  # type: ignore[arg-type]
    before = sockets()
    ctxs = [await links.links[url].context() for url in urls]
    assert len({id(c) for c in ctxs}) == 3
    a, b = links.links[urls[0]].lanes, links.links[urls[1]].lanes
    assert a is not None and b is not None
    assert links.links[urls[2]].lanes is None  # one context carries requests at once over TCP
    assert not set(map(id, a.opened)) & set(map(id, b.opened))
    assert len(a.contexts) == len(b.contexts) == WIDTH and a.ctx is ctxs[0] and b.ctx is ctxs[1]
    assert all(c.client_credentials is ctxs[0].client_credentials for c in a.contexts)
    assert all(c.client_credentials["coap://127.0.0.1:9/*"] is secret for c in a.opened)
    assert [dict(c.client_credentials) for c in ctxs[1:]] == [{}, {}], "no other region's credentials"
    await links.close()
    assert sockets() == before and a.opened == [] and b.opened == []
    assert all(link.lanes is None for link in links.links.values())


class BlackHole:
    """A TCP relay to a regional hub whose `cut` leaves the connections open made so far open but silent both ways
    (what a power cut at the far end, or a NAT that forgot the flow, leaves a client with); connections made
    after it are relayed as before."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cut_before = 0  # connections numbered below this are cut
        self.made = 0
        self.held: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.cut_before = self.made

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.made
        self.made += 1
        self.held.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        self.held.append(up_writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if number >= self.cut_before:
                    dst.write(data)
                    await dst.drain()

        with contextlib.suppress(OSError, ConnectionError):
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.held:
            writer.close()


async def test_tier_links_renew_their_context_after_a_region_went_silent_or_restarted(tmp_path, clock):
    """A region reached over CoAP over TCP goes silent under an open connection, then restarts: the national hub's
    links take a fresh client context after a round without an answer and pull again, with no restart of theirs;
    they renew it every `renew_rounds` rounds too, and shut each context they leave."""
    from tests.ports import free_coap
    from tests.sync.test_lanes import sockets
    from tests.wait import wait_for

    port = free_coap()
    config = HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0,
                       coap_port=port, mdns=False, auto_approve=True, checkpoint_interval=3600)
    regional = await start_hub(config)
    relay = BlackHole(port)
    listen = await relay.start()
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x6a" * 32), clock=clock)
    before = sockets()
    links = TierLinks(national, (f"coap+tcp://127.0.0.1:{listen}",), timeout=2.0, renew_rounds=3)
    sizes: dict[str, RequestSize] = {}
    signer, builder = new_device(clock)
    device_id = enroll(regional.hub, signer, clock)

    async def add(n: int) -> int:
        records = [builder.genesis()] if builder.state.length == 0 else []
        records += [builder.append("note", {"text": str(i)}) for i in range(n)]
        assert regional.hub.ingest(device_id, [r.raw for r in records]).accepted == len(records)
        return builder.state.length

    def pulled() -> int:
        state = national.store.chain_state(device_id)
        return state.length if state is not None else 0

    try:
        length = await add(30)
        [first], _ = await links.round(sizes)
        assert isinstance(first, SummaryRound) and pulled() == length and links.renewals == 0

        relay.cut()  # the connection stays open, and nothing comes back on it
        length = await add(5)
        [silent], _ = await links.round(sizes)
        assert isinstance(silent, Exception), silent
        [again], _ = await links.round(sizes)  # on a fresh context: a new connection
        assert isinstance(again, SummaryRound) and links.renewals == 1 and pulled() == length

        await regional.close()  # the region restarts on its port
        [down], _ = await links.round(sizes)
        assert isinstance(down, Exception), down
        regional = await start_hub(config)
        length = await add(7)
        [back], _ = await links.round(sizes)
        assert isinstance(back, SummaryRound) and links.renewals == 2 and pulled() == length, back

        # Rounds that all went well: a fresh context every `renew_rounds`.
        for _ in range(3):
            [quiet], _ = await links.round(sizes)
            assert isinstance(quiet, SummaryRound) and quiet.requests == 1
        await links.links[f"coap+tcp://127.0.0.1:{listen}"].context()
        assert links.renewals == 3
    finally:
        await close_links(links)
        await relay.close()
        await regional.close()
        national.store.close()
    await wait_for(lambda: sockets() <= before, 10, what="every context the links left shut")


async def test_national_refuses_what_a_region_revoked_by_its_signed_list_and_nothing_else(tmp_path, clock):
    """Two real hubs: the national hub pulls a region whose key its entry names. A device the region revoked from a
    seq it had already taken records past (and one revoked before the national hub ever saw it) is refused here
    from the same seq, by the region's revocation list signed with the pinned key, written into the national
    hub's own log. A list under another key is refused with its code and nothing is pulled; an older list (a
    replay) lifts nothing."""
    from ledger.authority import Authority

    regional = await _regional(tmp_path)
    key = regional.hub.signer.public_key
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x6b" * 32), clock=clock)
    links = TierLinks(national, (f"{regional.coap_url} {key.hex()}",), timeout=10.0)
    wrong = Hub(LmdbHubStore(tmp_path / "wrong"), Ed25519Signer.from_seed(b"\x6c" * 32), clock=clock)
    other_key = Ed25519Signer.from_seed(b"\x6d" * 32).public_key
    wrong_links = TierLinks(wrong, (f"{regional.coap_url} {other_key.hex()}",), timeout=10.0)
    sizes: dict[str, RequestSize] = {}

    def device(n: int) -> tuple[bytes, ChainBuilder]:
        signer, builder = new_device(clock)
        device_id = enroll(regional.hub, signer, clock)
        records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(n - 1)]
        assert regional.hub.ingest(device_id, [r.raw for r in records]).accepted == n
        return device_id, builder

    def held(hub: Hub, device_id: bytes) -> int:
        state = hub.store.chain_state(device_id)
        return state.length if state is not None else 0

    try:
        kept, builder = device(5)
        [first], _ = await links.round(sizes)
        assert isinstance(first, SummaryRound) and held(national, kept) == 5
        assert national.authority.revoked_from(kept) is None

        # The region takes five more records of it, then its operator revokes it from seq 7 (records 7 to 9 are
        # in the region's log already); a new device is revoked from seq 1 before the national hub sees it.
        more = [builder.append("note", {"text": f"late {i}"}) for i in range(5)]
        assert regional.hub.ingest(kept, [r.raw for r in more]).accepted == 5
        regional.hub.revoke(kept, 7)
        late, _ = device(3)
        regional.hub.revoke(late, 1)
        assert regional.hub.store.chain_state(kept).length == 10, "the region still holds what it took before"

        [second], _ = await links.round(sizes)
        assert isinstance(second, SummaryRound), second
        assert held(national, kept) == 7 and national.authority.revoked_from(kept) == 7
        assert held(national, late) == 1 and national.authority.revoked_from(late) == 1
        assert national.store.get_device(kept).status == "revoked"
        # Written into the national hub's own log, so a bundle it exports refuses them like an auditor would.
        own = Authority.of(national.hub_id, national.own_log())
        assert (own.revoked_from(kept), own.revoked_from(late)) == (7, 1)
        # Nothing past a revocation point is asked for (the list is read before the records): none to refuse.
        assert not second.sync.problems and not national.store.counters().get("refused_revoked"), \
            second.sync.problems

        # An older list (the region's before the revocations) or one without the device lifts nothing.
        assert mirror_revocations(national, regional.coap_url, {}) == []
        assert mirror_revocations(national, regional.coap_url, {kept: 9}) == []
        assert national.authority.revoked_from(kept) == 7
        # A device this region does not relay here is not the region's to revoke.
        assert mirror_revocations(national, "coap://another-region:5683", {kept: 0}) == []
        assert national.authority.revoked_from(kept) == 7

        # A list under another key than the one pinned: refused with its code, and nothing of the region taken.
        [refused], _ = await wrong_links.round({})
        assert isinstance(refused, LedgerError) and refused.code in ("INVALID_SIGNATURE", "VERIFICATION_FAILED"), \
            refused
        assert held(wrong, kept) == 0 and held(wrong, late) == 0
        assert wrong_links.pullers[0].health.state("pulled") == "refused"
    finally:
        await close_links(links, wrong_links)
        await regional.close()
        national.store.close()
        wrong.store.close()


async def test_a_log_revoked_here_is_complete_at_its_revocation_point_and_not_fetched_again(tmp_path, clock):
    """A device the region revoked from seq 12 while it holds 20 of its records: the national hub takes the 12 and
    holds the log complete at its revocation point. Later rounds fetch nothing of it and the refused count stays
    put (before, every round drilled into its bucket, fetched the 8 records again and refused them again,
    forever, while the region showed healthy). The same for a national hub that first pulls the region whole,
    which refuses the records past the point once."""
    regional = await _regional(tmp_path)
    key = regional.hub.signer.public_key
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x6e" * 32), clock=clock)
    links = TierLinks(national, (f"{regional.coap_url} {key.hex()}",), timeout=10.0)
    fresh = Hub(LmdbHubStore(tmp_path / "fresh"), Ed25519Signer.from_seed(b"\x6f" * 32), clock=clock)
    fresh_links = TierLinks(fresh, (f"{regional.coap_url} {key.hex()}",), timeout=10.0)
    sizes: dict[str, RequestSize] = {}
    fresh_sizes: dict[str, RequestSize] = {}

    def refused(hub: Hub) -> int:
        return hub.store.counters().get("refused_revoked", 0)

    try:
        signer, builder = new_device(clock)
        device_id = enroll(regional.hub, signer, clock)
        records = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(9)]
        assert regional.hub.ingest(device_id, [r.raw for r in records]).accepted == 10
        [first], _ = await links.round(sizes)
        assert isinstance(first, SummaryRound) and national.store.chain_state(device_id).length == 10

        more = [builder.append("note", {"text": f"late {i}"}) for i in range(10)]
        assert regional.hub.ingest(device_id, [r.raw for r in more]).accepted == 10
        regional.hub.revoke(device_id, 12)
        [second], _ = await links.round(sizes)
        assert isinstance(second, SummaryRound), second
        assert national.store.chain_state(device_id).length == 12 and national.authority.revoked_from(device_id) == 12
        assert not second.sync.problems, "the list is read first: nothing past the point is asked for"
        once = refused(national)
        for _ in range(2):
            [later], _ = await links.round(sizes)
            assert isinstance(later, SummaryRound), later
            assert (later.sync.fetched, later.sync.problems, later.drilled, later.full) == (0, [], [], False)
            assert later.requests == 1, "an unchanged region costs its summary only"
        assert refused(national) == once
        assert links.pullers[0].health.state("pulled") == "pulled"

        # Pulled whole (a first round): the records past the point refused once, then nothing.
        [whole], _ = await fresh_links.round(fresh_sizes)
        assert isinstance(whole, SummaryRound) and whole.full, whole
        assert fresh.store.chain_state(device_id).length == 12
        fresh_once = refused(fresh)
        for _ in range(2):
            [later], _ = await fresh_links.round(fresh_sizes)
            assert isinstance(later, SummaryRound), later
            assert (later.sync.fetched, later.sync.problems, later.full) == (0, [], False), later
        assert refused(fresh) == fresh_once
        # A revocation at a quiet region (no record since) is its own decision, in none of its logs: its signed
        # list is read all the same, every REVOCATIONS_EVERY_S (here every round).
        regional.hub.revoke(device_id, 8)
        links.pullers[0].revocations_every_s = 0
        [quiet], _ = await links.round(sizes)
        assert isinstance(quiet, SummaryRound) and quiet.requests == 2, quiet
        assert national.authority.revoked_from(device_id) == 8
    finally:
        await close_links(links, fresh_links)
        await regional.close()
        national.store.close()
        fresh.store.close()


async def test_a_silent_region_holds_up_no_other_and_shows_unreachable_with_its_reason(tmp_path, clock):
    """A region that never answers (a bound UDP socket: a hung host, or one dropping packets) beside a real one:
    the real region's records arrive within a round or two of being taken in while the silent one's requests are
    outstanding (before, every round waited for the silent one's timeout), and the silent one is shown
    unreachable once its round has been under way for the interval, then with the timeout as its reason."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent_url = f"coap://127.0.0.1:{silent.getsockname()[1]}"
    regional = await _regional(tmp_path)
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x70" * 32), clock=clock)
    links = TierLinks(national, (silent_url, regional.coap_url), timeout=4.0)
    [quiet, real] = links.pullers
    running = asyncio.create_task(links.run(0.3))

    async def until(what, within: float) -> float:
        start = time.monotonic()
        while not what():
            assert time.monotonic() - start < within, "not within the time"
            await asyncio.sleep(0.05)
        return time.monotonic() - start

    def held(device_id: bytes) -> int:
        state = national.store.chain_state(device_id)
        return state.length if state is not None else 0

    try:
        signer, builder = new_device(clock)
        device_id = enroll(regional.hub, signer, clock)
        assert regional.hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
        await until(lambda: held(device_id) == 1, 3.0)
        await until(lambda: quiet.health.state("pulled") == "unreachable", 2.0)
        assert quiet.health.trouble is not None and "has not answered a round under way for 0.3 s" in \
            quiet.health.trouble.message, quiet.health.trouble
        assert real.health.state("pulled") == "pulled"
        for n in range(2, 4):  # the silent region's first round is still under way (4 s)
            assert regional.hub.ingest(device_id, [builder.append("note", {"text": str(n)}).raw]).accepted == 1
            await until(lambda n=n: held(device_id) == n, 1.5)
        await until(lambda: quiet.health.trouble is not None and "no answer in 4 s" in quiet.health.trouble.message,
                    8.0)
        assert links.states()["unreachable"] == 1 and links.states()["pulled"] == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await regional.close()
        national.store.close()
        silent.close()


async def test_a_region_whose_port_is_closed_fails_no_round_of_another(tmp_path, clock):
    """A region that answers every request with an ICMP port unreachable (its hub is down, the host up) beside a
    real one, pulled over UDP in loops of their own: each ICMP error is queued on the socket that sent to the dead
    region, and Linux hands it to the next send on that socket, whoever it is to. On one socket for every region
    the real region's rounds failed too, now and then, and its state flipped to unreachable and back; with a
    context per region it never fails a round."""
    from tests.ports import free_coap
    from tests.wait import wait_for

    dead_url = f"coap://127.0.0.1:{free_coap()}"  # nothing listens there
    regional = await _regional(tmp_path)
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x6f" * 32), clock=clock)
    links = TierLinks(national, (dead_url, regional.coap_url), timeout=10.0)
    [dead, real] = links.pullers
    failed = _failures(real)
    signer, builder = new_device(clock)
    device_id = enroll(regional.hub, signer, clock)
    assert regional.hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    running = asyncio.create_task(links.run(0.05))
    try:
        assert await wait_for(lambda: dead.health.trouble is not None and dead.health.trouble.rounds >= 40,
                              timeout=120, what="forty rounds of the dead region")
        assert dead.health.trouble is not None and dead.health.trouble.code == "UNREACHABLE"
        # The system's reason, not aiocoap's class name alone.
        assert "Connection refused (ECONNREFUSED): the host answers, and nothing listens on that port" in \
            dead.health.trouble.message, dead.health.trouble.message
        state = national.store.chain_state(device_id)
        assert state is not None and state.length == 1
        assert failed == [], failed
        assert real.health.state("pulled") == "pulled"
        assert links.links[regional.coap_url].renewals == 0, "no round of the real region went unanswered"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await regional.close()
        national.store.close()


async def test_a_slow_region_whose_answers_keep_coming_is_not_shown_unreachable(tmp_path, clock):
    """A region behind a slow link (every datagram held 25 ms each way) whose first pull takes several times the
    round interval, each block of its answers well within it: its answers keep coming, so it is never shown unreachable
    on the way (before, it was once a round had been under way for the interval, and pulled again at its end), and
    every record arrives."""
    from tests.harness.faults import start_impairment
    from tests.ports import free_coap
    from tests.wait import wait_for

    regional = await _regional(tmp_path)
    target = int(regional.coap_url.rsplit(":", 1)[1])
    listen = free_coap()
    relay = await start_impairment(("127.0.0.1", listen), ("127.0.0.1", target), loss=0, delay_ms=25, jitter_ms=0)
    devices = []
    for _ in range(48):
        signer, builder = new_device(clock)
        device_id = enroll(regional.hub, signer, clock)
        raws = [builder.genesis().raw] + [builder.append("note", {"text": str(i)}).raw for i in range(5)]
        assert regional.hub.ingest(device_id, raws).accepted == 6
        devices.append(device_id)
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x6e" * 32), clock=clock)
    links = TierLinks(national, (f"coap://127.0.0.1:{listen}",), timeout=10.0)
    [slow] = links.pullers
    failed = _failures(slow)
    started = time.monotonic()
    running = asyncio.create_task(links.run(0.3))

    def held() -> int:
        return sum(state.length for d in devices if (state := national.store.chain_state(d)) is not None)

    try:
        assert await wait_for(lambda: held() == 48 * 6, timeout=120, what="every record of the slow region")
        took = time.monotonic() - started
        assert took > 0.9, f"the first pull took {took:.2f} s: not several round intervals, the test proves nothing"
        assert failed == [], failed
        assert slow.health.state("pulled") == "pulled"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        relay.close()
        await regional.close()
        national.store.close()


class _CountingStore(LmdbHubStore):
    """An LMDB hub store that counts its synced writes, and can fail the next commit."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.writes = 0
        self.fail_commit = False

    def commit(self, batch):
        self.writes += 1
        if self.fail_commit:
            self.fail_commit = False
            raise OSError("disk gone")
        return super().commit(batch)

    def put_device(self, *devices):
        self.writes += 1
        return super().put_device(*devices)


async def _regional(tmp_path) -> RunningHub:
    """A regional hub on loopback that takes any device's enrollment and signs when told to."""
    return await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0,
                                     coap_port=0, mdns=False, auto_approve=True, checkpoint_interval=3600))


def _failures(puller: SummaryPuller) -> list[dict[str, str]]:
    """Every problem a region's rounds report from now on, as its health is told them (and still told them)."""
    failed: list[dict[str, str]] = []
    told = puller.health.failed
    puller.health.failed = lambda problem: (failed.append(problem), told(problem))  # type: ignore[method-assign]
    return failed


async def close_links(*links: TierLinks) -> None:
    """Shut tier links a test drove round by round: their contexts and their signature workers."""
    for each in links:
        await each.close()
        each.verifier.close()


def _actions(hub: Hub) -> list[str]:
    return [r.body["action"] for r in hub.own_log()[1:] if r.body is not None]


def test_logs_first_seen_from_a_region_are_admitted_together(tmp_path, clock):
    """A pull request of many new logs: their approvals are one commit of the national hub's own log and their
    standing one write, not a few synced writes each; a region's revocation still applies to its new log."""
    logs = []
    for _ in range(40):
        _signer, builder = new_device(clock)
        logs.append((builder.device_id, [builder.genesis().raw]
                     + [builder.append("note", {"text": str(i)}).raw for i in range(3)]))
    store = _CountingStore(tmp_path / "national")
    try:
        national = Hub(store, Ed25519Signer.from_seed(b"\x65" * 32), clock=clock)
        holder = UpstreamHolder(national, "coap://r", revoked={logs[5][0]: 2})
        before = store.writes
        results = holder.receive_many(logs)
        # The approvals, the devices, the region's revocation of one of them (a decision and its standing), and
        # the records.
        assert store.writes - before == 1 + 1 + 2 + 1
        assert [r["accepted"] for r in results] == [4] * 5 + [2] + [4] * 34
        assert _actions(national) == ["approve"] * 40 + ["revoke"]
        stored = {d.device_id: d for d in store.devices()}
        assert all(stored[d].status == "active" and stored[d].site == "via coap://r" for d, _ in logs if d != logs[5][0])
        assert stored[logs[5][0]].status == "revoked" and stored[logs[5][0]].revoked_from == 2
        assert verify_bundle(national.export()).ok
    finally:
        store.close()


def test_a_failed_commit_of_the_approvals_stores_no_relayed_device(tmp_path, clock):
    """No device is stored, nor its records taken, without its approval in the hub's own log: the approvals
    come first, and the next round admits it."""
    _signer, builder = new_device(clock)
    raws = [builder.genesis().raw, builder.append("note", {"text": "1"}).raw]
    store = _CountingStore(tmp_path / "national")
    try:
        national = Hub(store, Ed25519Signer.from_seed(b"\x66" * 32), clock=clock)
        holder = UpstreamHolder(national, "coap://r")
        store.fail_commit = True
        with pytest.raises(OSError):
            holder.receive_many([(builder.device_id, raws)])
        assert store.get_device(builder.device_id) is None and len(national.own_log()) == 1
        assert holder.receive_many([(builder.device_id, raws)])[0]["accepted"] == 2  # the next round takes it
        assert _actions(national) == ["approve"]
        assert verify_bundle(national.export()).ok
    finally:
        store.close()


def test_a_region_that_answers_again_is_logged_as_it_is_taken_with_when_its_trouble_began(tmp_path, clock, caplog):
    national = Hub(LmdbHubStore(tmp_path / "national"), Ed25519Signer.from_seed(b"\x71" * 32), clock=clock)
    try:
        for taken, word in (("pulled", "REGION PULLED AGAIN"), ("followed", "REGION FOLLOWED AGAIN")):
            health = RegionHealth(national, "coap://127.0.0.1:1", taken=taken)
            health.failed({"code": "UNREACHABLE", "message": "no answer in 30 s"})
            with caplog.at_level(logging.WARNING, logger="jejak.hub"):
                health.went_well()
            [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REGION ")
                      and "AGAIN" in r.getMessage()]
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(national.clock()))
            assert line.startswith(word) and line.endswith(f"since {since}"), line
            caplog.clear()
    finally:
        national.store.close()
