"""Every record the firmware hands out passes ledger.bodies.validate_body; random tap streams keep the
machine's promises."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import hal, runtime
from firmware.actions import Feedback, Record
from firmware.schedule import SensorSchedule
from firmware.tap import ROLES, TapConfig, TapMachine
from ledger.bodies import validate_body
from ledger.errors import MalformedRecord

STAFF = ["5a000001", "5a000002"]
PARENTS = ["c0000001"]
TAGS = [f"04{i:012x}" for i in range(12)]


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("batch", [0, 500])
def test_scan_bodies_validate_for_every_role_and_event(role, batch):
    for event in ROLES[role][2]:
        config = TapConfig("SPPG-01", role, event=event, staff_prefixes=("5a",), parent_prefixes=("c0",),
                           school="SD-01", parent="TRUCK-1", batch_linger_ms=batch, portions_per_tag=2)
        m = TapMachine(config)
        m.note_temperature(7125, 0)
        actions = m.tap(STAFF[0], 0) + m.tap(TAGS[0], 10, wall_s=1_700_000_000)
        actions += m.tap(PARENTS[0], 20) + m.tap(TAGS[1], 30, wall_s=1_700_000_001) + m.tick(10_000)
        actions += m.close(10_001)
        recs = [a for a in actions if isinstance(a, Record)]
        assert recs
        for rec in recs:
            validate_body(rec.kind, rec.body)
            assert rec.kind == "scan" and rec.body["event"] == event


def test_validate_body_would_catch_a_wrong_body():
    """The check above is real: the ledger refuses a scan body the firmware must never produce."""
    m = TapMachine(TapConfig("SPPG-01", "kitchen_exit", staff_prefixes=("5a",)))
    m.tap(STAFF[0], 0)
    body = dict(next(a for a in m.tap(TAGS[0], 1) if isinstance(a, Record)).body)
    body["count"] = -1
    with pytest.raises(MalformedRecord):
        validate_body("scan", body)


def test_reading_bodies_validate():
    """Plausible values become a reading body the ledger accepts; an implausible one is dropped, not sent."""
    s = SensorSchedule("PASAR-01")
    s.add("room", 1000, 0)
    readings = [{"temp_cc": -3999, "rh_cp": 0, "crowd": 0}, {"temp_cc": 2900}, {"rh_cp": 10000},
                {"crowd": 5, "temp_cc": 150000}]
    bodies = []
    for t, values in enumerate(readings):
        s.tick(t * 1000)
        for rec in s.result("room", values, t * 1000 + 1):
            validate_body(rec.kind, rec.body)
            assert rec.kind == "reading"
            bodies.append(rec.body)
    room = {"site": "PASAR-01", "sensor": "room"}
    assert bodies == [{**room, "temp_cc": -3999, "rh_cp": 0, "crowd": 0}, {**room, "temp_cc": 2900},
                      {**room, "rh_cp": 10000}, {**room, "crowd": 5}]
    assert s.stats["readings"] == 4 and s.stats["invalid"] == 1


def test_simulated_device_records_validate():
    rt, records = runtime.simulated(seed=4, sessions=1, tags=(3, 4))
    script = list(rt.reader.script)
    runtime.start(_until_done(rt))
    for kind, body in records:
        validate_body(kind, body)
    # Every container tapped after the staff card is recorded once, a tag read twice in a row only once.
    first_staff = next(i for i, (_, uid, _) in enumerate(script) if uid.startswith("5a"))
    tapped = [uid for _, uid, _ in script[first_staff:] if not uid.startswith("5a")]
    scans = [body for kind, body in records if kind == "scan"]
    assert sorted(t for body in scans for t in body["tags"]) == sorted(set(tapped))
    assert len(tapped) > len(set(tapped))  # the script did repeat a tag, so the line above means something
    assert {(b["event"], b["staff"], b["count"]) for b in scans} == {("departed", script[first_staff][1], 1)}
    assert any(kind == "reading" and body["sensor"] == "probe" for kind, body in records)


async def _until_done(rt):
    task = asyncio.create_task(rt.run())
    while not rt.reader.done() or rt._inflight:
        await asyncio.sleep(0.02)
    rt.stop()
    await task


uids = st.sampled_from(STAFF + PARENTS + TAGS + ["zz", "041"])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("tap"), uids, st.integers(0, 3000)),
        st.tuples(st.just("tick"), st.none(), st.integers(0, 3000)),
        st.tuples(st.just("settle"), st.booleans(), st.integers(0, 10)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps, batch=st.sampled_from([0, 700]), role=st.sampled_from(sorted(ROLES)))
def test_random_tap_streams(steps, batch, role):
    window = 1500
    config = TapConfig("SPPG-01", role, staff_prefixes=("5a",), parent_prefixes=("c0",), dup_window_ms=window,
                       session_timeout_ms=4000, batch_linger_ms=batch, batch_max=4, max_pending=6)
    m = TapMachine(config)
    now = 0
    pending = []
    handed = set()
    failed = set()
    counted = {}  # (uid, event) -> (ms, ref) of the last record handed out for it (per-tag mode)
    for op, arg, dt in steps:
        now += dt
        if op == "tap":
            actions = m.tap(arg, now)
        elif op == "tick":
            actions = m.tick(now)
        else:
            actions = []
            while pending and dt:
                rec = pending.pop(0)
                if arg:
                    single = rec.tags[0] if len(rec.tags) == 1 else None
                    assert m.confirm(rec.ref) == [Feedback(hal.ACCEPTED, "recorded", single, len(rec.tags))]
                else:
                    assert [f.status for f in m.fail(rec.ref)] == [hal.ERROR]
                    failed.add(rec.ref)
                dt -= 1
        for action in actions:
            if isinstance(action, Record):
                validate_body(action.kind, action.body)
                assert action.ref not in handed
                handed.add(action.ref)
                assert 1 <= len(action.tags) <= 4 and action.body["tags"] == list(action.tags)
                pending.append(action)
                if batch == 0:
                    key = (action.tags[0], action.body["event"])
                    if key in counted:
                        earlier, ref = counted[key]
                        assert ref in failed or now - earlier >= window, "counted twice within the window"
                    counted[key] = (now, action.ref)
            else:
                assert isinstance(action, Feedback)
                assert action.status != hal.ACCEPTED  # "accepted" only ever comes from confirm()
        assert len(m.pending) == len(pending) <= 6
