"""The hub's MBG alerts: derived on a timer as well as when records arrive, and saying what holds now."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hub.mbg import Kitchen, Plan, School
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.views import Views
from ledger import ChainBuilder, Ed25519Signer
from tests.hub.conftest import Clock, enroll
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tests.wait import PATIENCE, wait_until

PLAN = Plan(kitchens=(Kitchen(id="K1"),), schools=(School(id="S1", kitchen="K1", portions=20),))
TAGS = ["04aa000000000001", "04aa000000000002"]


@pytest.fixture
def hub(tmp_path):
    clock = Clock(MIDNIGHT + 5 * H)
    store = LmdbHubStore(tmp_path / "hub")
    hub = Hub(store, Ed25519Signer.from_seed(b"\x42" * 32), clock=clock)
    yield hub, clock
    store.close()


def _deliver_unserved(hub: Hub, clock: Clock, arrived: dict | None = None) -> Callable[[str, int, dict], None]:
    """Cooked at 05:30, arrived and received at 07:30 (the arrival tap with `arrived` too); nobody taps "served"
    and nothing comes back. Returns the tap of a site, for more."""
    devices = {}
    for site in ("K1", "S1"):
        signer = Ed25519Signer.from_seed(site.encode().ljust(32, b"."))
        device_id = enroll(hub, signer, clock, site=site)
        builder = ChainBuilder(signer, clock=clock, boot=1)
        hub.ingest(device_id, [builder.genesis().raw])
        devices[site] = (device_id, builder)

    def tap(site: str, at: int, body: dict) -> None:
        clock.now = at
        device_id, builder = devices[site]
        assert hub.ingest(device_id, [builder.append("scan", {"site": site, **body}).raw]).accepted == 1

    tap("K1", MIDNIGHT + 5 * H + 31 * M, {"event": "cooked", "cooked_at": MIDNIGHT + 5 * H + 30 * M, "count": 20})
    tap("K1", MIDNIGHT + 6 * H + 50 * M, {"event": "departed", "tags": TAGS, "school": "S1", "count": 20})
    tap("S1", MIDNIGHT + 7 * H + 30 * M, {"event": "arrived", "tags": TAGS, **(arrived or {})})
    tap("S1", MIDNIGHT + 7 * H + 35 * M, {"event": "received", "count": 20})
    return tap


class _Events:
    def __init__(self, out: list[dict]) -> None:
        self.out = out

    def publish(self, event: dict) -> None:
        self.out.append(event)


def _open(views: Views) -> dict[str, dict]:
    return {a["code"]: a for a in views.alerts.listing()["alerts"]}


def test_an_open_alert_shows_the_current_value(hub) -> None:
    hub, clock = hub
    published: list[dict] = []
    views = Views(hub, plan=PLAN, clock=clock, events=_Events(published))
    _deliver_unserved(hub, clock)
    clock.now = MIDNIGHT + 10 * H
    views.alerts.refresh()
    raised = _open(views)["cook_to_serve"]
    assert "measured 16200 s" in raised["text"] and "still open" in raised["text"]
    clock.now = MIDNIGHT + 10 * H + 30 * M
    views.alerts.refresh()
    now = _open(views)["cook_to_serve"]
    assert now["id"] == raised["id"] and now["time"] == MIDNIGHT + 10 * H  # the same alert, raised then
    assert "measured 18000 s" in now["text"] and now["updated_at"] == MIDNIGHT + 10 * H + 30 * M
    # The live stream carries the update, so an open dashboard shows the current value too.
    texts = [e["alert"]["text"] for e in published if e["alert"]["id"] == raised["id"]]
    assert len(texts) == 2 and "measured 16200 s" in texts[0] and "measured 18000 s" in texts[1]


def test_meals_served_late_and_meals_not_served_are_two_alerts(hub) -> None:
    hub, clock = hub
    views = Views(hub, plan=PLAN, clock=clock)
    tap = _deliver_unserved(hub, clock)
    tap("S1", MIDNIGHT + 10 * H, {"event": "served", "tags": TAGS[:1]})  # 4 h 30 min after cook-end
    clock.now = MIDNIGHT + 10 * H + 30 * M
    views.alerts.refresh()
    alerts = {a["id"]: a["text"] for a in views.alerts.listing()["alerts"] if a["code"] == "cook_to_serve"}
    # One alert hid the other under the same id: each part is its own alert, with its own count.
    late, unserved = f"mbg/cook_to_serve/S1/{DATE}", f"mbg/cook_to_serve/S1/{DATE}/not_served"
    assert sorted(alerts) == [late, unserved]
    assert "of 1 container:" in alerts[late] and "measured 16200 s" in alerts[late]
    assert "of 1 container not served yet" in alerts[unserved] and "measured 18000 s" in alerts[unserved]


def test_meals_served_after_the_danger_zone_and_meals_still_in_it_are_alerts_of_their_own(hub) -> None:
    hub, clock = hub
    views = Views(hub, plan=PLAN, clock=clock)
    tap = _deliver_unserved(hub, clock, arrived={"temp_cc": 4500})  # 45 °C at the gate: in the danger zone
    tap("S1", MIDNIGHT + 10 * H, {"event": "served", "tags": TAGS[:1]})  # 2 h 30 min in the zone
    clock.now = MIDNIGHT + 10 * H + 30 * M
    views.alerts.refresh()
    alerts = {a["id"]: a["text"] for a in views.alerts.listing()["alerts"]
              if a["code"] in ("danger_zone", "hot_holding")}
    # A served meal that sat in the danger zone and one still in it are two alerts, each with its own count.
    assert sorted(alerts) == [f"mbg/{code}/S1/{DATE}/{part}" for code in ("danger_zone", "hot_holding")
                              for part in ("not_served", "served")]
    served, unserved = alerts[f"mbg/danger_zone/S1/{DATE}/served"], alerts[f"mbg/danger_zone/S1/{DATE}/not_served"]
    assert "of 1 container served:" in served and "measured 9000 s" in served
    assert "of 1 container not served yet:" in unserved and "measured 10800 s" in unserved
    assert "of 1 container served:" in alerts[f"mbg/hot_holding/S1/{DATE}/served"]


def test_time_based_findings_are_derived_without_new_records(hub) -> None:
    hub, clock = hub
    views = Views(hub, plan=PLAN, clock=clock, rederive_s=0.05)
    _deliver_unserved(hub, clock)
    views.start()
    try:
        wait_until(lambda: views._last_derive_s > 0, what="the derivation after the records arrived")
        assert _open(views) == {}
        # Past the kitchen's return time nothing new arrives; the worker's timer still brings the finding.
        clock.now = MIDNIGHT + 16 * H
        alert = wait_until(lambda: _open(views).get("container_unreturned"), what="the unreturned alert")
        assert "2 containers not returned" in alert["text"]
    finally:
        views.close()


def _cook_taps(hub: Hub, clock: Clock, seed: bytes) -> Callable[[], None]:
    """A kitchen device enrolled and begun: each call ingests one more "cooked" tap of it."""
    signer = Ed25519Signer.from_seed(seed.ljust(32, b"."))
    device_id = enroll(hub, signer, clock, site="K1")
    builder = ChainBuilder(signer, clock=clock, boot=1)
    hub.ingest(device_id, [builder.genesis().raw])
    body = {"site": "K1", "event": "cooked", "cooked_at": MIDNIGHT + 5 * H, "count": 20}

    def tap() -> None:
        assert hub.ingest(device_id, [builder.append("scan", body).raw]).accepted == 1

    return tap


def _stream(hub: Hub, clock: Clock, until: Callable[[], bool], at_least: float) -> int:
    """Ingest records one at a time, with no pause between them, for `at_least` seconds and then until
    `until()` holds (or a bound for a busy machine); return how many."""
    tap = _cook_taps(hub, clock, b"K1")
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < at_least or not until():
        assert time.monotonic() - started < 60 * PATIENCE, "the stream ran out of time"
        tap()
        n += 1
    return n


def test_a_burst_of_records_is_derived_once_it_pauses(hub) -> None:
    hub, clock = hub
    # Records arrive far closer together than `burst_quiet_s` on any machine; the hold is never reached.
    views = Views(hub, plan=PLAN, clock=clock, burst_quiet_s=3.0, burst_hold_s=3600)
    views.start()
    try:
        n = _stream(hub, clock, lambda: True, at_least=1.0)
        assert views.derive_seconds == 0, "derived while the records still arrived"
        wait_until(lambda: views.derive_seconds > 0, what="the derivation once the records paused")
        with views.fresh():
            assert views.mbg.summary(clock())["total_scans_today"] == n
    finally:
        views.close()


def test_a_burst_holds_the_derivation_back_for_a_bounded_time(hub) -> None:
    hub, clock = hub
    # A burst that leaves the writer idle most of the time (`writer_busy` does not grow): not a backlog.
    views = Views(hub, plan=PLAN, clock=clock, burst_quiet_s=2.0, burst_hold_s=1.0, writer_busy=lambda: 0.0)
    views.start()
    try:
        # Without a pause: the derivation comes once the burst has held it back `burst_hold_s`.
        _stream(hub, clock, lambda: views.derive_seconds > 0, at_least=0.0)
    finally:
        views.close()


def test_a_backlog_holds_the_derivation_back_longer_but_for_a_bounded_time(hub) -> None:
    hub, clock = hub
    # The writer busy all the time (its busy seconds grow as fast as the clock): edges catching up.
    views = Views(hub, plan=PLAN, clock=clock, burst_quiet_s=2.0, burst_hold_s=0.5, backlog_hold_s=12.0,
                  writer_busy=time.monotonic)
    views.start()
    derived_at_5s: list[float] = []

    def derived() -> bool:
        if not derived_at_5s:  # `_stream` asks first once `at_least` has passed
            derived_at_5s.append(views.derive_seconds)
        return views.derive_seconds > 0

    try:
        # Past `burst_hold_s` and two quiet periods the backlog still holds the derivation back; it comes by
        # `backlog_hold_s` although the records never pause.
        _stream(hub, clock, derived, at_least=5.0)
        assert derived_at_5s == [0], "derived in the middle of a backlog"
    finally:
        views.close()


def test_a_backlog_told_a_commit_at_a_time_is_not_a_pause(hub) -> None:
    hub, clock = hub
    # Records told a commit at a time, further apart than `burst_quiet_s`, while the writer is kept busy (its
    # busy seconds grow as fast as the clock): the gaps are the commits, not a pause.
    views = Views(hub, plan=PLAN, clock=clock, burst_quiet_s=0.3, burst_hold_s=0.3, backlog_hold_s=60.0,
                  writer_busy=time.monotonic)
    views.start()
    try:
        tap = _cook_taps(hub, clock, b"K2")
        for _ in range(5):
            time.sleep(0.8)  # a commit of many records takes longer than `burst_quiet_s`
            tap()
        assert views.derive_seconds == 0, "derived between two commits of a backlog"
    finally:
        views.close()


def test_the_writer_counts_the_time_ingest_keeps_it_busy(hub) -> None:
    hub, clock = hub
    before = hub.writer_busy_s
    _stream(hub, clock, lambda: True, at_least=0.2)
    assert hub.writer_busy_s > before
