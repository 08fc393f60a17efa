"""A national hub follows a regional hub by its signed checkpoints over CoAP: consistency proofs each round, a
rewritten history caught with its evidence, a wrong key refused, a restart resumed, records drilled down into."""

from __future__ import annotations

import aiocoap
import aiohttp
import pytest

from hub.app import start_hub
from hub.auth import hash_token
from hub.bridges import BridgeConfig
from hub.config import ConfigError, HubConfig, Upstream, parse_upstream
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.tiers import RegionFollower, TierLinks, follow_all
from ledger import Ed25519Signer, decode_checkpoint, device_id_for, verify_receipt
from ledger.errors import BadProof
from ledger.follow import Step, verify_split_view
from tests.documented import assert_documented

from .conftest import enroll, new_device

REGION_SEED = b"\x71" * 32


def config(path) -> HubConfig:
    # Checkpoints are signed by the test (hub.checkpoint()), not by the hub's own loop.
    return HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(path), http_port=0, coap_port=0,
                     mdns=False, checkpoint_interval=3600)


class Region:
    """A regional hub with one device whose log grows when told to."""

    def __init__(self, path, clock, seed: bytes = REGION_SEED) -> None:
        self.store = LmdbHubStore(path, durable=False)
        self.hub = Hub(self.store, Ed25519Signer.from_seed(seed), clock=clock)
        signer, self.builder = new_device(clock)
        self.device_id = enroll(self.hub, signer, clock)
        self.records = [self.builder.genesis()]
        assert self.hub.ingest(self.device_id, [self.records[0].raw]).accepted == 1

    def grow(self, n: int, text: str = "note") -> None:
        new = [self.builder.append("note", {"text": f"{text} {len(self.records) + i}"}) for i in range(n)]
        assert self.hub.ingest(self.device_id, [r.raw for r in new]).accepted == n
        self.records += new
        assert self.hub.checkpoint() is not None


@pytest.fixture
async def ctx():
    context = await aiocoap.Context.create_client_context()
    yield context
    await context.shutdown()


def national_hub(path, clock) -> Hub:
    return Hub(LmdbHubStore(path), Ed25519Signer.from_seed(b"\x72" * 32), clock=clock)


async def test_a_region_is_followed_by_checkpoints_across_rounds_and_a_restart(tmp_path, clock, ctx):
    region = Region(tmp_path / "region", clock)
    region.grow(10)
    served = await start_hub(config(tmp_path / "r"), hub=region.hub)
    national = national_hub(tmp_path / "national", clock)
    upstream = Upstream(url=served.coap_url, key=region.hub.signer.public_key, mode="checkpoints")
    try:
        follower = RegionFollower(national, upstream)
        first = await follower.round(ctx)
        assert first.problem is None and first.step is Step.FIRST and first.requests == 1
        assert first.checkpoint.raw == region.hub.latest_checkpoint().raw
        for n in (25, 300):  # two more rounds, each a larger log: one checkpoint and one consistency proof
            region.grow(n)
            report = await follower.round(ctx)
            assert report.problem is None and report.step is Step.ADVANCED and report.requests == 2
            assert report.checkpoint.tree_size == region.hub.latest_checkpoint().tree_size
        quiet = await follower.round(ctx)
        assert quiet.step is Step.UNCHANGED and quiet.requests == 1, "an unchanged region costs one request"
        sizes = [cp.tree_size for cp in follower.accepted]
        assert len(sizes) == 3 and sizes == sorted(sizes)
        assert national.store.chain_state(region.device_id) is None, "no record was pulled"

        # Restart: the chain comes back from the national store and the next proof starts from its last one.
        national.store.close()
        national = national_hub(tmp_path / "national", clock)
        follower = RegionFollower(national, upstream)
        assert [cp.tree_size for cp in follower.accepted] == sizes
        region.grow(7)
        resumed = await follower.round(ctx)
        assert resumed.step is Step.ADVANCED and resumed.requests == 2
        assert len(national.store.region_checkpoints(follower.hub_id)) == 4

        # Drill-down: one record with its inclusion proof under an accepted checkpoint.
        wanted = region.records[17]
        found = await follower.record(ctx, region.device_id, 17)
        assert found.record.id == wanted.id and found.step is Step.UNCHANGED
        assert found.checkpoint.raw == follower.latest.raw
        assert found.index == region.hub.store.locate(wanted.id)
        # Tampered bytes (one bit of the signature) do not lead to the signed root.
        _, receipt = region.hub.receipt(wanted.id)
        tampered = bytearray(wanted.raw)
        tampered[-1] ^= 1
        with pytest.raises(BadProof):
            await follower.check_included(ctx, bytes(tampered), receipt, device_id=region.device_id, seq=17)
        # A receipt under a newer checkpoint than the accepted ones is placed first: accepted on the way.
        region.grow(3)
        newer = await follower.record(ctx, region.device_id, 40)
        assert newer.step is Step.ADVANCED and follower.latest.tree_size == newer.checkpoint.tree_size
        assert national.store.split_views() == []
    finally:
        await served.close()
        national.store.close()
        region.store.close()


