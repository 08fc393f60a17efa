"""The adapter from verified records, body validation, and the choice of clock."""

from __future__ import annotations

import pytest

from hub.mbg import (
    SCENARIOS,
    ClockPolicy,
    InputError,
    MbgView,
    ScanEvent,
    StockMovement,
    choose_time,
    from_record,
    simulate,
)
from hub.mbg.sim import SimRecord
from ledger.bodies import validate_body
from ledger.chain import ChainBuilder
from ledger.cose import Ed25519Signer
from ledger.errors import MalformedRecord
from ledger.record import decode_record


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_simulated_body_passes_the_ledger_schema(scenario: str) -> None:
    day = simulate(scenario, seed=4, kitchens=2)
    kinds = set()
    for kind, body, device_time, arrived_at in day.tuples():
        validate_body(kind, body)
        assert isinstance(device_time, int) and isinstance(arrived_at, int)
        kinds.add(kind)
    assert kinds == {"scan", "stock"}


def test_adapter_reads_scan_and_stock_records() -> None:
    day = simulate("normal", seed=1)
    for r in day.records:
        item = from_record(r, r.arrived_at)
        assert item is not None and item.record_id == r.id.hex() and item.device == r.device
        assert item.device_time == r.time and item.arrived_at == r.arrived_at and item.seq == r.seq
        assert item.body() == r.body
        assert isinstance(item, ScanEvent if r.kind == "scan" else StockMovement)


def test_adapter_skips_other_kinds_and_purged_bodies_and_refuses_bad_bodies() -> None:
    base = {"device_id": bytes(16), "seq": 1, "time": 100, "boot": 1, "arrived_at": 100, "id": bytes(32)}
    assert from_record(SimRecord(kind="price", body={"market": "m", "commodity": "beras", "unit": "kg",
                                                     "price_idr": 1}, **base), 100) is None
    assert from_record(SimRecord(kind="scan", body=None, **base), 100) is None  # type: ignore[arg-type]
    bad = SimRecord(kind="scan", body={"event": "teleported", "site": "K1"}, **base)
    with pytest.raises(InputError, match="teleported") as exc:
        from_record(bad, 100)
    assert exc.value.code == "MBG_INPUT"
    view = MbgView(simulate("normal").plan)
    assert view.ingest(bad, 100) is False
    assert view.rejected and view.rejected[0]["code"] == "MBG_INPUT"


def test_signed_records_from_the_ledger_reconcile_like_the_simulator_says() -> None:
    day = simulate("short_delivery", seed=2, kitchens=1, schools_per_kitchen=2)
    view = MbgView(day.plan)
    purged = 0
    for n, (_, stream) in enumerate(day.by_device().items()):
        times = iter([stream[0].time] + [r.time for r in stream])
        builder = ChainBuilder(Ed25519Signer.from_seed(bytes([n + 1]) * 32), clock=times.__next__, boot=1)
        view.ingest(decode_record(builder.genesis().raw), stream[0].arrived_at)
        for r in stream:
            # A body carried by digest only (purged) is a known gap: the evening stock count is one here.
            detach = r.kind == "stock" and r.body["movement"] == "count"
            record = decode_record(builder.append(r.kind, r.body, detach=detach).raw)
            assert record.kind == r.kind and record.time == r.time
            assert record.body == (None if detach else r.body)
            purged += detach
            view.ingest(record, r.arrived_at)
    assert purged > 0
    assert view.ignored == len(day.by_device()) + purged  # genesis key records and purged bodies
    assert {f.key() for f in view.findings(day.now)} == day.expected


def test_choose_time_device_late_sync_and_wrong_clock() -> None:
    p = ClockPolicy(max_skew_s=600, max_sync_delay_s=10 * 86400)
    ok = choose_time(1000, 1300, p)
    assert (ok.time, ok.basis, ok.flag, ok.skew_s) == (1000, "device", None, -300)
    late = choose_time(1000, 1000 + 3 * 86400, p)
    assert (late.time, late.basis, late.flag) == (1000, "device", "late_sync")
    behind = choose_time(1000, 1000 + 365 * 86400, p)
    assert (behind.time, behind.basis, behind.flag) == (1000 + 365 * 86400, "arrival", "clock_skew")
    ahead = choose_time(5000, 1000, p)
    assert (ahead.time, ahead.basis, ahead.flag) == (1000, "arrival", "clock_skew")
    # Another timestamp of the same record moves with the chosen clock.
    assert behind.correct(900) == 900 + 365 * 86400 and ok.correct(900) == 900


