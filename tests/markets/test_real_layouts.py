"""Price files as Indonesian offices really save them, through `jejak markets import` and the analytics: PIHPS's
table as Excel writes it (BOM, "01/ 12/ 2025" date heads, group rows numbered I, II, ..., "14,850" or "14.850",
"-" for no price), a district's long sheet (semicolons, "Cabe", "Rp 45.000", "45.000,00", market names, sacks
and trays), and years of sticky prices quoted in Rp 500 steps with Sundays and Lebaran's closed week missing."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np

from hub.markets.calendar import date_of, day_number
from hub.markets.importer import ImportDefaults, read_import
from hub.markets.service import MarketService, weekly_move
from hub.markets.warning import alps, quote_step
from tools.markets import main as markets_main

# PIHPS "Tabel Harga Berdasarkan Daerah" saved as CSV by Excel: a group's row (numbered I, II, ...) averages its
# items (numbered 1, 2, ...), a day without a price is "-".
PIHPS = ("\ufeffNo,Komoditas (Rp),01/ 12/ 2025,02/ 12/ 2025,03/ 12/ 2025,04/ 12/ 2025\n"
         'I,Beras,"14,700","14,700","14,750","14,750"\n'
         '1,Beras Kualitas Bawah I,"13,250","13,250","13,250","13,250"\n'
         '2,Beras Kualitas Bawah II,"12,900","12,900","12,900",-\n'
         '3,Beras Kualitas Medium I,"14,800","14,800","14,800","14,800"\n'
         '5,Beras Kualitas Super I,"16,650","16,650",-,"16,650"\n'
         'II,Cabai Merah,"46,650","48,900","49,100","49,100"\n'
         '1,Cabai Merah Besar,"45,300","47,550","47,800","47,800"\n'
         '2,Cabai Merah Keriting,"48,000","50,250","50,400","50,400"\n'
         'III,Bawang Merah,"41,250","41,250","41,250","41,250"\n'
         '1,Bawang Merah Ukuran Sedang,"41,250","41,250","41,250","41,250"\n'
         'IV,Telur Ayam,"29,500","29,500","29,500","29,500"\n'
         '1,Telur Ayam Ras Segar,"29,500","29,500","29,500","29,500"\n')


def test_a_pihps_table_as_excel_saves_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "Tabel Harga Berdasarkan Daerah.csv"
    path.write_text(PIHPS, encoding="utf-8")
    assert markets_main(["import", str(path), "--check", "--json", "--quiet", "--market", "pasar-kosambi"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "pihps"
    # Rice Medium I and Super I, two chillies, shallots and eggs; the group rows are no item's price.
    assert report["taken"] == 4 + 3 + 4 + 4 + 4 + 4 and report["no_price"] == 2
    # An item the catalogue lacks is listed once for its row, with how many dates it held.
    assert [(r["line"], r["reason"]) for r in report["refused_rows"]] == [
        (3, "unknown commodity 'Beras Kualitas Bawah I' (4 dates)"),
        (4, "unknown commodity 'Beras Kualitas Bawah II' (3 dates)")]
    assert report["refused"] == 7 and report["rows"] == report["taken"] + report["refused"] + report["no_price"]
    assert markets_main(["import", str(path), "--check", "--market", "pasar-kosambi"]) == 0
    said = capsys.readouterr().out
    assert "23 taken" in said and "7 refused, 2 without a price ('-')" in said
    assert "line 4: unknown commodity 'Beras Kualitas Bawah II' (3 dates)" in said

    svc = MarketService()
    svc.import_rows(read_import(path, ImportDefaults(market="pasar-kosambi")))
    rice = [h["price_idr"] for h in svc.history("beras-medium", "pasar-kosambi")]
    assert rice == [14_800] * 4  # Medium I's own price, not the group's average of six qualities
    assert [h["price_idr"] for h in svc.history("beras-premium", "pasar-kosambi")] == [16_650] * 3


def test_a_pihps_table_saved_in_the_indonesian_locale() -> None:
    # Excel in the Indonesian locale: semicolons between cells, dots between thousands.
    text = ("No;Komoditas (Rp);01/ 12/ 2025;02/ 12/ 2025\n"
            "I;Beras;14.700;14.700\n"
            "3;Beras Kualitas Medium I;14.800;-\n"
            "II;Cabai Rawit;61.150;63.400\n"
            "1;Cabai Rawit Hijau;52.300;53.800\n"
            "2;Cabai Rawit Merah;70.000;73.000\n")
    rows = read_import(io.StringIO(text), ImportDefaults(market="pasar-kosambi"))
    assert rows.layout == "pihps" and rows.price == [14_800, 70_000, 73_000]
    assert [(r.line, r.reason) for r in rows.refused] == [(5, "unknown commodity 'Cabai Rawit Hijau' (2 dates)")]


# A district office's sheet: one row per market, item and day, as typed (Excel, Indonesian locale).
SHEET = ("\ufeffTanggal;Provinsi;Kab/Kota;Pasar;Komoditas;Satuan;Harga\n"
         "01/12/2025;DKI Jakarta;Jakarta Pusat;Pasar Senen;Cabe Merah Keriting;Rp/kg;Rp 45.000\n"
         "01/12/2025;DKI Jakarta;Jakarta Pusat;PASAR SENEN;cabai rawit merah;Rp/kg;52.000,00\n"
         "01/12/2025;DKI Jakarta;Jakarta Timur;Pasar Induk Kramat Jati;BERAS MEDIUM;Rp/karung 50 kg;Rp 625.000\n"
         "01/12/2025;DKI Jakarta;Jakarta Timur;Pasar Induk Kramat Jati;Telur Ayam Ras;Rp/papan;Rp 57.000\n"
         "01/12/2025;Papua;Kota Jayapura;Pasar Youtefa;Bawang Merah;Rp/ikat;Rp 10.000\n"
         "01/12/2025;Papua;Kota Jayapura;Pasar Youtefa;Bawang Merah;Rp/kg;Rp. 85.000,-\n"
         "02/12/2025;Papua;Kota Jayapura;Pasar Youtefa;Bawang Merah;Rp/kg;-\n"
         "02/12/2025;DKI Jakarta;Jakarta Pusat;Pasar Senen;Cabe Merah Keriting;Rp/kg;\n")


def test_a_district_sheet_with_names_as_typed() -> None:
    rows = read_import(io.StringIO(SHEET), ImportDefaults(source="dinas"))
    report = rows.report()
    keys = list(rows.series)
    prices = {keys[s][:2]: p for s, p in zip(rows.series_idx, rows.price, strict=True)}
    assert prices == {("pasar-senen", "cabai-merah"): 45_000, ("pasar-senen", "cabai-rawit"): 52_000,
                      ("pasar-kramat-jati", "beras-medium"): 12_500, ("pasar-youtefa", "bawang-merah"): 85_000}
    assert rows.reported == {"dinas:pasar-kramat-jati:beras-medium:dinas:" + str(day_number("2025-12-01")):
                             "Rp 625.000/karung 50 kg"}
    assert report["no_price"] == 2 and rows.regions[-1] == "Papua"
    reasons = {r.line: (r.code, r.reason) for r in rows.refused}
    assert set(reasons) == {5, 6} and reasons[5][0] == reasons[6][0] == "BAD_UNIT"
    assert "'Rp/papan' for Telur Ayam Ras" in reasons[5][1] and "'Rp/ikat' for Bawang Merah" in reasons[6][1]


START = day_number("2024-11-01")
DAYS = 160  # to 9 April 2025: the rainy season's chilli spike, Ramadan, Lebaran (31 March) and its closed week
LEBARAN_CLOSED = (day_number("2025-03-28"), day_number("2025-04-06"))
SHEET_MARKETS = (("Pasar Senen", "DKI Jakarta", 1.0), ("Pasar Induk Kramat Jati", "DKI Jakarta", 0.97),
                 ("Pasar Minggu", "DKI Jakarta", 1.02), ("Pasar Kosambi", "Jawa Barat", 0.99),
                 ("Pasar Bogor", "Jawa Barat", 1.01))


def _sticky(rng: np.random.Generator, level: np.ndarray, tick: int) -> list[int]:
    """A reporter's quotes: the last one held until the price has moved by most of a step."""
    out, cur = [], int(round(level[0] / tick) * tick)
    for x in level:
        if abs(x - cur) >= 0.8 * tick:
            cur = int(round(x / tick) * tick)
        out.append(cur)
    return out