@pytest.mark.parametrize("old_size", [False, True], ids=["larger-log", "same-size"])
async def test_a_region_that_rewrites_its_history_is_caught_with_evidence(tmp_path, clock, ctx, old_size):
    region = Region(tmp_path / "region", clock)
    region.grow(20)
    served = await start_hub(config(tmp_path / "r"), hub=region.hub)
    national = national_hub(tmp_path / "national", clock)
    key = region.hub.signer.public_key
    follower = RegionFollower(national, Upstream(url=served.coap_url, key=key, mode="checkpoints"))
    try:
        assert (await follower.round(ctx)).step is Step.FIRST
        region.grow(5)
        assert (await follower.round(ctx)).step is Step.ADVANCED
        accepted = follower.latest
    finally:
        await served.close()
    # The same region key over a log with other records: its own store restored from elsewhere, or a forgery.
    forged = Region(tmp_path / "forged", clock)
    forged.grow(20, text="rewritten")
    forged.grow(5 if old_size else 40, text="rewritten")
    assert (forged.hub.latest_checkpoint().tree_size == accepted.tree_size) is old_size
    served = await start_hub(config(tmp_path / "f"), hub=forged.hub)
    try:
        follower = RegionFollower(national, Upstream(url=served.coap_url, key=key, mode="checkpoints"))
        caught = await follower.round(ctx)
        assert caught.problem["code"] == "SPLIT_VIEW" and caught.step is None
        assert caught.requests == (1 if old_size else 2)
        assert follower.latest.raw == accepted.raw, "nothing of the rewritten log was accepted"
        [(hub_id, kept)] = national.store.split_views()
        assert hub_id == device_id_for(key)
        evidence = verify_split_view(kept, key)  # both signed checkpoints, still verifiable offline
        assert evidence.accepted.raw == accepted.raw
        assert evidence.offered.raw == forged.hub.latest_checkpoint().raw
        assert evidence.conclusive is old_size
        assert national.store.counters()["region_split_views"] == 1
        again = await follower.round(ctx)
        assert again.problem["code"] == "SPLIT_VIEW" and again.requests == 0, "refused until an operator acts"
    finally:
        await served.close()
        national.store.close()
        forged.store.close()
        region.store.close()


async def test_a_checkpoint_under_another_key_is_refused(tmp_path, clock, ctx):
    region = Region(tmp_path / "region", clock)
    region.grow(5)
    served = await start_hub(config(tmp_path / "r"), hub=region.hub)
    national = national_hub(tmp_path / "national", clock)
    pinned = Ed25519Signer.from_seed(b"\x73" * 32).public_key
    try:
        follower = RegionFollower(national, Upstream(url=served.coap_url, key=pinned, mode="checkpoints"))
        [report] = await follow_all([follower], ctx)
        assert report.problem["code"] == "INVALID_CHECKPOINT" and report.step is None
        assert region.hub.hub_id.hex() in report.problem["message"] and "new upstream entry" in report.problem["hint"]
        assert follower.accepted == [] and national.store.region_checkpoints(device_id_for(pinned)) == []
        assert national.store.split_views() == [], "a wrong key is a refusal, not evidence against the region"
        shown = follower.to_json()
        assert shown["state"] == "refused" and shown["problem"]["code"] == "INVALID_CHECKPOINT"
        await follow_all([follower], ctx)
        assert follower.to_json()["problem"]["rounds"] == 2 and follower.accepted == []
    finally:
        await served.close()
        national.store.close()
        region.store.close()


