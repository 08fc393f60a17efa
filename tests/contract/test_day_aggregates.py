"""One contract for the read models' day aggregate store (hub/aggregates.py): LMDB and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from hub.aggregates import DamagedAggregate, DayAggregate, KeptAlert, LmdbAggregates, Namespace
from hub.app import open_aggregates
from hub.config import HubConfig
from hub.journal import Journal, carried_over
from hub.mbg.days import MBG_DAYS
from hub.pg import PgAggregates, PgHubStore
from tests.contract.test_hub_store import PG_DSN


@pytest.fixture(params=["lmdb", "postgres"])
def aggregates(request, tmp_path):
    """An aggregate store; on PostgreSQL in a fresh schema the hub store's migrations made (missing fails)."""
    if request.param == "lmdb":
        store = LmdbAggregates(tmp_path / "aggregates")
        yield store
        store.close()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    PgHubStore(PG_DSN, schema=schema).close()
    store = PgAggregates(PG_DSN, schema=schema)
    yield store
    store.close()
    PgHubStore(PG_DSN, schema=schema).drop()


def _row(school: str, received: int = 90, statuses: tuple[str, ...] = ("on_time",)) -> tuple[object, ...]:
    return (school, f"SD {school}", "SPPG-1", 100, 100, received, 4, 4, 1_700_000_000, 1_699_990_000, None,
            1_699_995_000, None, list(statuses), 0, 100 - received, "device")


def _day(date: str, *schools: str, summary: bytes = b"\xa0") -> DayAggregate:
    figures = (True, 10, 2, len(schools), len(schools), 0, 0, 0, 100 * len(schools), 90 * len(schools), 0, 1)
    return DayAggregate(date=date, figures=figures, summary=summary, rows=tuple(_row(s) for s in sorted(schools)))


def test_a_day_round_trips_and_is_replaced_and_deleted(aggregates) -> None:
    days = aggregates.namespace(MBG_DAYS)
    assert days.dates() == [] and days.get("2026-01-12") is None
    first, second = _day("2026-01-12", "SD-2", "SD-1", "SD-Ü"), _day("2026-01-10", "SD-1")
    days.put([first, second])
    assert days.dates() == ["2026-01-10", "2026-01-12"]
    assert days.get("2026-01-12") == first and days.get("2026-01-10") == second
    # A day written again replaces the one held, rows included.
    again = _day("2026-01-12", "SD-3", summary=b"\xa1\x01\x02")
    days.put([again])
    assert days.get("2026-01-12") == again
    # Deletes go first, in the same transaction as the puts.
    days.put([_day("2026-01-13", "SD-1")], delete=["2026-01-12", "2026-01-13"])
    assert days.dates() == ["2026-01-10", "2026-01-13"]
    days.delete(["2026-01-10", "2026-02-01"])
    assert days.dates() == ["2026-01-13"]


def test_namespaces_are_apart(aggregates, tmp_path) -> None:
    if isinstance(aggregates, PgAggregates):  # a second namespace needs its own tables: made here for the test
        with aggregates.tx() as conn:
            conn.execute("CREATE TABLE other_days (LIKE mbg_days INCLUDING ALL)")
            conn.execute("CREATE TABLE other_rows (LIKE mbg_deliveries INCLUDING ALL)")
    other = Namespace(name="other", days_table="other_days", figures=MBG_DAYS.figures, rows_table="other_rows",
                      rows=MBG_DAYS.rows)
    aggregates.namespace(MBG_DAYS).put([_day("2026-01-12", "SD-1")])
    assert aggregates.namespace(other).dates() == []
    aggregates.namespace(other).put([_day("2026-01-11", "SD-2")])
    assert aggregates.namespace(MBG_DAYS).dates() == ["2026-01-12"]
    assert aggregates.namespace(other).dates() == ["2026-01-11"]


