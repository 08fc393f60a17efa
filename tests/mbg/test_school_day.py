"""A school day replayed through the hub's ingest: every tap made by the firmware's tap machine, signed on a
device chain, accepted by the hub on LMDB and read by the MBG view, with each counting anomaly seen in the
field. The findings are asserted exactly (kind, school, containers, values) and the counts equal the truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from firmware.actions import Record
from firmware.tap import TapConfig, TapMachine
from hub.mbg import Kitchen, MbgView, Plan, School
from hub.service import Hub
from hub.store import LmdbHubStore
from ledger import ChainBuilder, Ed25519Signer
from ledger.enroll import make_enroll_request
from tests.hub.conftest import Clock
from tests.mbg.common import DATE, MIDNIGHT, H, M

PPC = 10  # portions per ompreng, as the plan and every device's tap machine say
SCHOOLS = ("S1", "S2", "S3", "S4", "S5")
# The tap machines below are given no probe reading, so no tap carries a temperature: the plan says the kitchen has
# no probe, and the day's findings are the counting anomalies alone.
PLAN = Plan(kitchens=(Kitchen(id="K1", name="SPPG Cibeureum", temperature_required=False),),
            schools=tuple(School(id=s, name=f"SD Negeri {s[1]}", kitchen="K1", portions=100, deadline_s=9 * H)
                          for s in SCHOOLS),
            portions_per_container=PPC)
STAFF = "5a000001"
LAG = 20  # seconds from a tap to its record reaching the hub


def tag(school: str, n: int) -> str:
    return f"04{int(school[1]):02x}{n:010x}"


# The truth of the day. Each school expects 100 portions (10 ompreng).
M_TAG = tag("S2", 9)  # bound for S2, dropped at S3's gate first, then driven on to S2
D_TAG = tag("S2", 10)  # left the kitchen without a destination; reached S2, then tapped in by mistake at S1
L_TAG = tag("S5", 10)  # fell off the truck to S5: never arrives, never comes back
REPEAT = tag("S1", 3)  # tapped "received" at S1 again 40 s later (past the reader's 30 s window)
LOADS = {  # containers each school's truck carries, as the kitchen exit named them
    "S1": [tag("S1", n) for n in range(1, 11)],
    "S2": [tag("S2", n) for n in range(1, 10)],  # eight of its own and M; D went unnamed
    "S3": [tag("S3", n) for n in range(1, 11)],
    "S4": [tag("S4", n) for n in range(1, 12)],  # the kitchen sent eleven
    "S5": [tag("S5", n) for n in range(1, 11)],
}
ARRIVE = {s: MIDNIGHT + 7 * H + i * 10 * M for i, s in enumerate(SCHOOLS)}  # 07:00, 07:10, ...
SERVE = MIDNIGHT + 8 * H + 45 * M
NOW = MIDNIGHT + 20 * H


@dataclass(kw_only=True)
class Device:
    """One checkpoint: the firmware's tap machine, a signing chain and its push to the hub."""

    site: str
    machine: TapMachine
    builder: ChainBuilder
    now: int = 0
    records: int = 0

    @property
    def device_id(self) -> bytes:
        return self.builder.device_id