async def test_a_national_hub_configured_to_follow_checkpoints_does_so_over_oscore(tmp_path, clock):
    """The config's entry "<url> <key> checkpoints": the running national hub follows the region each round,
    over the OSCORE link the key sets up, and pulls none of its records."""
    from hub.app import load_or_create_key
    from hub.config import SecurityConfig
    from tests.wait import wait_for

    region = Region(tmp_path / "region", clock)
    region.grow(30)
    national_key = load_or_create_key(tmp_path / "n" / "hub.key").public_key
    served = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=3600, security=SecurityConfig(
            oscore=True, peer_hubs=(national_key.hex(),),
            read=("*:self", f"{device_id_for(national_key).hex()}:*"))),  # a drill-down reads the region's logs
        hub=region.hub)
    region_key = region.hub.signer.public_key
    national = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "n"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=0.2, upstream=(f"{served.coap_url} {region_key.hex()} checkpoints",),
        auditor_tokens=(hash_token("auditor"),)))
    try:
        held = lambda: national.hub.store.region_checkpoints(device_id_for(region_key))  # noqa: E731
        assert await wait_for(lambda: len(held()) == 1, timeout=30)
        region.grow(4)
        assert await wait_for(lambda: len(held()) == 2, timeout=30)
        assert held()[-1] == region.hub.latest_checkpoint().raw
        assert national.hub.store.chain_state(region.device_id) is None
        assert served.security.policy.refused.get("OSCORE_REQUIRED", 0) == 0
        # The national hub's API: the regions it follows, and a record drilled down into over the same link.
        hub_hex = device_id_for(region_key).hex()
        async with aiohttp.ClientSession(national.http_url) as http:
            async with http.get("/api/regions") as response:
                regions = await response.json()
            assert_documented("GET", "/api/regions", response.status, regions)
            [shown] = regions["regions"]
            assert shown["hub"] == hub_hex and shown["checkpoint"]["cose"] == held()[-1].hex()
            assert shown["split_views"] == []
            path = f"/api/regions/{hub_hex}/records/{region.device_id.hex()}/12"
            async with http.get(path) as response:
                assert response.status == 403, "a record's body needs an auditor's or operator's token"
            async with http.get(path, headers={"Authorization": "Bearer auditor"}) as response:
                found = await response.json()
                assert response.status == 200, found
            assert_documented("GET", "/api/regions/{hub}/records/{device}/{seq}", response.status, found)
            assert found["id"] == region.records[12].id.hex() and found["checkpoint_step"] == "unchanged"
            verified = verify_receipt(bytes.fromhex(found["receipt"]), bytes.fromhex(found["record"]), region_key)
            assert verified.index == found["index"]
            async with http.get(f"/api/regions/{'00' * 16}/records/{region.device_id.hex()}/12",
                                headers={"Authorization": "Bearer auditor"}) as response:
                assert response.status == 404
    finally:
        await national.close()
        await served.close()
        region.store.close()


def test_upstream_entries_name_their_mode():
    key = "ab" * 32
    assert parse_upstream("coap://r:5683") == Upstream(url="coap://r:5683")
    assert parse_upstream(f"coap://r:5683 {key}") == Upstream(url="coap://r:5683", key=bytes.fromhex(key))
    assert parse_upstream(f"coap://r:5683 {key} checkpoints").mode == "checkpoints"
    with pytest.raises(ConfigError, match="needs the regional hub's key"):
        parse_upstream("coap://r:5683 checkpoints")
    with pytest.raises(ConfigError, match="64-hex-digit"):
        parse_upstream("coap://r:5683 abcd checkpoints")
    with pytest.raises(ConfigError):
        HubConfig(upstream=(f"coap://r:5683 {key} mirror",))
    tiers = TierLinks(None, ("coap://a:1", f"coap://b:2 {key}"))  # type: ignore[arg-type]
    assert tiers.pulled == ["coap://a:1", "coap://b:2"] and tiers.followed == {}