def test_a_damaged_day_is_refused(aggregates) -> None:
    days = aggregates.namespace(MBG_DAYS)
    days.put([_day("2026-01-12", "SD-1", "SD-2"), _day("2026-01-11", "SD-1")])
    if isinstance(aggregates, PgAggregates):
        with aggregates.tx() as conn:
            conn.execute("UPDATE mbg_deliveries SET received_portions = 91 WHERE school = 'SD-2'")
    else:
        with aggregates._env.begin(write=True) as txn:
            db = aggregates._env.open_db(b"mbg", txn=txn)
            value = bytearray(txn.get(b"2026-01-12", db=db))
            value[len(value) // 2] ^= 0x01
            txn.put(b"2026-01-12", bytes(value), db=db)
            txn.put(b"2026-01-11", b"\xff\x00", db=db)
        with pytest.raises(DamagedAggregate) as undecodable:
            days.get("2026-01-11")
        assert undecodable.value.code == "AGGREGATE_DAMAGED"
    with pytest.raises(DamagedAggregate) as damaged:
        days.get("2026-01-12")
    assert "2026-01-12" in damaged.value.message and damaged.value.hint
    # Writing the day again mends it.
    days.put([_day("2026-01-12", "SD-1", "SD-2")])
    assert days.get("2026-01-12") == _day("2026-01-12", "SD-1", "SD-2")


def test_alerts_are_kept_in_the_order_raised_replaced_by_id_and_deleted(aggregates) -> None:
    kept = aggregates.alerts()
    assert kept.read() == []
    overdue = KeptAlert(seq=2, alert={"id": "mbg/overdue_delivery/S2/2026-01-12", "domain": "mbg", "time": 1_700_000_100,
                                      "text": "belum tiba", "severity": "alert"})
    band = KeptAlert(seq=1, alert={"id": "alps/x", "domain": "markets", "time": 1_700_000_000, "band": "alert",
                                   "previous": None, "text": "stress -> alert ü"})
    kept.put([overdue, band])
    assert kept.read() == [band, overdue]
    resolved = KeptAlert(seq=2, alert={**overdue.alert, "resolved_at": 1_700_003_600})
    kept.put([resolved])
    assert kept.read() == [band, resolved]
    kept.delete([band.id, "never-kept"])
    assert kept.read() == [resolved]
    # The day aggregates and the alerts share a store, never a key.
    assert aggregates.namespace(MBG_DAYS).dates() == []
    with pytest.raises(ValueError):
        KeptAlert(seq=3, alert={"id": "x", "time": "noon"})


def test_the_alerts_journals_are_kept_where_the_store_says(aggregates, tmp_path) -> None:
    """PostgreSQL keeps the webhook journals with the alerts, each apart, as a file journal reads; LMDB leaves
    them to files in the state dir beside it. A hub that kept them in files carries them over once."""
    told = aggregates.alerts().journal("told.jsonl")
    if isinstance(aggregates, LmdbAggregates):
        assert told is None
        return
    again = aggregates.alerts().journal("redelivery.jsonl")
    assert told.read() == [] and "told.jsonl" in told.where
    told.append({"subscriber": "ops", "band": "alert"}, {"subscriber": "tg", "band": "crisis"})
    told.append({"subscriber": "ops", "band": "normal", "ü": [1.5, None]})
    again.append({"end": "delivered"})
    assert [n for n, _ in told.read_numbered()] == [1, 2, 3]
    assert told.read()[2] == {"subscriber": "ops", "band": "normal", "ü": [1.5, None]}
    told.rewrite([{"subscriber": "tg", "band": "crisis"}])
    assert told.read() == [{"subscriber": "tg", "band": "crisis"}] and again.read() == [{"end": "delivered"}]

    file = Journal(tmp_path / "alerts" / "redelivery.jsonl")
    file.append({"subscriber": "ops", "rounds": 3}, {"subscriber": "tg", "rounds": 1})
    fresh = aggregates.alerts().journal("waiting.jsonl")
    assert carried_over(fresh, file).read() == [{"subscriber": "ops", "rounds": 3}, {"subscriber": "tg", "rounds": 1}]
    assert not file.path.exists() and file.path.with_name("redelivery.jsonl.in-store").exists()
    # A file found again beside a journal the store holds (a crash before the rename) adds nothing.
    file.append({"subscriber": "ops", "rounds": 1})
    fresh.rewrite([])
    fresh.append({"end": "delivered"})
    assert carried_over(fresh, file).read() == [{"end": "delivered"}] and not file.path.exists()


def test_rows_out_of_order_or_repeated_are_refused() -> None:
    with pytest.raises(ValueError):
        DayAggregate(date="2026-01-12", figures=(), summary=b"", rows=(_row("SD-2"), _row("SD-1")))
    with pytest.raises(ValueError):
        DayAggregate(date="2026-01-12", figures=(), summary=b"", rows=(_row("SD-1"), _row("SD-1")))
    with pytest.raises(ValueError):
        DayAggregate(date="12-01-2026", figures=(), summary=b"")


def test_lmdb_aggregates_live_apart_from_the_hub_store(tmp_path) -> None:
    store = LmdbAggregates(tmp_path / "aggregates", map_size=1 << 20)
    try:
        with pytest.raises(Exception) as full:
            store.namespace(MBG_DAYS).put([_day("2026-01-12", *(f"SD-{i:05d}" for i in range(20_000)))])
        assert getattr(full.value, "code", None) == "STORE_FULL"
        assert store.namespace(MBG_DAYS).dates() == []
    finally:
        store.close()


def test_a_hub_whose_aggregates_cannot_be_opened_runs_without_them(tmp_path, caplog) -> None:
    (tmp_path / "aggregates").write_bytes(b"not a directory")
    with caplog.at_level("ERROR", logger="jejak.hub"):
        assert open_aggregates(HubConfig(name="hub", data_dir=str(tmp_path))) is None
    assert any("STORE_ERROR" in r.getMessage() for r in caplog.records)