def _season(seed: int = 4) -> tuple[str, set[int]]:
    """Five markets of two provinces, four items, daily from November 2024, no reports on Sundays or over
    Lebaran's closed week. Shared by every market, a day or two apart: chilli rising 2.5 times over three weeks
    from mid-December and falling back by March, rice up one Rp 500 step in February, eggs and chicken up 10 %
    in the fortnight before Lebaran. At Pasar Minggu alone, shallots pushed up 30 % for six days in March.
    Returns the sheet and the days of the pushed prices."""
    rng = np.random.default_rng(seed)
    lines = ["\ufeffTanggal;Provinsi;Pasar;Komoditas;Satuan;Harga"]
    pushed = set()
    t0 = np.arange(DAYS)
    for name, region, level in SHEET_MARKETS:
        t = t0 - int(rng.integers(0, 3))
        spike = np.clip(np.minimum((t - 45) / 21, 1 - (t - 66) / 50), 0, 1)
        lebaran = np.clip((t - 135) / 14, 0, 1) * (t < 160)
        items = {
            "Cabe Merah Keriting": (42_000 * level * np.exp(np.log(2.5) * spike + rng.normal(0, 0.02, DAYS)), 1000),
            "Beras Medium": (round(12_000 * level, -3) + 500.0 * (t >= 100), 500),
            "Telur Ayam Ras": (28_000 * level * (1 + 0.1 * lebaran) * np.exp(rng.normal(0, 0.01, DAYS)), 500),
            "Bawang Merah": (38_000 * level * np.exp(rng.normal(0, 0.015, DAYS)), 500),
        }
        for item, (path, tick) in items.items():
            for i, p in enumerate(_sticky(rng, path, tick)):
                day = START + i
                if date_of(day).weekday() == 6 or LEBARAN_CLOSED[0] <= day <= LEBARAN_CLOSED[1]:
                    continue
                if name == "Pasar Minggu" and item == "Bawang Merah" and 125 <= i < 131:
                    p = int(p * 1.3) // 500 * 500
                    pushed.add(day)
                price = f"Rp {p:,}".replace(",", ".") if i % 2 else f"{p:,}".replace(",", ".") + ",00"
                lines.append(f"{date_of(day).strftime('%d/%m/%Y')};{region};{name};{item};Rp/kg;{price}")
    return "\n".join(lines) + "\n", pushed