async def test_an_operator_resumes_a_split_region_and_learns_what_its_view_no_longer_holds(
        tmp_path, clock, ctx, monkeypatch, capsys):
    """Two real hubs: the national hub catches the region's rewritten log, shows both signed checkpoints, refuses
    the region until an operator resumes it (over HTTP, with the CLI), keeps the evidence and the decision, and
    follows the region from its new checkpoint, across a restart."""
    import asyncio
    import json

    from hub.config import SecurityConfig
    from tests.wait import wait_for
    from tools.cli import main as cli

    region = Region(tmp_path / "region", clock)
    region.grow(20)
    served = await start_hub(config(tmp_path / "r"), hub=region.hub)
    national = national_hub(tmp_path / "national", clock)
    key = region.hub.signer.public_key
    hub_hex = device_id_for(key).hex()
    try:
        follower = RegionFollower(national, Upstream(url=served.coap_url, key=key, mode="checkpoints"))
        assert (await follower.round(ctx)).step is Step.FIRST
        region.grow(5)
        assert (await follower.round(ctx)).step is Step.ADVANCED
        before = list(follower.accepted)
    finally:
        await served.close()
    forged = Region(tmp_path / "forged", clock)  # the same key over another log
    forged.grow(40, text="rewritten")
    national_key = national.signer.public_key  # naming the region's key sets up OSCORE with it, as in production
    served = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "f"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=3600, security=SecurityConfig(oscore=True, peer_hubs=(national_key.hex(),))),
        hub=forged.hub)
    entry = f"{served.coap_url} {key.hex()} checkpoints"
    running = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "n"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=0.2, upstream=(entry,), operator_tokens=(hash_token("operator"),),
        auditor_tokens=(hash_token("auditor"),)), hub=national)
    try:
        assert await wait_for(lambda: national.store.split_views(), timeout=30, what="the split view caught")
        async with aiohttp.ClientSession(running.http_url) as http:
            async with http.get("/api/regions") as response:
                [shown] = (await response.json())["regions"]
            assert shown["state"] == "split" and shown["resumes"] == []
            [view] = shown["split_views"]
            assert not view["resolved"]
            assert view["accepted"]["cose"] == before[-1].raw.hex()
            assert view["offered"]["cose"] == forged.hub.latest_checkpoint().raw.hex()
            assert {"tree_size", "time"} <= view["offered"].keys()
            async with http.get(f"/api/regions/{hub_hex}") as response:
                one = await response.json()
            assert_documented("GET", "/api/regions/{hub}", response.status, one)
            assert [c["cose"] for c in one["checkpoints"]] == [c.raw.hex() for c in before]

            path = f"/api/regions/{hub_hex}/resume"
            body = {"by": "Ani", "why": "the region restored its store from a backup of another site"}
            refusals = [(None, body, 403, "FORBIDDEN"), ("stolen", body, 401, "UNAUTHORIZED"),
                        ("auditor", body, 403, "FORBIDDEN"), ("operator", {"by": "Ani"}, 400, "BAD_REQUEST")]
            for token, sent, status, code in refusals:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.post(path, json=sent, headers=headers) as response:
                    assert response.status == status and (await response.json())["error"]["code"] == code
            async with http.post(path, data="[" * 10_000, headers={"Authorization": "Bearer operator"}) as response:
                assert response.status == 400 and (await response.json())["error"]["code"] == "BAD_REQUEST"
            async with http.post(f"/api/regions/{'00' * 16}/resume", json=body,
                                 headers={"Authorization": "Bearer operator"}) as response:
                assert response.status == 404 and (await response.json())["error"]["code"] == "UNKNOWN_REGION"
            assert national.store.region_resumes() == [], "no refused call decided anything"

            monkeypatch.setenv("JEJAK_TOKEN", "operator")
            capsys.readouterr()
            assert await asyncio.to_thread(cli, ["hub", "regions", "resume", hub_hex, "--hub-url", running.http_url,
                                                 "--by", body["by"], "--why", body["why"]]) == 0
            out = capsys.readouterr()
            decision = json.loads(out.out)
            assert_documented("POST", "/api/regions/{hub}/resume", 200, decision)
            assert decision["by"] == "Ani" and decision["token"] == hash_token("operator")[:16]
            assert decision["pinned"]["cose"] == forged.hub.latest_checkpoint().raw.hex()
            # Nothing accepted before is in the rewritten log: reported, with the stretch of the region's log.
            assert decision["kept"] == [] and [c["cose"] for c in decision["dropped"]] == [c.raw.hex() for c in before]
            assert decision["not_in_view"] == {"from": 0, "to": before[-1].tree_size}
            assert "are not in its current view" in out.err

            forged.grow(3, text="rewritten")
            held = lambda: national.store.region_checkpoints(device_id_for(key))  # noqa: E731
            assert await wait_for(lambda: len(held()) == 2, timeout=30, what="the resumed region followed")
            assert held() == [decision_raw := bytes.fromhex(decision["pinned"]["cose"]),
                              forged.hub.latest_checkpoint().raw]
            async with http.post(path, json=body, headers={"Authorization": "Bearer operator"}) as response:
                assert response.status == 409 and (await response.json())["error"]["code"] == "NOT_SPLIT"
            async with http.get("/api/regions") as response:
                [shown] = (await response.json())["regions"]
            assert shown["state"] == "followed" and shown["split_views"][0]["resolved"]
            assert shown["resumes"] == [decision]
        [(_, kept)] = national.store.split_views()
        assert verify_split_view(kept, key).accepted.raw == before[-1].raw, "the evidence outlives the resume"
        assert national.store.counters()["region_resumes"] == 1
        assert await asyncio.to_thread(cli, ["hub", "regions", "list", "--hub-url", running.http_url]) == 0
        assert f"{hub_hex}  checkpoints followed" in capsys.readouterr().out
    finally:
        await running.close()
        await served.close()
        national.store.close()
    # A restart: the decision and the re-pinned chain come back from the store.
    national = national_hub(tmp_path / "national", clock)
    served = await start_hub(config(tmp_path / "f2"), hub=Hub(LmdbHubStore(tmp_path / "forged"),
                                                               Ed25519Signer.from_seed(REGION_SEED), clock=clock))
    try:
        follower = RegionFollower(national, Upstream(url=served.coap_url, key=key, mode="checkpoints"))
        assert follower.open_split_views() == [] and follower.accepted[0].raw == decision_raw
        assert (await follower.round(ctx)).step is Step.UNCHANGED
    finally:
        await served.close()
        national.store.close()
        region.store.close()