def test_choose_time_by_a_clock_the_hub_measured_off() -> None:
    p = ClockPolicy(max_skew_s=600, max_sync_delay_s=10 * 86400)
    # Two hours behind and synced at once: the device time less the offset, not a sync two hours late.
    slow = choose_time(1_000_000 - 7_200, 1_000_000 + 5, p, clock_offset=-7_200)
    assert (slow.time, slow.basis, slow.flag, slow.skew_s) == (1_000_000, "corrected", None, -7_205)
    assert slow.correct(1_000_000 - 7_200 - 1_800) == 1_000_000 - 1_800  # its cook-end moves with it
    # Sent a day late in the same boot: still timed by the clock set right.
    later = choose_time(1_000_000 - 7_200, 1_000_000 + 86_400, p, clock_offset=-7_200)
    assert (later.time, later.basis, later.flag) == (1_000_000, "corrected", None)
    # An hour fast: set right, and never after its arrival.
    fast = choose_time(1_000_000 + 3_600, 1_000_000 - 30, p, clock_offset=3_600)
    assert (fast.time, fast.basis, fast.flag) == (1_000_000 - 30, "corrected", None)
    # An offset that would put the record after its arrival or before the longest sync delay explains nothing:
    # the policy times it as without one.
    wrong = choose_time(1_000_000, 1_000_000, p, clock_offset=-7_200)
    assert (wrong.time, wrong.basis, wrong.flag) == (1_000_000, "device", None)
    old = choose_time(1_000_000 - 7_200, 1_000_000 + 20 * 86_400, p, clock_offset=-7_200)
    assert (old.time, old.basis, old.flag) == (1_000_000 + 20 * 86_400, "arrival", "clock_skew")


class _Text(str):
    pass


@pytest.mark.parametrize(("tags", "message"), [
    (["04A1", 7], "expected a list of str, found int"),
    (["04A1", True], "expected a list of str, found bool"),
    (["04A1", b"\x04"], "expected a list of str, found bytes"),
    (["04A1", "x" * 513], "an item is longer than"),
])
def test_bad_tag_lists_are_refused_with_what_is_wrong(tags: list[object], message: str) -> None:
    with pytest.raises(MalformedRecord, match=message):
        validate_body("scan", {"event": "packed", "site": "K1", "tags": tags})


def test_good_tag_lists_pass_the_ledger_schema() -> None:
    for tags in ([], ["04A1"], ["04A1", _Text("ompreng-2")], ["x" * 512]):
        validate_body("scan", {"event": "packed", "site": "K1", "tags": tags})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("tags", ("04A1", ""), "scan tags"), ("tags", ("04A1", 7), "scan tags"), ("tags", ["04A1"], "scan tags"),
    ("seq", True, "scan seq"), ("seq", -1, "scan seq"), ("record_id", "", "scan record_id"),
    ("staff", "", "scan staff"), ("count", -1, "scan count"), ("temp_cc", 1.5, "scan temp_cc"),
    ("cooked_at", False, "scan cooked_at"), ("checkpoint", "roof", "scan checkpoint"),
    ("event", "teleported", "scan event"), ("site", 3, "scan site"),
])
def test_a_scan_with_a_bad_field_is_refused_by_name(field: str, value: object, message: str) -> None:
    good = {"record_id": "r1", "device": "d1", "seq": 1, "device_time": 100, "arrived_at": 100,
            "event": "packed", "site": "K1", "tags": ("04A1", _Text("ompreng-2")), "staff": "card-1", "count": 30}
    assert ScanEvent(**good).tags == ("04A1", "ompreng-2")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message):
        ScanEvent(**{**good, field: value})  # type: ignore[arg-type]


def test_a_ledger_record_reads_as_the_scan_its_fields_make() -> None:
    builder = ChainBuilder(Ed25519Signer.from_seed(bytes([7]) * 32), clock=lambda: 1_763_900_000, boot=2)
    builder.genesis()
    body = {"event": "departed", "site": "sppg-01", "checkpoint": "kitchen_exit", "staff": "04a1b2c3",
            "tags": ["e0040150a1b2c3d4"], "school": "sd-01", "count": 30, "source": "nfc"}
    first = decode_record(builder.append("scan", body).raw)
    second = decode_record(builder.append("scan", {**body, "batch": "b-1", "temp_cc": 6500}).raw)
    scans = [from_record(r, 1_763_900_060) for r in (first, second)]
    assert scans[0] == ScanEvent(record_id=first.id.hex(), device=first.device, seq=1, boot=2,
                                 device_time=1_763_900_000, arrived_at=1_763_900_060, event="departed",
                                 site="sppg-01", checkpoint="kitchen_exit", staff="04a1b2c3",
                                 tags=("e0040150a1b2c3d4",), school="sd-01", count=30, source="nfc")
    assert scans[1] is not None and scans[1].batch == "b-1" and scans[1].temp_cc == 6500 and scans[1].seq == 2
    # Texts that repeat are one object across records.
    assert scans[0].device is scans[1].device and scans[0].site is scans[1].site  # type: ignore[union-attr]
    view = MbgView(simulate("normal").plan)
    assert view.ingest(first, 1_763_900_060) and not view.ingest(first, 1_763_900_070)
    assert view.scans == [scans[0]]


def test_a_ledger_record_with_a_bad_scan_field_is_refused_by_name() -> None:
    builder = ChainBuilder(Ed25519Signer.from_seed(bytes([8]) * 32), clock=lambda: 1_763_900_000, boot=1)
    builder.genesis()
    record = decode_record(builder.append("scan", {"event": "packed", "site": "K1", "staff": ""}).raw)
    with pytest.raises(InputError, match="scan staff"):
        from_record(record, 1_763_900_060)


def test_a_clock_a_little_ahead_is_held_to_the_arrival() -> None:
    # A record is made before it reaches the hub: a device time after its arrival, within the tolerance, is a
    # clock running fast, and the arrival is the latest it can have been made.
    fast = choose_time(1600, 1000, ClockPolicy(max_skew_s=900))
    assert (fast.time, fast.basis, fast.flag, fast.skew_s) == (1000, "arrival", None, 600)
    assert fast.correct(1500) == 900