def test_a_season_of_real_prices_through_import_validation_forecast_and_alps() -> None:
    text, pushed = _season()
    svc = MarketService()
    report = svc.import_rows(read_import(io.StringIO(text), ImportDefaults(source="dinas")))
    assert report["refused"] == 0 and report["taken"] == text.count("\n") - 1
    held = [e["observation"] for e in svc.quarantined()]
    pushed_held = {(h["time"] + 7 * 3600) // 86400 for h in held
                   if h["market"] == "pasar-minggu" and h["commodity"] == "bawang-merah"}
    # The one market's push is held; the spike, the rice step and Lebaran's rise, which every market shares,
    # are not (a stray honest report or two may be).
    assert pushed_held == pushed
    honest = [h for h in held if not (h["market"] == "pasar-minggu" and h["commodity"] == "bawang-merah")]
    assert len(honest) <= 2, honest

    # Rice sits at Rp 12.500 since February: its forecast is flat at that price, with an interval of some width.
    fc = svc.forecast("beras-medium", "pasar-senen")
    assert {p["price_idr"] for p in fc["points"]} == {12_500}
    assert all(p["hi80"] > p["lo80"] and p["hi95"] - p["lo95"] >= 0.015 * 12_500 for p in fc["points"])

    # A Rp 500 step of a Rp 12.000 rice price is the one move the price can make: at most stress in ALPS, on
    # each evening of the fortnight after it at each market.
    for key in svc._find("beras-medium", None):
        for day in range(START + 100, START + 114):
            lo_day, rice = svc._daily(key, day)
            got = alps(rice, first_day=lo_day, sigma_floor=weekly_move("beras-medium"))
            assert got.band in ("normal", "stress"), (key, got.explanation)
        assert "steps the price is quoted in" in got.explanation


def _rice_years(first: str, last: str) -> tuple[int, np.ndarray]:
    """Daily medium rice at a market, quoted in Rp 500 steps: Rp 10.000, up a step with the fuel price rise of
    September 2022 and with each HET change after, Sundays and Lebaran's week missing."""
    lo, hi = day_number(first), day_number(last)
    steps = [("2022-09-05", 10_500), ("2023-03-20", 11_000), ("2023-09-18", 11_500), ("2024-03-11", 12_000),
             ("2024-09-02", 12_500), ("2025-02-03", 13_000)]
    out = np.full(hi - lo + 1, 10_000.0)
    for when, price in steps:
        at = day_number(when) - lo
        if 0 <= at < len(out):
            out[at:] = price
        elif at < 0:
            out[:] = price
    for i in range(len(out)):
        d = date_of(lo + i)
        if d.weekday() == 6 or (d.month == 4 and d.year == 2024 and 8 <= d.day <= 14):
            out[i] = np.nan
    return lo, out


def _long_sheet(lo: int, prices: np.ndarray, market: str, item: str) -> str:
    rows = [f"{date_of(lo + i).isoformat()},{market},{item},Rp/kg,{int(p)}" for i, p in enumerate(prices)
            if not np.isnan(p)]
    return "Tanggal,Pasar,Komoditas,Satuan,Harga\n" + "\n".join(rows) + "\n"


