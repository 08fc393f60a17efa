"""Tap state machine cases, plain functions that run under CPython (pytest) and MicroPython (node)."""

from firmware import hal
from firmware.actions import Feedback, Record
from firmware.tap import ROLES, TapConfig, TapMachine

STAFF_A = "5a000001"
STAFF_B = "5a000002"
TAG_1 = "04a1b2c3d4e501"
TAG_2 = "04a1b2c3d4e502"
TAG_3 = "04a1b2c3d4e503"


def machine(role="kitchen_exit", **options):
    base = {"staff_prefixes": ("5a",), "dup_window_ms": 10000, "session_timeout_ms": 60000}
    base.update(options)
    return TapMachine(TapConfig("SPPG-01", role, **base))


def records(actions):
    return [a for a in actions if isinstance(a, Record)]


def feedback(actions):
    return [(a.status, a.reason) for a in actions if isinstance(a, Feedback)]


def check_role_decides_event():
    expected = {"kitchen": ("kitchen", "packed"), "kitchen_exit": ("kitchen_exit", "departed"),
                "school_gate": ("school_gate", "arrived"), "return": ("return", "returned"),
                "market_stall": ("market_stall", "received")}
    assert sorted(ROLES) == sorted(expected)
    for role in expected:
        m = machine(role)
        m.tap(STAFF_A, 0)
        out = m.tap(TAG_1, 10)
        recs = records(out)
        assert len(recs) == 1, (role, out)
        body = recs[0].body
        assert (body["checkpoint"], body["event"]) == expected[role], (role, body)
        assert body["site"] == "SPPG-01" and body["tags"] == [TAG_1] and body["source"] == "nfc"
        assert body["staff"] == STAFF_A and body["count"] == 1


def check_event_override_and_bad_event():
    m = machine("school_gate", event="received")
    m.tap(STAFF_A, 0)
    assert records(m.tap(TAG_1, 1))[0].body["event"] == "received"
    try:
        machine("kitchen_exit", event="arrived")
    except ValueError as error:
        assert "departed" in str(error)
    else:
        raise AssertionError("kitchen_exit accepted event arrived")


def check_bad_config_is_refused():
    for options in ({"dup_window_ms": -1}, {"batch_max": 0}, {"batch_max": 1000}, {"session_timeout_ms": 0},
                    {"staff": ("zz",)}, {"staff_prefixes": ("xyz",)}):
        try:
            machine(**options)
        except ValueError:
            continue
        raise AssertionError(f"accepted {options!r}")
    for site, role in (("", "kitchen"), ("S", "garden")):
        try:
            TapConfig(site, role)
        except ValueError:
            continue
        raise AssertionError(f"accepted {site!r} {role!r}")


def check_container_without_session_is_refused():
    m = machine()
    out = m.tap(TAG_1, 0)
    assert out == [Feedback(hal.REFUSED, "no_session", TAG_1)], out
    assert m.stats["refused"] == 1 and not m.pending


def check_accepted_only_after_confirm():
    m = machine()
    assert feedback(m.tap(STAFF_A, 0)) == [(hal.OPENED, "staff_card")]
    out = m.tap(TAG_1, 100)
    assert len(out) == 1 and isinstance(out[0], Record), out
    ref = out[0].ref
    assert m.pending == [ref]
    assert m.confirm(ref) == [Feedback(hal.ACCEPTED, "recorded", TAG_1, 1)]
    assert m.pending == []
    assert m.confirm(ref) == []  # a second confirm is a no-op


def check_failed_store_shows_error_and_allows_retap():
    m = machine()
    m.tap(STAFF_A, 0)
    rec = records(m.tap(TAG_1, 100))[0]
    assert m.fail(rec.ref, "disk_full") == [Feedback(hal.ERROR, "disk_full", TAG_1, 1)]
    again = m.tap(TAG_1, 200)
    assert len(records(again)) == 1, again  # not folded as a duplicate of a record that was never stored
    assert m.stats["errors"] == 1


def check_duplicate_within_window_is_one_event():
    m = machine(dup_window_ms=5000)
    m.tap(STAFF_A, 0)
    first = records(m.tap(TAG_1, 1000))[0]
    m.confirm(first.ref)
    assert m.tap(TAG_1, 1500) == [Feedback(hal.DUPLICATE, "within_window", TAG_1)]
    assert m.tap(TAG_1, 5999) == [Feedback(hal.DUPLICATE, "within_window", TAG_1)]
    assert len(records(m.tap(TAG_1, 6000))) == 1  # window measured from the counted tap
    assert m.stats["duplicate"] == 2


