"""The demo's MBG plan (hub/demo.py): its kitchens keep the rosters of the simulated staff cards."""

from __future__ import annotations

from hub.demo import KITCHENS, SimDevice, build_mbg
from hub.mbg import Plan, ScanEvent, analyze, from_record
from hub.mbg.analysis import Finding
from hub.mbg.plan import DAY, WIB, local_midnight

DATE = "2026-03-02"


def _findings(plan: Plan, devices: dict[str, SimDevice]) -> list[Finding]:
    """The day's findings, over, once every simulated device has signed all its taps."""
    midnight = local_midnight(DATE, WIB)
    scans = []
    for device in devices.values():
        device.begin(midnight)
        device.due(device.taps[-1].at)
        scans += [e for r in device.records if isinstance(e := from_record(r, r.time), ScanEvent)]
    return analyze(plan, scans, now=midnight + DAY).findings


def test_the_demo_kitchens_keep_rosters_and_their_own_staff_make_no_finding() -> None:
    plan, devices = build_mbg(DATE)
    assert all(k.staff for k in plan.kitchens) and plan.has_rosters
    # Each kitchen lists its cook and its schools' receiving staff, under its own id.
    assert all(any(card.startswith(f"STAFF-{k.id}-") for card in k.staff or ()) for k in plan.kitchens)
    found = _findings(plan, devices)
    assert found and not [f for f in found if f.code == "staff_not_on_roster"]


def test_a_borrowed_card_in_the_demo_is_one_finding() -> None:
    faults = (*KITCHENS[:-1], (*KITCHENS[-1][:2], "borrowed_card"))
    plan, devices = build_mbg(DATE, faults)
    [f] = [f for f in _findings(plan, devices) if f.code == "staff_not_on_roster"]
    assert plan.school(f.subject).kitchen == KITCHENS[-1][0] and f.other_kitchen is None  # type: ignore[union-attr]
