"""A school day through ten real edges and a real hub: enrolled with the hub's QR code, tapped over CoAP on the
simulated reader, pushed by each edge's own sync, counted by the hub's MBG view. Each edge's reader keeps no
window of its own (every tap is a record), so the hub alone must count each container once."""

from __future__ import annotations

import contextlib

from coap_server.client import EdgeClient
from edge.config import (
    CheckpointConfig,
    CoapConfig,
    EdgeConfig,
    HubConfig,
    SecurityConfig,
    SimConfig,
    SyncConfig,
)
from edge.daemon import EdgeDaemon
from hub.app import start_hub
from hub.config import HubConfig as HubSettings
from hub.config import SecurityConfig as HubSecurityConfig
from hub.mbg import Kitchen, MbgView, Plan, School
from tests.hub.conftest import Clock
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tests.security.common import enroll_edge
from tests.wait import wait_for

# The edges below run with no sensors, so no tap carries a temperature: the plan says the kitchen has no probe.
PLAN = Plan(kitchens=(Kitchen(id="K1", temperature_required=False),),
            schools=(School(id="S1", name="SD 1", kitchen="K1", portions=30, deadline_s=9 * H),
                     School(id="S2", name="SD 2", kitchen="K1", portions=30, deadline_s=9 * H)),
            service_weekdays=(0, 1, 2, 3, 4, 5, 6))
STAFF = "5a000001"
A = ["04a1000000000001", "04a1000000000002", "04a1000000000003"]  # S1's ompreng; A[2] falls off the truck
B = ["04b2000000000001", "04b2000000000002"]  # S2's first two
M_ = "04b2000000000003"  # S2's third, dropped at S1's gate first
EDGES = {  # name: (site, role, event, destination school)
    "kitchen": ("K1", "kitchen", "cooked", None),
    "exit-S1": ("K1", "kitchen_exit", None, "S1"),
    "exit-S2": ("K1", "kitchen_exit", None, "S2"),
    "gate-S1": ("S1", "school_gate", "arrived", None),
    "gate-S2": ("S2", "school_gate", "arrived", None),
    "recv-S1": ("S1", "school_gate", "received", None),
    "recv-S2": ("S2", "school_gate", "received", None),
    "serve-S1": ("S1", "school_gate", "served", None),
    "serve-S2": ("S2", "school_gate", "served", None),
    "return": ("K1", "return", None, None),
}
DAY = [  # (time of day, edge, container taps between the staff card's two taps)
    (5 * H + 30 * M, "kitchen", [A[0]]),
    (6 * H + 30 * M, "exit-S1", A),
    (6 * H + 35 * M, "exit-S2", [*B, M_]),
    (7 * H + 10 * M, "gate-S1", [A[0], A[1], M_]),
    (7 * H + 15 * M, "recv-S1", [A[0], A[1], A[1]]),  # A[1] tapped twice
    (7 * H + 30 * M, "gate-S2", [*B, M_]),
    (7 * H + 35 * M, "recv-S2", [*B, M_]),
    (8 * H + 30 * M, "serve-S1", [A[0], A[1]]),
    (8 * H + 40 * M, "serve-S2", [*B, M_]),
    (13 * H, "return", [A[0], A[1], *B, M_]),
]


async def test_a_school_day_through_real_edges(tmp_path) -> None:
    clock = Clock(MIDNIGHT + 5 * H)
    settings = HubSettings(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                           auto_approve=True, checkpoint_interval=3600, security=HubSecurityConfig(oscore=False))
    running = await start_hub(settings, clock=clock)
    view = MbgView(PLAN)
    running.hub.listeners.on_records.append(lambda records, at: [view.ingest(r, at) for r in records])
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(running.close)
        edges: dict[str, tuple[EdgeDaemon, EdgeClient]] = {}
        for name, (site, role, event, school) in EDGES.items():
            data = tmp_path / name
            await enroll_edge(data, running, site=site)
            config = EdgeConfig(
                data_dir=str(data), site=site, sensors=(), coap=CoapConfig(host="127.0.0.1", port=0),
                checkpoint=CheckpointConfig(role=role, event=event, school=school, staff=(STAFF,), dup_window_s=0,
                                            portions_per_tag=10),
                sim=SimConfig(tap_interval_ms=0), sync=SyncConfig(mdns=False, interval_s=0.2),
                hub=HubConfig(address=running.coap_url), security=SecurityConfig(oscore=False))
            daemon = EdgeDaemon(config, clock=clock)
            await daemon.start()
            stack.push_async_callback(daemon.close)
            client = await stack.enter_async_context(EdgeClient(f"coap://127.0.0.1:{daemon.coap_port}", timeout=10))
            edges[name] = (daemon, client)

        for at, name, tags in DAY:
            daemon, client = edges[name]
            clock.now = MIDNIGHT + at
            feedback = [await client.tap(uid) for uid in [STAFF, *tags, STAFF]]
            assert [f[-1]["status"] for f in feedback[1:-1]] == ["accepted"] * len(tags), feedback
            await wait_for(lambda d=daemon: _at_hub(running, d), what=f"{name}'s records at the hub")

        now = MIDNIGHT + 20 * H
        assert view.rejected == []
        found = {f.key(): f for f in view.findings(now, DATE)}
        assert set(found) == {("duplicate_scan", "S1"), ("misrouted", "S1"), ("short_delivery", "S1"),
                              ("container_unreturned", "S1")}
        assert found[("duplicate_scan", "S1")].containers == (A[1],)
        assert (found[("misrouted", "S1")].containers, found[("misrouted", "S1")].other_school) == ((M_,), "S2")
        assert (found[("short_delivery", "S1")].measured, found[("short_delivery", "S1")].limit) == (20, 30)
        assert found[("container_unreturned", "S1")].containers == (A[2],)
        assert view.violations(now, DATE) == []  # A[2]'s meals were eaten by nobody; S1 served the rest in time
        got = {d.school: (d.received_portions, d.containers_in, d.containers_out)
               for d in view.deliveries(now, DATE)}
        assert got == {"S1": (20, 2, 3), "S2": (30, 3, 3)}
        # The kitchen edge stamps cook-end with its own clock, so every container's timeline starts there.
        [a1] = view.container(A[1], now)
        assert a1.first("cooked") is not None and a1.first("cooked").time == MIDNIGHT + 5 * H + 30 * M  # type: ignore[union-attr]
        [timeline] = view.container(M_, now)
        assert [(s.event, s.site) for s in timeline.steps if s.event == "arrived"] == [("arrived", "S1"),
                                                                                        ("arrived", "S2")]
        receiving = [e for e in view.epcis_document(now, DATE)["epcisBody"]["eventList"]
                     if e["bizStep"].endswith("receiving") and e["disposition"].endswith("in_progress")]
        assert sorted(epc.rsplit(":", 1)[1] for e in receiving for epc in e["epcList"]) == sorted(
            [A[0], A[1], *B, M_])


def _at_hub(running, daemon: EdgeDaemon) -> bool:  # type: ignore[no-untyped-def]
    state = running.hub.store.chain_state(daemon.key.device_id)
    own = daemon.store.state(daemon.key.device_id)
    return state is not None and own is not None and state.length == own.length