def check_duplicate_while_pending_and_across_sessions():
    m = machine(dup_window_ms=5000)
    m.tap(STAFF_A, 0)
    rec = records(m.tap(TAG_1, 10))[0]
    assert feedback(m.tap(TAG_1, 20)) == [(hal.DUPLICATE, "within_window")]  # not yet confirmed
    m.confirm(rec.ref)
    m.tap(STAFF_B, 30)  # another staff member takes over
    assert feedback(m.tap(TAG_1, 40)) == [(hal.DUPLICATE, "within_window")]


def check_event_switch_is_not_a_duplicate():
    m = machine("kitchen", event="cooked", dup_window_ms=60000)
    m.tap(STAFF_A, 0)
    cooked = records(m.tap(TAG_1, 10, wall_s=1700000100))[0]
    assert cooked.body["event"] == "cooked" and cooked.body["cooked_at"] == 1700000100
    assert m.set_event("packed") == []
    packed = records(m.tap(TAG_1, 20, wall_s=1700000200))[0]
    assert packed.body["event"] == "packed" and "cooked_at" not in packed.body
    try:
        m.set_event("arrived")
    except ValueError:
        pass
    else:
        raise AssertionError("kitchen accepted event arrived")


def check_same_staff_card_closes_session():
    m = machine()
    m.tap(STAFF_A, 0)
    for rec in records(m.tap(TAG_1, 10) + m.tap(TAG_2, 20)):
        m.confirm(rec.ref)
    out = m.tap(STAFF_A, 30)
    assert out == [Feedback(hal.CLOSED, "staff_card", STAFF_A, 2)], out
    assert m.session is None
    assert feedback(m.tap(TAG_3, 40)) == [(hal.REFUSED, "no_session")]


def check_other_staff_card_takes_over():
    m = machine()
    m.tap(STAFF_A, 0)
    out = m.tap(STAFF_B, 10)
    assert feedback(out) == [(hal.OPENED, "staff_changed")], out
    assert m.session.staff == STAFF_B
    assert records(m.tap(TAG_1, 20))[0].body["staff"] == STAFF_B


def check_session_timeout():
    m = machine(session_timeout_ms=1000)
    m.tap(STAFF_A, 0)
    m.tap(TAG_1, 500)  # activity keeps the session open
    assert m.next_deadline() == 1500
    assert m.tick(1499) == []
    assert feedback(m.tick(1500)) == [(hal.CLOSED, "timeout")]
    assert m.next_deadline() is None
    assert feedback(m.tap(TAG_2, 1600)) == [(hal.REFUSED, "session_expired")]
    # a timeout found by the tap itself (no tick in between) says the same
    m.tap(STAFF_A, 2000)
    out = m.tap(TAG_3, 3500)
    assert feedback(out) == [(hal.CLOSED, "timeout"), (hal.REFUSED, "session_expired")], out
    m.tap(STAFF_B, 3600)
    m.tap(STAFF_B, 3700)
    assert feedback(m.tap(TAG_3, 3800)) == [(hal.REFUSED, "no_session")]


def check_staff_allow_list_and_unknown_tags():
    m = TapMachine(TapConfig("SPPG-01", "school_gate", staff=("AA:BB:CC:DD",), container_prefixes=("04",)))
    assert feedback(m.tap("aabbccdd", 0)) == [(hal.OPENED, "staff_card")]
    assert feedback(m.tap("0811223344", 1)) == [(hal.REFUSED, "unknown_tag")]
    assert len(records(m.tap("04-11-22-33-44-55-66", 2))) == 1
    assert feedback(m.tap("not hex", 3)) == [(hal.REFUSED, "bad_uid")]
    assert feedback(m.tap("04", 4)) == [(hal.REFUSED, "bad_uid")]
    assert feedback(m.tap(bytes([0x04, 0x11, 0x22, 0x33]), 5)) == []  # bytes uid accepted (record only)


def check_parent_tag_sets_parent():
    m = machine(parent_prefixes=("c0",), parent="TRUCK-DEFAULT", school="SD-01")
    m.tap(STAFF_A, 0)
    assert records(m.tap(TAG_1, 1))[0].body["parent"] == "TRUCK-DEFAULT"
    assert feedback(m.tap("c0ffee01", 2)) == [(hal.PARENT_SET, "parent_set")]
    body = records(m.tap(TAG_2, 3))[0].body
    assert body["parent"] == "c0ffee01" and body["school"] == "SD-01"
    assert feedback(machine(parent_prefixes=("c0",)).tap("c0ffee01", 0)) == [(hal.REFUSED, "no_session")]


