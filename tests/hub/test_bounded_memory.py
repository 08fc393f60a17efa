"""What the hub holds in memory follows the analytics' window of days, not the age of the log: days of
scans go by, and the hub's heap after a week more is what it was once the window had filled (the store
keeps everything)."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from hub.mbg import Kitchen, Plan, School
from hub.service import Hub
from hub.store import LmdbHubStore
from hub.views import Views
from ledger import ChainBuilder, Ed25519Signer
from tests.hub.conftest import Clock, enroll

DEVICES = 10
PER_DAY = 24  # scans per device per day, one an hour
KEEP_DAYS = 2
REPO = Path(__file__).resolve().parents[2]


def _hub_heap(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated by the hub's and the ledger's code (not the test's, not pytest's log capture)."""
    mine = snapshot.filter_traces([tracemalloc.Filter(True, str(REPO / part / "*")) for part in ("hub", "ledger")])
    return sum(stat.size for stat in mine.statistics("filename"))


def test_heap_stays_flat_as_days_pass(tmp_path):
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "hub"), Ed25519Signer.from_seed(b"\x42" * 32), clock=clock)
    # A school the devices never deliver to: a missing-delivery alert every service day, resolved the next.
    plan = Plan(kitchens=(Kitchen(id="sppg-00"),), schools=(School(id="sd-01", kitchen="sppg-00", portions=60),))
    views = Views(hub, plan=plan, keep_days=KEEP_DAYS)
    days = KEEP_DAYS + 2 + 7
    hours: list[list[tuple[bytes, bytes]]] = [[] for _ in range(days * PER_DAY)]
    for i in range(DEVICES):
        signer = Ed25519Signer.from_seed((900 + i).to_bytes(32, "big"))
        device_id = enroll(hub, signer, clock, site=f"sppg-{i % 4:02d}")
        builder = ChainBuilder(signer, clock=clock, boot=1)
        hub.ingest(device_id, [builder.genesis().raw])
        for hour in hours:  # signed up front: the heap is measured around ingest alone
            hour.append((device_id, builder.append("scan", {
                "event": "departed", "site": f"sppg-{i % 4:02d}", "checkpoint": "kitchen_exit",
                "staff": "5a000001", "tags": [f"e004{i:04x}{len(hour):08x}{id(hour) % 10_000:04d}"]}).raw))
    it = iter(hours)

    def run_days(n: int) -> None:
        for _ in range(n * PER_DAY):
            for device_id, raw in next(it):
                assert hub.ingest(device_id, [raw]).accepted == 1
            clock.advance(3600)
            views.prune()
            if clock() % 86400 < 3600 * 4:  # the derivation the worker runs after records arrive
                views.alerts.refresh()
        with views.fresh():
            hub.checkpoint()

    tracemalloc.start()
    try:
        run_days(KEEP_DAYS + 2)  # the window fills, and the first prunes have run
        gc.collect()
        settled = _hub_heap(tracemalloc.take_snapshot())
        held = len(views.mbg.scans)
        alerts = views.alerts.listing()
        run_days(7)
        gc.collect()
        later = _hub_heap(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    records_since = 7 * PER_DAY * DEVICES
    assert 0 < held <= (KEEP_DAYS + 1) * PER_DAY * DEVICES, "scans beyond the window are held"
    assert len(views.mbg.scans) == held, "the window holds the same number of days of scans"
    assert alerts["alerts"] and alerts["resolved"], "the plan raises and resolves alerts"
    assert len(views.alerts.listing()["resolved"]) == len(alerts["resolved"]) <= KEEP_DAYS + 1, "old alerts are kept"
    assert hub.tree.held < 2 * 64 + hub.tree.size // 32, "the Merkle tree keeps whole tiles in the store"
    # A kept scan costs hundreds of bytes: a heap growing with the log would show 1,680 of them here. What does
    # grow is a few bytes a record at most (6 in most runs; once 16, from a dict or list that happened to resize
    # between the two snapshots), far below one scan.
    assert (later - settled) / records_since < 32, f"heap grew {later - settled} bytes over {records_since} records"
