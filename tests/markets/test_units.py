"""Prices quoted per ons, per half kilo or per litre as market boards write them are converted to the
catalogue's unit with the price as reported kept beside it; a unit that measures something else is refused
with BAD_UNIT, at import and from devices alike."""

from __future__ import annotations

import io

import pytest

from hub.markets.calendar import day_number
from hub.markets.catalog import COMMODITIES_BY_ID
from hub.markets.errors import BadUnit
from hub.markets.importer import ImportDefaults, read_import
from hub.markets.model import PriceObservation, from_record
from hub.markets.service import MarketService
from hub.markets.units import conversion
from ledger.chain import ChainBuilder
from tools.markets import main as markets_main

# A Jakarta enumerator's sheet: what the board at each stall says, unit and all.
BOARD = """Tanggal;Komoditas;Satuan;Harga;Pasar;Pelapor
2025-01-13;Bawang Putih Bonggol;Rp/ons;Rp 3.800;pasar-senen;r1
2025-01-13;Cabai Rawit Merah;Rp/0,5 kg;Rp 27.500;pasar-senen;r1
2025-01-13;Bawang Merah;per ons;4.200;pasar-senen;r2
2025-01-13;Minyak Goreng Curah;/ltr;17.500;pasar-senen;r1
2025-01-13;Telur Ayam Ras;Rp./Kg;28.000;pasar-senen;r1
2025-01-13;Minyak Goreng Curah;Rp/kg;19.000;pasar-senen;r2
2025-01-13;Bawang Merah;Rp/ikat;5.000;pasar-senen;r3
2025-01-13;Beras Medium;/ltr;13.600;pasar-senen;r3
"""


@pytest.mark.parametrize(("unit", "commodity", "reported", "per_unit"), [
    ("Rp/ons", "bawang-putih", 3_800, 38_000),
    ("/ons", "bawang-merah", 4_150, 41_500),
    ("per ons", "cabai-rawit", 6_000, 60_000),
    ("Rp/0,5 kg", "cabai-rawit", 27_500, 55_000),
    ("Rp/½ kg", "gula-pasir", 9_250, 18_500),
    ("Rp / 250 gr", "bawang-putih", 9_500, 38_000),
    ("Rp./Kg", "telur-ayam", 28_000, 28_000),
    ("/ltr", "minyak-goreng-curah", 17_500, 17_500),
    ("Rp/500 ml", "minyak-goreng", 8_000, 16_000),
])
def test_board_units_convert_to_the_catalogue_unit(unit: str, commodity: str, reported: int, per_unit: int) -> None:
    c = COMMODITIES_BY_ID[commodity]
    got = conversion(unit, c)
    assert got.unit == c.unit and got.price(reported) == per_unit


@pytest.mark.parametrize(("unit", "commodity", "says"), [
    ("Rp/kg", "minyak-goreng-curah", "a price per kg cannot be converted to one per liter"),
    ("/ltr", "beras-medium", "a price per liter cannot be converted to one per kg"),
    ("Rp/ikat", "bawang-merah", "a unit this hub cannot read"),
    ("Rp/karung", "beras-medium", "a unit this hub cannot read"),
    ("", "beras-medium", "a unit this hub cannot read"),
])
def test_a_unit_that_measures_something_else_is_refused(unit: str, commodity: str, says: str) -> None:
    with pytest.raises(BadUnit, match=says) as exc:
        conversion(unit, COMMODITIES_BY_ID[commodity])
    assert exc.value.code == "BAD_UNIT" and exc.value.hint


def test_import_converts_per_ons_and_half_kilo_and_refuses_the_rest() -> None:
    rows = read_import(io.StringIO(BOARD), ImportDefaults(source="pihps"))
    refused = {r.line: r for r in rows.refused}
    assert set(refused) == {7, 8, 9}
    assert all(r.code == "BAD_UNIT" for r in refused.values())
    assert "Minyak Goreng Curah: expected rupiah per liter" in refused[7].reason
    assert "'Rp/ikat'" in refused[8].reason and "'/ltr' for Beras Medium" in refused[9].reason
    assert rows.report()["converted"] == 3 and rows.report()["refused_rows"][0]["code"] == "BAD_UNIT"
    svc = MarketService()
    report = svc.import_rows(rows)
    assert report["stored"] == 5, report
    day = day_number("2025-01-13")
    got = {p["commodity"]: (p["unit"], p["price_idr"]) for p in svc.live_prices() if p["day"] == day}
    assert got == {"bawang-putih": ("kg", 38_000), "cabai-rawit": ("kg", 55_000), "bawang-merah": ("kg", 42_000),
                   "minyak-goreng-curah": ("liter", 17_500), "telur-ayam": ("kg", 28_000)}
    # The price as the sheet gave it is kept with each converted row.
    assert sorted(rows.reported.values()) == ["Rp 27.500/0,5 kg", "Rp 3.800/ons", "Rp 4.200/ons"]


def test_a_device_price_per_ons_joins_the_series_per_kg(chain: ChainBuilder) -> None:
    rec = chain.append("price", {"market": "pasar-senen", "commodity": "bawang-merah", "unit": "ons",
                                 "price_idr": 4_200, "reporter": "r1"})
    obs = from_record(rec, rec.time + 30)
    assert isinstance(obs, PriceObservation)
    assert (obs.unit, obs.price_idr, obs.reported) == ("kg", 42_000, "Rp 4.200/ons")
    assert obs.to_dict()["reported"] == "Rp 4.200/ons" and rec.body["unit"] == "ons"  # the signed record as sent
    svc = MarketService()
    svc.ingest(rec, rec.time + 30)
    assert [(p["unit"], p["price_idr"]) for p in svc.live_prices("bawang-merah")] == [("kg", 42_000)]


def test_a_device_price_per_kg_of_oil_is_refused_and_listed(chain: ChainBuilder) -> None:
    svc = MarketService()
    rec = chain.append("price", {"market": "pasar-senen", "commodity": "minyak-goreng-curah", "unit": "kg",
                                 "price_idr": 19_000})
    answer = svc.ingest(rec, rec.time + 30)
    assert answer is not None and answer["code"] == "BAD_UNIT"
    assert svc.live_prices("minyak-goreng-curah") == [] and svc.refused_total == 1
    (refused,) = svc.refused
    assert (refused["id"], refused["unit"], refused["price_idr"], refused["code"]) == (rec.id.hex(), "kg", 19_000,
                                                                                      "BAD_UNIT")
    # A commodity the catalogue does not know keeps its unit as sent, as before.
    other = chain.append("price", {"market": "pasar-senen", "commodity": "durian", "unit": "buah",
                                   "price_idr": 60_000})
    assert from_record(other, other.time).unit == "buah"


def test_the_import_command_says_what_it_converted_and_why_it_refused(tmp_path, capsys) -> None:
    path = tmp_path / "papan.csv"
    path.write_text(BOARD, encoding="utf-8")
    assert markets_main(["import", str(path), "--check", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 converted to the commodity's unit, 3 refused" in out
    assert "line 7 (BAD_UNIT): unit 'Rp/kg' for Minyak Goreng Curah: expected rupiah per liter" in out