def check_school_only_on_departures():
    m = machine("school_gate", school="SD-01")
    m.tap(STAFF_A, 0)
    assert "school" not in records(m.tap(TAG_1, 1))[0].body
    m = machine("kitchen_exit", school="SD-01")
    m.tap(STAFF_A, 0)
    assert records(m.tap(TAG_1, 1))[0].body["school"] == "SD-01"
    m.set_school("SD-02")
    assert records(m.tap(TAG_2, 2))[0].body["school"] == "SD-02"


def check_temperature_when_fresh():
    m = machine(temp_max_age_ms=1000, portions_per_tag=3)
    m.tap(STAFF_A, 0)
    m.note_temperature(6512, 100)
    body = records(m.tap(TAG_1, 900))[0].body
    assert body["temp_cc"] == 6512 and body["count"] == 3
    assert "temp_cc" not in records(m.tap(TAG_2, 1200))[0].body
    m2 = machine(portions_per_tag=0)
    m2.tap(STAFF_A, 0)
    assert "count" not in records(m2.tap(TAG_1, 1))[0].body


def check_busy_when_too_many_unconfirmed():
    m = machine(max_pending=2)
    m.tap(STAFF_A, 0)
    first = records(m.tap(TAG_1, 1))[0]
    records(m.tap(TAG_2, 2))
    assert feedback(m.tap(TAG_3, 3)) == [(hal.REFUSED, "busy")]
    m.confirm(first.ref)
    assert len(records(m.tap(TAG_3, 4))) == 1


def check_batch_mode():
    m = machine(batch_linger_ms=2000, batch_max=3)
    m.tap(STAFF_A, 0)
    assert m.tap(TAG_1, 100) == [Feedback(hal.SEEN, "queued", TAG_1, 1)]
    assert m.tap(TAG_2, 200) == [Feedback(hal.SEEN, "queued", TAG_2, 2)]
    assert feedback(m.tap(TAG_2, 300)) == [(hal.DUPLICATE, "within_window")]
    out = m.tap(TAG_3, 400)  # the batch is full
    recs = records(out)
    assert len(recs) == 1 and recs[0].body["tags"] == [TAG_1, TAG_2, TAG_3] and recs[0].body["count"] == 3
    assert m.confirm(recs[0].ref) == [Feedback(hal.ACCEPTED, "recorded", None, 3)]
    # linger: a lone tap is written batch_linger_ms after it was made
    m.tap("04ffffffffff01", 1000)
    assert m.next_deadline() == 3000
    assert m.tick(2999) == []
    linger = records(m.tick(3000))
    assert len(linger) == 1 and linger[0].body["tags"] == ["04ffffffffff01"]
    # closing the session writes what is queued before the closing feedback
    m.tap("04ffffffffff02", 3100)
    out = m.tap(STAFF_A, 3200)
    assert isinstance(out[0], Record) and out[0].body["tags"] == ["04ffffffffff02"]
    assert feedback(out) == [(hal.CLOSED, "staff_card")]


def check_batch_flushes_on_staff_change_and_shutdown():
    m = machine(batch_linger_ms=10000)
    m.tap(STAFF_A, 0)
    m.tap(TAG_1, 1)
    out = m.tap(STAFF_B, 2)
    assert records(out)[0].body["staff"] == STAFF_A
    m.tap(TAG_2, 3)
    out = m.close(4)
    assert records(out)[0].body["staff"] == STAFF_B and records(out)[0].body["tags"] == [TAG_2]
    assert feedback(out) == [(hal.CLOSED, "shutdown")]


def check_duplicate_memory_is_bounded():
    m = machine(dup_window_ms=10 ** 9, dup_cap=64, max_pending=10 ** 6)
    m.tap(STAFF_A, 0)
    for i in range(1000):
        m.tap(f"04{i:012x}", i + 1)
    assert len(m._seen) <= 64
    # the most recent tags are still remembered
    assert feedback(m.tap(f"04{999:012x}", 2000)) == [(hal.DUPLICATE, "within_window")]


def check_stats_count_everything():
    m = machine()
    m.tap(TAG_1, 0)
    m.tap(STAFF_A, 1)
    rec = records(m.tap(TAG_1, 2))[0]
    m.tap(TAG_1, 3)
    m.confirm(rec.ref)
    assert m.stats == {"taps": 4, "accepted": 1, "duplicate": 1, "refused": 1, "errors": 0,
                       "records": 1, "sessions": 1}, m.stats