@dataclass(kw_only=True)
class Day:
    hub: Hub
    view: MbgView
    hub_clock: Clock
    devices: dict[str, Device] = field(default_factory=dict)
    taps: list[tuple[int, int, Callable[[], None]]] = field(default_factory=list)

    def device(self, name: str, site: str, role: str) -> Device:
        signer = Ed25519Signer.from_seed(name.encode().ljust(32, b"."))
        dev = Device(site=site, machine=TapMachine(TapConfig(site, role, staff=(STAFF,), portions_per_tag=PPC)),
                     builder=ChainBuilder(signer, clock=lambda: dev.now, boot=1))
        self.hub.enroll(make_enroll_request(signer, site=site, role=role, name=name, time=MIDNIGHT,
                                            hub_id=self.hub.hub_id))
        self.hub.approve(dev.device_id)
        dev.now = MIDNIGHT
        self._push(dev, [dev.builder.genesis().raw], MIDNIGHT)
        self.devices[name] = dev
        return dev

    def session(self, name: str, at: int, tags: list[str | tuple[str, int]], *, event: str | None = None,
                school: str | None = None) -> None:
        """A staff card, the container taps (a tuple waits its seconds first), the staff card again."""
        dev = self.devices[name]

        def start() -> None:
            if event is not None:
                dev.machine.set_event(event)
            dev.machine.set_school(school)

        self._at(at, dev, start)
        t = at
        for item in [STAFF, *tags, STAFF]:
            uid, wait = item if isinstance(item, tuple) else (item, 5)
            t += wait
            self._at(t, dev, lambda uid=uid, t=t: self._tap(dev, uid, t))

    def replay(self, until: int) -> None:
        """Play every tap up to `until`, in time order; each record reaches the hub LAG seconds later."""
        for _, _, action in sorted((x for x in self.taps if x[0] <= until), key=lambda x: (x[0], x[1])):
            action()
        self.taps = [x for x in self.taps if x[0] > until]

    def _at(self, at: int, dev: Device, action: Callable[[], None]) -> None:
        self.taps.append((at, len(self.taps), action))

    def _tap(self, dev: Device, uid: str, at: int) -> None:
        dev.now = at
        for action in dev.machine.tap(uid, (at - MIDNIGHT) * 1000, wall_s=at):
            if isinstance(action, Record):
                record = dev.builder.append(action.kind, action.body)
                dev.machine.confirm(action.ref)
                dev.records += 1
                self._push(dev, [record.raw], at + LAG)

    def _push(self, dev: Device, raws: list[bytes], arrival: int) -> None:
        self.hub_clock.now = max(self.hub_clock.now, arrival)
        result = self.hub.ingest(dev.device_id, raws)
        assert result.accepted == len(raws) and result.problem is None, result


@pytest.fixture
def day(tmp_path):
    store = LmdbHubStore(tmp_path / "hub")
    clock = Clock(MIDNIGHT)
    hub = Hub(store, Ed25519Signer.from_seed(b"\x42" * 32), clock=clock)
    view = MbgView(PLAN)
    hub.listeners.on_records.append(lambda records, arrived_at: [view.ingest(r, arrived_at) for r in records])
    d = Day(hub=hub, view=view, hub_clock=clock)
    d.device("kitchen", "K1", "kitchen")
    d.device("exit", "K1", "kitchen_exit")
    d.device("return", "K1", "return")
    for s in SCHOOLS:
        d.device(f"gate-{s}", s, "school_gate")
    _plan_the_day(d)
    yield d
    store.close()


def _plan_the_day(d: Day) -> None:
    d.session("kitchen", MIDNIGHT + 5 * H + 30 * M, [tag("S1", 1)], event="cooked")
    for i, s in enumerate(SCHOOLS):
        d.session("exit", MIDNIGHT + 6 * H + 30 * M + i * 3 * M, LOADS[s], school=s)
    d.session("exit", MIDNIGHT + 6 * H + 50 * M, [D_TAG])  # no destination set for this one
    for s in SCHOOLS:
        gate = f"gate-{s}"
        came = {"S1": LOADS["S1"], "S2": [*LOADS["S2"][:8], D_TAG], "S3": LOADS["S3"], "S4": LOADS["S4"],
                "S5": LOADS["S5"][:9]}[s]
        d.session(gate, ARRIVE[s], came, event="arrived")
        received: list[str | tuple[str, int]] = list(came)
        if s == "S1":
            received.insert(4, (REPEAT, 40))
        d.session(gate, ARRIVE[s] + 5 * M, received, event="received")
    # M is tapped in at S3's gate with S3's load, noticed, and driven on to S2.
    d.session("gate-S3", ARRIVE["S3"] + 2 * M, [M_TAG], event="arrived")
    d.session("gate-S2", ARRIVE["S3"] + 20 * M, [M_TAG], event="arrived")
    d.session("gate-S2", ARRIVE["S3"] + 22 * M, [M_TAG], event="received")
    # Someone at S1 taps D, S2's container, at S1's gate late in the morning.
    d.session("gate-S1", MIDNIGHT + 8 * H + 15 * M, [D_TAG], event="arrived")
    for s in SCHOOLS:
        came = {"S2": [*LOADS["S2"][:8], D_TAG, M_TAG], "S5": LOADS["S5"][:9]}.get(s, LOADS[s])
        d.session(f"gate-{s}", SERVE, came, event="served")
    back = [t for s in SCHOOLS for t in LOADS[s] if t != L_TAG] + [D_TAG]
    d.session("return", MIDNIGHT + 13 * H, back)


def _findings(view: MbgView, now: int) -> dict[tuple[str, str], dict]:
    found = view.findings(now, DATE)
    by_key = {f.key(): f.to_dict() for f in found}
    assert len(by_key) == len(found), "one finding per kind and subject"
    return by_key


