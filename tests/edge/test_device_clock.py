"""An edge tells its hub its clock in each sync round; the hub measures how far it is off and says so today, naming
the device: a clock behind dates the taps too early (a Raspberry Pi without its real-time clock boots at the time
it was shut down), which looked like a backlog sent late."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import aiocoap
import aiocoap.resource as resource
import aiohttp

from coap_server.errors import error_response
from coap_server.params import Param, coap_pairs, coap_query, device
from coap_server.sync import HeadsResource, RecordsResource, SyncReport, remote_heads
from edge.clockwatch import ClockWatch
from edge.daemon import EdgeDaemon
from ledger import ChainBuilder, Ed25519Signer
from ledger.record import decode_record
from ledger.sync import Limits
from tests.edge.common import Clocks
from tests.netns.evil_peer import Holder
from tests.ports import free_coap, free_udp
from tests.security.common import NOW, edge, edge_config, enroll_edge, secure_hub
from tests.wait import PATIENCE, wait_for

DAY = 86_400


@contextlib.asynccontextmanager
async def _edge_at(config, clock):
    daemon = EdgeDaemon(config, clock=clock)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.close()


async def _health(hub) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{hub.http_url}/api/chain/health") as resp:
        assert resp.status == 200
        return await resp.json()


async def _metrics(hub) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{hub.http_url}/metrics") as resp:
        return await resp.text()


async def test_an_edge_a_day_behind_is_named_today_with_its_offset(tmp_path):
    """Over OSCORE, as deployed: the hub's clock reads NOW, the edge's a day and 10 s less. Today's MBG findings name
    the device with the offset, /api/chain/health lists it, /metrics gives it; back on time, it is no longer said."""
    async with secure_hub(tmp_path / "hub") as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        config = edge_config(tmp_path / "edge", hub=hub.coap_url)
        async with _edge_at(config, lambda: NOW - DAY - 10):
            off = await wait_for(lambda: hub.hub.device_clocks.off(),
                                 what="the edge's clock measured")
        assert [(d, c.offset_s, c.measured_at) for d, c in off] == [(key.device_id, -DAY - 10, NOW)]
        health = await _health(hub)
        assert health["clocks_off"] == [{"device": key.device_id.hex(), "offset_s": -DAY - 10, "measured_at": NOW}]
        today = hub.views.mbg.today(NOW)
        (finding,) = [f for f in hub.views.mbg.findings(NOW, today) if f.code == "device_clock"]
        assert (finding.subject, finding.date, finding.measured, finding.limit, finding.part) == (
            key.device_id.hex(), today, -DAY - 10, 900, "behind")
        assert finding.severity == "warning"
        text = await _metrics(hub)
        assert "jejak_hub_devices_clock_off 1.0" in text
        assert f'jejak_hub_device_clock_offset_seconds{{device="{key.device_id.hex()}"}} -86410.0' in text
        async with _edge_at(config, lambda: NOW + 30):  # set right: within max_skew_s
            await wait_for(lambda: not hub.hub.device_clocks.off(), what="the clock measured right")
        assert (await _health(hub))["clocks_off"] == []
        assert not [f for f in hub.views.mbg.findings(NOW, today) if f.code == "device_clock"]
        assert "jejak_hub_devices_clock_off 0.0" in await _metrics(hub)


async def test_an_edge_ahead_without_oscore_is_named_too(tmp_path):
    """Without OSCORE the device is the one the request names (its own log, `?forked=`); a clock ahead is said so."""
    async with secure_hub(tmp_path / "hub", oscore=False) as hub:
        key = await enroll_edge(tmp_path / "edge", hub)
        async with _edge_at(edge_config(tmp_path / "edge", hub=hub.coap_url, oscore=False), lambda: NOW + 3600):
            await wait_for(lambda: hub.hub.device_clocks.off(), what="the edge's clock measured")
        (finding,) = [f for f in hub.views.mbg.findings(NOW, hub.views.mbg.today(NOW)) if f.code == "device_clock"]
        assert (finding.subject, finding.measured, finding.part) == (key.device_id.hex(), 3600, "ahead")


class Held(Holder):
    """A hub's logs: it says which it holds as forked (none)."""

    def forked(self, device_ids):
        return []