async def test_a_region_whose_key_was_replaced_is_refused_and_shown_until_its_pinned_key_signs_again(
        tmp_path, clock, caplog):
    """Two real hubs: a region's operators replace its hub key (a hub key never rotates, so the new key is another
    hub). The running national hub accepts nothing the new key signs, takes no key on the region's word, and
    says so: the region's state `refused` with the code and since when, one `REGION REFUSED` log line, and the
    count of refused regions in /metrics. When the pinned key signs again, the region is followed again from
    where it was, without a restart of the national hub."""
    import asyncio
    import dataclasses
    import json
    import logging
    import urllib.request

    from hub.app import load_or_create_key
    from hub.config import SecurityConfig
    from tests.ports import free_coap
    from tests.wait import wait_for, wait_until

    caplog.set_level(logging.INFO, logger="jejak.tiers")
    port = free_coap()
    data = tmp_path / "r"
    national_key = load_or_create_key(tmp_path / "n" / "hub.key").public_key
    region_config = HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(data), http_port=0,
                              coap_port=port, mdns=False, auto_approve=True, checkpoint_interval=3600,
                              security=SecurityConfig(oscore=True, peer_hubs=(national_key.hex(),)))
    regional = await start_hub(region_config)
    pinned = regional.hub.signer.public_key
    signer, builder = new_device(clock)
    device_id = enroll(regional.hub, signer, clock)
    assert regional.hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    assert regional.hub.checkpoint() is not None
    national = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "n"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=0.2, upstream=(f"coap://127.0.0.1:{port} {pinned.hex()} checkpoints",)))
    hub_hex = device_id_for(pinned).hex()
    held = lambda: national.hub.store.region_checkpoints(device_id_for(pinned))  # noqa: E731

    def get(path: str) -> tuple[int, bytes]:  # from a thread: the hubs' loop goes on meanwhile
        with urllib.request.urlopen(national.http_url + path, timeout=30) as response:
            return response.status, response.read()

    async def region() -> dict:
        status, body = await asyncio.to_thread(get, "/api/regions")
        answer = json.loads(body)
        assert_documented("GET", "/api/regions", status, answer)
        [shown] = answer["regions"]
        return shown

    async def metric(state: str) -> float:
        _, body = await asyncio.to_thread(get, "/metrics")
        return next(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                    if line.startswith(f'jejak_hub_regions{{state="{state}"}}'))

    def refused_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("REGION REFUSED")]

    try:
        assert await wait_for(lambda: len(held()) == 1, timeout=30, what="the region's first checkpoint")
        first = held()[0]
        shown = await region()
        assert shown["state"] == "followed" and shown["problem"] is None
        assert await metric("followed") == 1 and await metric("refused") == 0
        # When the region signed its latest checkpoint accepted: a region that stops signing shows it getting old.
        _, body = await asyncio.to_thread(get, "/metrics")
        [signed] = [line for line in body.decode().splitlines()
                    if line.startswith(f'jejak_hub_region_checkpoint_time_seconds{{region="{hub_hex}"}}')]
        assert float(signed.rsplit(" ", 1)[1]) == decode_checkpoint(first).time

        # The region's operators replace its key and restart it on the same address: a hub with another key
        # is another hub, with a store of its own (its first store refuses the new key: HUB_KEY_MISMATCH).
        await regional.close()
        replaced = load_or_create_key(tmp_path / "r2" / "hub.key").public_key
        assert replaced != pinned
        regional = await start_hub(dataclasses.replace(region_config, data_dir=str(tmp_path / "r2")))
        assert regional.hub.signer.public_key == replaced
        assert regional.hub.checkpoint() is not None  # the new key's own log is a new leaf: a larger log

        def refused() -> dict | None:
            [shown] = json.loads(get("/api/regions")[1])["regions"]
            return shown if shown["state"] == "refused" and shown["problem"]["rounds"] >= 3 else None

        await asyncio.to_thread(wait_until, refused, 20, what="three rounds of the region refused")
        shown = await region()
        problem = shown["problem"]
        # The region answers, but outside the OSCORE context the pinned key derives: not "unreachable".
        assert problem["code"] == "REGION_UNPROTECTED", problem
        assert "outside the OSCORE context of the pinned hub key" in problem["message"]
        assert "new upstream entry" in problem["hint"]
        assert problem["since"] <= problem["last"]
        assert shown["checkpoint"]["cose"] == first.hex(), "the last checkpoint the pinned key signed stays"
        assert held() == [first], "nothing the new key signed was accepted"
        assert national.hub.store.region_checkpoints(device_id_for(replaced)) == []
        assert national.hub.store.split_views() == [], "another key is refused, not evidence against the region"
        assert await metric("refused") == 1 and await metric("followed") == 0
        [line] = refused_lines()  # once when it starts, not every round
        assert line.levelno == logging.ERROR and "REGION_UNPROTECTED" in line.getMessage()
        assert hub_hex in line.getMessage()

        # The pinned key back with its store (the operators restored it): followed again from the accepted
        # checkpoint on.
        await regional.close()
        regional = await start_hub(region_config)
        assert regional.hub.signer.public_key == pinned
        assert regional.hub.ingest(device_id, [builder.append("note", {"text": "back"}).raw]).accepted == 1
        assert regional.hub.checkpoint() is not None
        assert await wait_for(lambda: len(held()) == 2, timeout=30, what="the pinned key's next checkpoint")
        assert held()[-1] == regional.hub.latest_checkpoint().raw
        shown = await region()
        assert shown["state"] == "followed" and shown["problem"] is None
        assert await metric("followed") == 1 and await metric("refused") == 0
        assert any(r.getMessage().startswith("REGION FOLLOWED AGAIN") for r in caplog.records)
        assert len(refused_lines()) == 1
    finally:
        await national.close()
        await regional.close()