def test_ifpa_is_judged_on_three_years_of_imported_history_and_not_on_less() -> None:
    svc = MarketService()
    lo, rice = _rice_years("2022-01-03", "2025-03-31")
    svc.import_rows(read_import(io.StringIO(_long_sheet(lo, rice, "pasar-senen", "Beras Medium"))))
    lo2, rice2 = _rice_years("2023-04-03", "2025-03-31")
    svc.import_rows(read_import(io.StringIO(_long_sheet(lo2, rice2, "pasar-kosambi", "Beras Medium"))))
    svc.early_warning()
    judged = {key for key in svc.tracker.latest}
    assert ("pasar-senen/beras-medium", "IFPA") in judged  # three years and more: judged, beyond the 400-day window
    assert ("pasar-kosambi/beras-medium", "IFPA") not in judged  # two years: no IFPA
    assert ("pasar-kosambi/beras-medium", "ALPS") in judged
    ifpa_alert = svc.tracker.latest[("pasar-senen/beras-medium", "IFPA")]
    assert ifpa_alert.day == day_number("2025-03-31")


def test_the_quote_step_of_a_sticky_price() -> None:
    lo, rice = _rice_years("2024-01-01", "2025-03-31")
    assert quote_step(rice) == 500
    assert quote_step(np.array([45_000, 47_000, np.nan, 50_000, 40_000])) == 1000  # never a round Rp 10.000
    assert quote_step(np.full(30, 12_000.0)) == 0
    assert quote_step(20_000 * np.exp(np.random.default_rng(0).normal(0, 0.01, 60))) == 0
    assert dt.date(2025, 3, 31) == date_of(lo + len(rice) - 1)


def test_one_quote_step_of_rice_reads_stress_two_alert_three_crisis() -> None:
    # Rice at Rp 12.000 for half a year, Sundays missing, then up by one, two or three Rp 500 steps for a week.
    lo, rice = _rice_years("2024-03-11", "2024-09-08")
    rice[~np.isnan(rice)] = 12_000
    for steps, band in ((1, "stress"), (2, "alert"), (3, "crisis")):
        v = rice.copy()
        v[-7:] += 500 * steps
        got = alps(v, first_day=lo, sigma_floor=weekly_move("beras-medium"))
        assert got.band == band, got.explanation


def test_one_quote_step_of_beef_reads_stress_as_rice_does() -> None:
    # Beef is quoted in Rp 5.000 steps: one step of Rp 135.000 beef (3.7 %) held a week is the same move as one
    # Rp 500 step of Rp 13.000 rice, and reads the same band; two steps alert, three crisis.
    lo, beef = _rice_years("2024-03-11", "2024-09-08")
    beef[~np.isnan(beef)] = 135_000
    assert quote_step(np.r_[beef, np.full(7, 140_000.0)]) == 5000
    assert quote_step(np.r_[np.full(60, 180_000.0), np.full(7, 190_000.0)]) == 10_000
    assert quote_step(np.r_[np.full(60, 100_000.0), np.full(7, 110_000.0)]) == 5000  # Rp 10.000 is past 6 %
    for steps, band in ((1, "stress"), (2, "alert"), (3, "crisis")):
        v = beef.copy()
        v[-7:] += 5000 * steps
        got = alps(v, first_day=lo, sigma_floor=weekly_move("daging-sapi"))
        assert got.band == band, got.explanation
    assert "Rp 5.000 steps" in alps(v, first_day=lo, sigma_floor=weekly_move("daging-sapi")).explanation


async def test_the_hub_takes_a_pihps_table_as_excel_saves_it(tmp_path: Path) -> None:
    import aiohttp

    from hub.app import start_hub
    from hub.auth import hash_token
    from hub.config import HubConfig

    config = HubConfig(name="pihps", data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                       checkpoint_interval=3600, operator_tokens=(hash_token("op-token"),))
    running = await start_hub(config)
    try:
        async with aiohttp.ClientSession() as session:
            # The market as the office names it, in the query as in the sheet's column.
            url = f"{running.http_url}/api/markets/import?source=pihps&market=Pasar%20Kosambi"
            async with session.post(url, data=PIHPS.encode("utf-8"),
                                    headers={"Authorization": "Bearer op-token"}) as resp:
                report = await resp.json()
                assert resp.status == 200, report
        assert report["layout"] == "pihps" and report["taken"] == 23 and report["no_price"] == 2
        assert [r["line"] for r in report["refused_rows"]] == [3, 4]
        prices = running.views.markets.history("beras-medium", "pasar-kosambi")
        assert [h["price_idr"] for h in prices] == [14_800] * 4
    finally:
        await running.close()