class HubFromBefore(HeadsResource):
    """A hub's heads resource from before ?now= (it knows ?forked=), or with `now` from before ?boot=, or with
    `boot` too from before ?steps=: its strict
    query parser refuses what it does not know (4.00). It keeps the queries it was asked with."""

    def __init__(self, holder, limits, now: bool = False, boot: bool = False) -> None:
        super().__init__(holder, limits)
        self.asked: list[set[str]] = []
        self.known = (Param(name="after", kind="text", size=32), device("forked"),
                      *((Param(name="now", hi=2**40),) if now else ()),
                      *((Param(name="boot", hi=2**32),) if boot else ()))

    async def render_post(self, request):
        self.asked.append({name for name, _ in coap_pairs(request)})
        try:
            coap_query(request, *self.known)
        except Exception as exc:
            return error_response(exc)
        return await super().render_post(request)


async def _rounds_with(tmp_path, heads_of, refused):
    """An edge syncing with a hub whose heads resource is `heads_of(holder, limits)`, until `refused(target)` and
    three more rounds: the target as it stands then, and the queries the hub was asked with."""
    config = edge_config(tmp_path / "edge", hub=f"coap://127.0.0.1:{free_udp()}", oscore=False)
    async with edge(config) as daemon:
        await daemon.submit([("note", {"text": "before the hub"})])
        own = daemon.key.device_id
        records = daemon.store.log_range(own, 0, 10)
    holder = Held(records)
    heads = heads_of(holder, Limits())
    site = resource.Site()
    site.add_resource(["sync", "heads"], heads)
    site.add_resource(["sync", "records"], RecordsResource(holder, Limits()))
    port = free_coap()
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    url = f"coap://127.0.0.1:{port}"
    try:
        async with edge(dataclasses.replace(config, hub=dataclasses.replace(config.hub, address=url))) as daemon:
            target = await wait_for(lambda: (t := daemon.sync.targets.get(url)) is not None and refused(t) and t,
                                    what="the hub's refusal")
            rounds = daemon.sync.rounds
            await wait_for(lambda: daemon.sync.rounds > rounds + 2, what="more rounds")
            assert target.asks_forked and target.last_error is None, target.to_json()
            return target, heads.asked
    finally:
        await server.shutdown()


async def test_an_edge_stops_telling_its_time_to_a_hub_from_before_and_goes_on_syncing(tmp_path):
    """A hub from before refuses ?now= as a query it does not know: the edge asks again without its boot, then
    without its time in that round, is still told about the fork (?forked=), and does not tell its time again."""
    target, asked = await _rounds_with(tmp_path, HubFromBefore, lambda t: not t.tells_time)
    assert not target.tells_time
    told = [q for q in asked if "now" in q]
    assert told == [{"after", "forked", "now", "boot"}, {"after", "forked", "now"}], asked
    assert {"after", "forked"} in asked[asked.index(told[-1]) + 1:]


async def test_an_edge_stops_telling_its_boot_to_a_hub_that_takes_only_its_time(tmp_path):
    """A hub that measures clocks but from before ?boot=: the edge drops the boot once and goes on telling its
    time in every round."""
    target, asked = await _rounds_with(tmp_path, lambda holder, limits: HubFromBefore(holder, limits, now=True),
                                       lambda t: not t.tells_boot)
    assert target.tells_time
    booted = [i for i, q in enumerate(asked) if "boot" in q]
    assert len(booted) == 1 and asked[booted[0] + 1] == {"after", "forked", "now"}, asked
    assert asked[booted[0] + 2:] and all(q == {"after", "forked", "now"} for q in asked[booted[0] + 2:]), asked


async def _steps(hub, tag: str) -> list[dict]:
    """The steps of a container's timelines in the hub's MBG answer, once it has any."""
    deadline = time.monotonic() + 10 * PATIENCE
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{hub.http_url}/api/mbg/containers/{tag}") as resp:
                assert resp.status in (200, 404), resp.status  # 404: no tap of it yet
                steps = [s for t in (await resp.json())["timelines"] for s in t["steps"]] if resp.status == 200 else []
            if steps:
                return steps
            assert time.monotonic() < deadline, f"no tap of {tag} at the hub"
            await asyncio.sleep(0.05)


