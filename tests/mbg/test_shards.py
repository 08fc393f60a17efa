"""A day reconciled a group of scans at a time answers as one reconciliation of the whole day does."""

from __future__ import annotations

from hub.mbg import MbgView, analyze, simulate
from hub.mbg.events import ScanEvent
from hub.mbg.plan import local_midnight
from hub.mbg.shards import shards


def _view_and_scans() -> tuple[MbgView, list[ScanEvent], str, int]:
    day = simulate("normal", seed=9, kitchens=3, schools_per_kitchen=2)
    view = MbgView(day.plan)
    for r in day.records:
        view.ingest(r, r.arrived_at)
    return view, view.scans, day.date, day.now


def test_each_kitchen_is_a_group_until_a_container_crosses() -> None:
    view, scans, date, now = _view_and_scans()
    groups, untouched = shards(view.plan, view._days[date].scans)
    assert sorted(sorted(schools) for _, schools in groups) == [
        [f"SPPG-000{k}-S01", f"SPPG-000{k}-S02"] for k in (1, 2, 3)] and untouched == set()
    # A container of kitchen 1 tapped in at a school of kitchen 2, and a tap at a store outside the plan that
    # names a container of kitchen 3: both join the groups, and the answers are those of the whole day.
    tag1 = next(s.tags[0] for s in scans if s.tags and s.site == "SPPG-0001")
    tag3 = next(s.tags[0] for s in scans if s.tags and s.site == "SPPG-0003")
    at = local_midnight(date, view.plan.tz_offset_s) + 8 * 3600
    extra = [ScanEvent(record_id="x1", device="dx", seq=1, device_time=at, arrived_at=at + 20, event="arrived",
                       site="SPPG-0002-S01", tags=("AB01", tag1)),
             ScanEvent(record_id="x2", device="dx", seq=2, device_time=at, arrived_at=at + 20, event="arrived",
                       site="GUDANG", tags=(tag3,))]
    for s in extra:
        assert view.ingest_event(s)
    groups, _ = shards(view.plan, view._days[date].scans)
    assert sorted(sorted(schools) for _, schools in groups) == [
        ["SPPG-0001-S01", "SPPG-0001-S02", "SPPG-0002-S01", "SPPG-0002-S02"], ["SPPG-0003-S01", "SPPG-0003-S02"]]
    whole = analyze(view.plan, scans + extra, now=now, dates=(date,))
    assert [f.to_dict() for f in view.findings(now, date)] == [
        f.to_dict() for f in whole.findings if f.date == date]
    assert {"misrouted", "unknown_site"} <= {f.code for f in whole.findings}
    assert [d.to_dict() for d in view.deliveries(now, date)] == [
        d.to_dict() for (_, dd), d in sorted(whole.deliveries.items()) if dd == date]