def test_the_day_counts_each_container_once_and_names_every_anomaly(day: Day) -> None:
    day.replay(NOW)
    view = day.view
    assert view.rejected == []
    found = _findings(view, NOW)
    assert set(found) == {("duplicate_scan", "S1"), ("container_at_two_schools", "S1"), ("misrouted", "S3"),
                          ("over_receipt", "S4"), ("short_delivery", "S5"), ("container_unreturned", "S5")}
    assert found[("duplicate_scan", "S1")]["containers"] == [REPEAT]
    two = found[("container_at_two_schools", "S1")]
    assert (two["containers"], two["other_school"], two["measured"]) == ([D_TAG], "S2", 1)
    misrouted = found[("misrouted", "S3")]
    assert (misrouted["containers"], misrouted["other_school"], misrouted["measured"]) == ([M_TAG], "S2", 1)
    assert "S2 (SD Negeri 2)" in misrouted["detail"] and misrouted["severity"] == "alert"
    over = found[("over_receipt", "S4")]
    assert (over["measured"], over["limit"]) == (110, 100) and "11 containers in, 11 out" in over["detail"]
    short = found[("short_delivery", "S5")]
    assert (short["measured"], short["limit"], short["detail"]) == (90, 100, "received 90 of 100 portions")
    assert found[("container_unreturned", "S5")]["containers"] == [L_TAG]
    # L never reached S5, which served its other nine on time: no food-safety alarm for meals nobody ate.
    assert view.violations(NOW, DATE) == []

    # The counts are the truth: (portions received, containers in, containers out, status) per school.
    got = {d.school: (d.received_portions, d.containers_in, d.containers_out, d.status)
           for d in view.deliveries(NOW, DATE)}
    assert got == {"S1": (100, 10, 10, "on_time"), "S2": (100, 10, 9, "on_time"), "S3": (100, 10, 10, "on_time"),
                   "S4": (110, 11, 11, "on_time"), "S5": (90, 9, 10, "short")}
    kitchen = view.deliveries_by_kitchen(NOW, DATE)["K1"]
    assert sum(s["received_portions"] for s in kitchen["schools"]) == 500
    assert kitchen["counts"]["short"] == 1 and kitchen["counts"]["on_time"] == 4
    assert view.summary(NOW)["portions"] == {"expected": 500, "received": 500}

    # M's timeline keeps both arrivals, the wrong school's and the real one.
    [timeline] = view.container(M_TAG, NOW)
    assert timeline.school == "S2"
    assert [(s.event, s.site) for s in timeline.steps if s.event in ("arrived", "received")] == [
        ("arrived", "S3"), ("arrived", "S2"), ("received", "S2")]

    # The EPCIS export holds one receiving event per container and school: the repeated tap adds none.
    events = view.epcis_document(NOW, DATE)["epcisBody"]["eventList"]
    receiving = [e for e in events if e["bizStep"].endswith("receiving") and e["disposition"].endswith("in_progress")]
    received = [(epc.rsplit(":", 1)[1], e["bizLocation"]["id"].rsplit(":", 1)[1])
                for e in receiving for epc in e["epcList"]]
    assert len(received) == len(set(received)) == 50
    assert sum(q["quantity"] for e in receiving for q in e["quantityList"]) == 500
    # ... while every tap the gate made is still a signed record at the hub.
    assert day.devices["gate-S1"].records == 10 + 11 + 1 + 10


def test_a_gate_still_tapping_is_receiving_not_short(day: Day) -> None:
    # S5's gate has tapped five of its containers in (a staff card, then one every 5 s): too early to call the
    # delivery short.
    during = ARRIVE["S5"] + 6 * 5 + 2
    day.replay(during)
    [s5] = day.view.deliveries(during, DATE, school="S5")
    assert (s5.status, s5.containers_in, s5.received_portions) == ("receiving", 5, 50)
    assert ("short_delivery", "S5") not in _findings(day.view, during)
    # Every container has been tapped in and received, and the gate has been quiet for the settle time (the view
    # answers per minute, hence the minute more).
    settled = ARRIVE["S5"] + 5 * M + 10 * 5 + PLAN.settle_s + M
    day.replay(settled)
    [s5] = day.view.deliveries(settled, DATE, school="S5")
    assert (s5.status, s5.received_portions, s5.shortfall) == ("short", 90, 10)
    assert _findings(day.view, settled)[("short_delivery", "S5")]["measured"] == 90
    # Before S5's meal is served, the lost container's timer is still open; it is no finding yet (under 4 h).
    assert day.view.violations(settled, DATE) == []