async def test_the_taps_of_an_edge_two_hours_slow_are_timed_by_its_clock_set_right(tmp_path):
    """A kitchen's edge boots two hours behind and syncs at once, over OSCORE: its taps are signed with its own
    time, and the hub times them by that time less the offset it measured in that boot (`corrected`), not as a
    backlog sent two hours late. Its clock set right, a tap is timed by its device again. A restarted hub times
    them as it did."""
    async with secure_hub(tmp_path / "hub") as hub:
        await enroll_edge(tmp_path / "edge", hub)
        config = edge_config(tmp_path / "edge", hub=hub.coap_url)
        async with _edge_at(config, lambda: NOW - 7_200) as daemon:
            await wait_for(lambda: hub.hub.device_clocks.off(), what="the edge's clock measured")
            await daemon.submit([("scan", {"event": "departed", "site": "sppg-01", "staff": "5a000001", "tags": ["04A1B2C3"]})])
            steps = await _steps(hub, "04A1B2C3")
            (signed,) = [r for r in hub.hub.store.log_range(daemon.key.device_id, 0, 100) if b"04A1B2C3" in r]
        assert decode_record(signed).time == NOW - 7_200
        assert [(s["event"], s["time"], s["basis"]) for s in steps] == [("departed", NOW, "corrected")]
        async with _edge_at(config, lambda: NOW + 5) as daemon:
            await wait_for(lambda: not hub.hub.device_clocks.off(), what="the clock measured right")
            await daemon.submit([("scan", {"event": "departed", "site": "sppg-01", "staff": "5a000001", "tags": ["04D4E5F6"]})])
            steps = await _steps(hub, "04D4E5F6")
        assert [(s["event"], s["time"], s["basis"]) for s in steps] == [("departed", NOW, "arrival")]
    async with secure_hub(tmp_path / "hub") as hub:  # restarted: the records refilled are timed as before
        assert [(s["time"], s["basis"]) for s in await _steps(hub, "04A1B2C3")] == [(NOW, "corrected")]
        assert [(s["time"], s["basis"]) for s in await _steps(hub, "04D4E5F6")] == [(NOW, "arrival")]


async def test_the_taps_made_before_ntp_set_the_clock_right_are_timed_by_the_clock_as_it_was(tmp_path):
    """A kitchen's Pi boots three hours slow (no real-time clock) with its hub out of reach, and a tap is signed
    with that time; then NTP sets its clock right and the hub comes back. The edge tells the hub its time (now
    right) and where its clock stepped in this boot: the tap is timed by its clock less the three hours, not as a
    backlog of three hours (nor at its arrival), and the edge's /status shows the step."""
    port = free_coap()
    async with secure_hub(tmp_path / "hub", coap_port=port) as hub:
        await enroll_edge(tmp_path / "edge", hub)
    config = edge_config(tmp_path / "edge", hub=f"coap://127.0.0.1:{port}")
    clocks = Clocks(NOW - 3 * 3600)
    async with _edge_at(config, ClockWatch(wall=clocks.wall, ticks=lambda: clocks.ticks)) as daemon:
        await daemon.submit([("scan", {"event": "departed", "site": "sppg-01", "staff": "5a000001",
                                       "tags": ["04C0FFEE"]})])
        clocks.tick(60)
        clocks.set_wall(NOW)
        async with secure_hub(tmp_path / "hub", coap_port=port) as hub:
            daemon.sync.add(f"coap://127.0.0.1:{port}", "hub")  # back: asked at once, past the backoff
            steps = await _steps(hub, "04C0FFEE")
            own = daemon.key.device_id
            (signed,) = [r for r in hub.hub.store.log_range(own, 0, 100) if b"04C0FFEE" in r]
            status = daemon.status()
    assert decode_record(signed).time == NOW - 3 * 3600
    assert [(s["time"], s["basis"]) for s in steps] == [(NOW - 60, "corrected")]
    assert status["clock_steps"] == [{"seq": decode_record(signed).seq + 1, "seconds": 3 * 3600 - 60}]


async def test_a_hub_from_before_steps_is_told_the_time_and_boot_without_them(tmp_path):
    """A hub that takes the time and the boot but not ?steps= refuses the query (4.00): asked again without the
    steps in the same request, it is told the rest, and the report says the steps were refused."""
    genesis = ChainBuilder(Ed25519Signer.from_seed(b"\x31" * 32), clock=lambda: NOW, boot=1).genesis().raw
    heads = HubFromBefore(Held([genesis]), Limits(), now=True, boot=True)
    site = resource.Site()
    site.add_resource(["sync", "heads"], heads)
    port = free_coap()
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    ctx = await aiocoap.Context.create_client_context()
    try:
        report = SyncReport()
        await remote_heads(ctx, f"coap://127.0.0.1:{port}", Limits(), report, now=lambda: NOW, boot=lambda: 3,
                           steps=lambda: [(7, 10_800)])
        assert heads.asked == [{"after", "now", "boot", "steps"}, {"after", "now", "boot"}]
        assert report.steps_refused and not report.boot_refused and not report.now_refused
        await remote_heads(ctx, f"coap://127.0.0.1:{port}", Limits(), SyncReport(), now=lambda: NOW,
                           boot=lambda: 3, steps=lambda: [])
        assert heads.asked[-1] == {"after", "now", "boot"}, "no step: none told"
    finally:
        await ctx.shutdown()
        await server.shutdown()