@pytest.mark.parametrize("mode", ["checkpoints", "records"])
async def test_a_mistyped_region_key_is_said_to_be_checked_first_not_blamed_on_the_region(tmp_path, clock, mode):
    """An operator pins a region's key with one hex digit wrong. The region answers outside the OSCORE context
    that key derives, as a region whose key was replaced would; but no round has ever verified under the pin, so
    `/api/regions` tells the operator to compare the pinned key with the region's own first."""
    import asyncio
    import json
    import urllib.request

    from hub.app import load_or_create_key
    from hub.config import SecurityConfig
    from tests.ports import free_coap
    from tests.wait import wait_until

    port = free_coap()
    national_key = load_or_create_key(tmp_path / "n" / "hub.key").public_key
    regional = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0, coap_port=port, mdns=False,
        checkpoint_interval=3600, security=SecurityConfig(oscore=True, peer_hubs=(national_key.hex(),))))
    assert regional.hub.checkpoint() is not None
    key = regional.hub.signer.public_key.hex()
    typo = key[:10] + ("0" if key[10] != "0" else "1") + key[11:]
    national = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "n"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=0.2, upstream=(f"coap://127.0.0.1:{port} {typo} {mode}",)))

    def refused() -> dict | None:
        with urllib.request.urlopen(national.http_url + "/api/regions", timeout=30) as response:
            shown = json.loads(response.read())["regions"]
        return shown[0] if shown and shown[0]["state"] == "refused" else None

    try:
        shown = await asyncio.to_thread(wait_until, refused, 30, what="the region refused")
        problem = shown["problem"]
        assert problem["code"] == "REGION_UNPROTECTED", problem
        assert "mistyped" in problem["message"]
        assert problem["hint"].startswith("no round has verified under the pinned key since this hub started: "
                                          "first compare the key in this hub's upstream entry with the region's own")
        assert "new upstream entry" in problem["hint"]  # and what to do if the key really is new
        assert national.hub.store.split_views() == []
    finally:
        await national.close()
        await regional.close()
