"""Generated data, the WFP and Panel Harga loaders, the ceilings table and the macro files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from hub.markets.calendar import day_number, holidays_on, in_holiday
from hub.markets.ceilings import CeilingTable
from hub.markets.errors import BadInputFile
from hub.markets.loaders import (
    commodity_id,
    panel_observations,
    parse_date_id,
    parse_idr,
    read_panel_harga_csv,
    read_wfp_csv,
    wfp_observations,
)
from hub.markets.macro import MacroInputs, read_macro_csv
from hub.markets.synth import MANIPULATIONS, WFP_COLUMNS, SynthConfig, generate


def test_generator_is_seeded_and_has_ground_truth(synth) -> None:
    again = generate(SynthConfig(seed=3, days=150))
    assert np.array_equal(again.batch.price, synth.batch.price)
    other = generate(SynthConfig(seed=4, days=150))
    assert not np.array_equal(other.batch.price[:1000], synth.batch.price[:1000])
    kinds = set(synth.label[synth.manipulated])
    assert kinds == set(MANIPULATIONS)
    assert 0.005 < synth.manipulated.mean() < 0.03
    assert synth.genuine.any() and not (synth.genuine & synth.manipulated).any()
    assert (synth.batch.price == np.round(synth.batch.price)).all()


def test_ramadan_lifts_generated_prices() -> None:
    data = generate(SynthConfig(seed=5, days=200, manipulation_rate=0.0, shocks_per_year=0.0))
    first = data.first_day
    cabai = [i for i, c in enumerate(data.series_commodity) if c.id == "cabai-merah"]
    lebaran = day_number("2024-04-10") - first
    before = data.true_price[cabai, lebaran - 60:lebaran - 40].mean()
    during = data.true_price[cabai, lebaran - 3:lebaran + 3].mean()
    assert during > before * 1.05


def test_wfp_csv_round_trip(synth, tmp_path: Path) -> None:
    path = tmp_path / "wfp_food_prices_idn.csv"
    rows = synth.write_wfp_csv(path)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == WFP_COLUMNS
    read = read_wfp_csv(path)
    full = len(synth.batch.series) * synth.config.days
    # One row per series and day, less the days when every report of a series was manipulated.
    assert len(read) == rows and 0.97 * full < rows <= full
    assert read[0].currency == "IDR" and read[0].latitude is not None
    obs = wfp_observations(read)
    assert len(obs) == rows
    kinds = {(o.commodity, o.grade, o.unit) for o in obs}
    assert ("beras-medium", "medium", "kg") in kinds and ("minyak-goreng", "minyakita", "liter") in kinds
    assert all(isinstance(o.price_idr, int) for o in obs[:100])


def test_wfp_loader_reads_hdx_layout_and_refuses_other_files() -> None:
    text = ("date,admin1,admin2,market,market_id,latitude,longitude,category,commodity,commodity_id,unit,"
            "priceflag,pricetype,currency,price,usdprice\n"
            "#date,#adm1+name,#adm2+name,#loc+market+name,#loc+market+code,#geo+lat,#geo+lon,#item+type,"
            "#item+name,#item+code,#item+unit,#item+price+flag,#item+price+type,#currency,#value,#value+usd\n"
            "2024-01-15,Jawa Barat,Kota Bandung,Bandung,1,-6.9,107.6,cereals and tubers,Rice (medium quality),"
            "52,KG,actual,Retail,IDR,13250.0,0.85\n")
    rows = read_wfp_csv(io.StringIO(text))
    assert len(rows) == 1 and rows[0].price == 13250.0
    assert wfp_observations(rows)[0].commodity == "beras-medium"
    with pytest.raises(BadInputFile, match="missing"):
        read_wfp_csv(io.StringIO("a,b\n1,2\n"))


def test_panel_harga_wide_and_long() -> None:
    wide = ("No;Komoditas;01/03/2024;02/03/2024;03/03/2024\n"
            "1;Beras Medium;13.250;13.300;-\n"
            "2;Cabai Merah Keriting;52.500;55.000;57.250\n")
    rows = read_panel_harga_csv(io.StringIO(wide), province="Jawa Tengah", city="Kota Semarang")
    assert len(rows) == 5
    assert rows[0].price_idr == 13_250 and rows[0].day == day_number("2024-03-01")
    obs = panel_observations(rows)
    assert {o.commodity for o in obs} == {"beras-medium", "cabai-merah"}
    assert obs[0].market == "panel-kota-semarang" and obs[0].region == "Jawa Tengah"
    long = ("Tanggal,Provinsi,Kab/Kota,Komoditas,Harga\n"
            "2024-03-01,Jawa Timur,Kota Surabaya,Telur Ayam Ras,\"29,000\"\n"
            "1 Mei 2024,Jawa Timur,Kota Surabaya,Gula Konsumsi,Rp 17.750\n")
    rows = read_panel_harga_csv(io.StringIO(long))
    assert [(r.city, r.price_idr) for r in rows] == [("Kota Surabaya", 29_000), ("Kota Surabaya", 17_750)]
    assert rows[1].day == day_number("2024-05-01")
    with pytest.raises(BadInputFile, match="Komoditas"):
        read_panel_harga_csv(io.StringIO("a,b\n1,2\n"))


def test_number_date_and_name_parsing() -> None:
    assert parse_idr("15.250") == 15_250 and parse_idr("15,250") == 15_250 and parse_idr("-") is None
    assert parse_idr("15250.00") == 15_250
    assert parse_date_id("31/12/2024") == day_number("2024-12-31") and parse_date_id("Komoditas") is None
    assert commodity_id("Chili (red) - Retail") == ("cabai-merah", "")
    assert commodity_id("Minyakita") == ("minyak-goreng", "minyakita")


def test_ceiling_table(ceilings: CeilingTable) -> None:
    d = day_number("2024-06-01")
    jkt = ceilings.lookup("beras-medium", "medium", "kg", "DKI Jakarta", d)
    papua = ceilings.lookup("beras-medium", "medium", "kg", "Papua", d)
    assert (jkt.ceiling_idr, papua.ceiling_idr) == (12_500, 13_500) and jkt.kind == "HET"
    old = ceilings.lookup("minyak-goreng", "minyakita", "liter", "Bali", day_number("2024-01-01"))
    new = ceilings.lookup("minyak-goreng", "minyakita", "liter", "Bali", day_number("2024-09-01"))
    assert (old.ceiling_idr, new.ceiling_idr) == (14_000, 15_700)
    assert ceilings.lookup("beras-medium", "medium", "kg", "DKI Jakarta", day_number("2020-01-01")) is None
    with pytest.raises(BadInputFile, match="expected a source"):
        CeilingTable.from_dict({"entries": [{"commodity": "x", "unit": "kg", "ceiling_idr": 1, "kind": "HET"}]})


def test_macro_files_and_calendar() -> None:
    m = MacroInputs.load()
    assert m.fx.at(day_number("2024-06-15")) == 16_350 and np.isnan(m.fx.at(day_number("2000-01-01")))
    assert "Example series" in m.inflation.source
    with pytest.raises(BadInputFile, match="expected a column 'x'"):
        read_macro_csv("month,y\n2024-01,1\n", column="x", name="x", unit="u")
    assert in_holiday("ramadan", day_number("2025-03-10")) and "lebaran" in holidays_on(day_number("2025-03-31"))
    assert holidays_on(day_number("2024-08-20")) == ()
