"""`jejak markets import`: the agency's export and the PIHPS table are read with their reporter and market
columns, backfilled by observation date, refused rows reported one by one, and a second import adds nothing."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from hub.markets.calendar import day_number
from hub.markets.importer import ImportDefaults, read_import
from hub.markets.service import MarketService
from tools.markets import main as markets_main

AGENCY = """Timestamp,ID,Komoditas,Satuan,Harga,Harga Kemarin,Tanggal Kemarin,Gap,Gap Persen,Gap Perubahan,Pasar,Pelapor
2025-01-02 00:00:00,8,Cabai Merah Keriting,Rp./Kg,41000,40000,2025-01-01,1000,2.50,naik,pasar-senen,r1
2025-01-02 00:00:00,9,Cabai Merah Besar,Rp/kg,45000,45000,2025-01-01,0,0.00,tetap,pasar-senen,r1
2025-01-02 00:00:00,19,Minyakita,Rp./Liter,15700,15700,2025-01-01,0,0.00,tetap,pasar-senen,r1
2025-01-02 00:00:00,18,Minyak Goreng Curah,Rp./Liter,"17.500",17500,2025-01-01,0,0.00,tetap,pasar-senen,r2
2025-01-02 00:00:00,99,Durian Montong,Rp./Kg,60000,60000,2025-01-01,0,0.00,tetap,pasar-senen,r1
2025-01-02 00:00:00,19,Minyakita,Rp./Kg,15700,15700,2025-01-01,0,0.00,tetap,pasar-senen,r2
2025-01-03 00:00:00,8,Cabai Merah Keriting,Rp./Kg,42000,41000,2025-01-02,1000,2.44,naik,pasar-senen,r1
2025-01-03 00:00:00,8,Cabai Merah Keriting,Rp./Kg,42000,41000,2025-01-02,1000,2.44,naik,pasar-senen,r1
"""

PIHPS = """No.,Komoditas (Rp),02/01/2025,03/01/2025
1,Bawang Merah,"36.500","37.000"
2,Bawang Putih Bonggol,-,"38.250"
3,Beras Kualitas Bawah I,"12.000","12.000"
"""


def test_agency_export_with_reporter_and_market_columns() -> None:
    rows = read_import(io.StringIO(AGENCY), ImportDefaults(source="agency"))
    assert rows.layout == "agency" and rows.read == 8 and len(rows) == 5 and rows.duplicates == 1
    reasons = {r.line: r.reason for r in rows.refused}
    assert set(reasons) == {6, 7}
    assert "unknown commodity 'Durian Montong'" in reasons[6]
    assert "unit 'Rp./Kg' for Minyakita: expected rupiah per liter" in reasons[7]
    assert set(rows.series) == {("pasar-senen", "cabai-merah", "", "kg"), ("pasar-senen", "cabai-merah-besar", "", "kg"),
                                ("pasar-senen", "minyak-goreng", "minyakita", "liter"),
                                ("pasar-senen", "minyak-goreng-curah", "curah", "liter")}
    assert set(rows.reporters) == {"r1", "r2"} and rows.price[3] == 17_500
    assert rows.regions[0] == "DKI Jakarta"


def test_import_backfills_by_observation_day_and_is_idempotent() -> None:
    svc = MarketService()
    report = svc.import_rows(read_import(io.StringIO(AGENCY), ImportDefaults(source="agency")))
    assert report["stored"] + report["quarantined"] == 5 and report["refused"] == 2
    hist = svc.history("cabai-merah", "pasar-senen")
    assert [(h["date"], h["price_idr"]) for h in hist] == [("2025-01-02", 41000), ("2025-01-03", 42000)]
    again = svc.import_rows(read_import(io.StringIO(AGENCY), ImportDefaults(source="agency")))
    assert again["already_imported"] == 5 and again["stored"] == 0 and again["quarantined"] == 0
    assert len(svc.history("cabai-merah", "pasar-senen")) == 2


def test_pihps_table_with_the_market_given() -> None:
    rows = read_import(io.StringIO(PIHPS), ImportDefaults(market="pasar-kosambi", reporter="pihps"))
    assert rows.layout == "pihps" and len(rows) == 3
    assert sorted(rows.day) == [day_number("2025-01-02"), day_number("2025-01-03"), day_number("2025-01-03")]
    # One entry for the row, with how many of its dates it holds for; the report still counts both cells.
    assert [(r.line, r.reason) for r in rows.refused] == [(4, "unknown commodity 'Beras Kualitas Bawah I' (2 dates)")]
    assert rows.report()["refused"] == 2
    assert rows.regions == ["Jawa Barat", "Jawa Barat"]


def test_command_checks_a_file_and_reports_refused_rows(tmp_path: Path, capsys) -> None:
    path = tmp_path / "export.csv"
    path.write_text(AGENCY, encoding="utf-8")
    assert markets_main(["import", str(path), "--check", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 8 and report["refused"] == 2 and report["refused_rows"][0]["line"] == 6
    capsys.readouterr()
    assert markets_main(["import", str(tmp_path / "missing.csv"), "--check"]) == 84
    assert '"code": "NO_SUCH_FILE"' in capsys.readouterr().err


async def test_operator_bulk_route_imports_keeps_the_file_and_replays_it_after_a_restart(tmp_path) -> None:
    import aiohttp

    from hub.app import start_hub
    from hub.auth import hash_token
    from hub.config import HubConfig

    config = HubConfig(name="import", data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False,
                       checkpoint_interval=3600, operator_tokens=(hash_token("op-token"),))
    body = AGENCY.encode()
    running = await start_hub(config)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"{running.http_url}/api/markets/import?source=agency"
            async with session.post(url, data=body) as resp:
                assert resp.status in (401, 403)
            headers = {"Authorization": "Bearer op-token"}
            async with session.post(url, data=body, headers=headers) as resp:
                report = await resp.json()
                assert resp.status == 200, report
            assert report["taken"] == 5 and report["refused"] == 2 and report["layout"] == "agency"
            assert [r["line"] for r in report["refused_rows"]] == [6, 7]
            async with session.post(url, data=body, headers=headers) as resp:
                again = await resp.json()
            assert again["already_imported"] == 5 and again["stored"] == 0
            async with session.get(f"{running.http_url}/api/markets/history/cabai-merah",
                                   params={"market": "pasar-senen"}) as resp:
                hist = await resp.json()
            assert [h["price_idr"] for h in hist["history"]] == [41000, 42000]
        # The command sends a file the same way.
        pihps = tmp_path / "pihps.csv"
        pihps.write_text(PIHPS, encoding="utf-8")
        code = await asyncio.to_thread(markets_main, ["import", str(pihps), "--hub-url", running.http_url,
                                                       "--token", "op-token", "--market", "pasar-kosambi",
                                                       "--quiet"])
        assert code == 0
        assert len(running.views.markets.history("bawang-merah", "pasar-kosambi")) == 2
    finally:
        await running.close()
    kept = sorted((tmp_path / "hub" / "imports").glob("*.csv"))
    assert len(kept) == 2 and body in [k.read_bytes() for k in kept]
    running = await start_hub(config)
    try:
        prices = running.views.markets.history("cabai-merah", "pasar-senen")
        assert [h["price_idr"] for h in prices] == [41000, 42000]
    finally:
        await running.close()


# Prices as Indonesian spreadsheets write them, and the ways a file loses a price's magnitude.
FORMATS = """Tanggal;Komoditas;Satuan;Harga;Pasar
2025-01-06;Cabai Merah Keriting;Rp/kg;Rp 45.000;pasar-senen
2025-01-06;Bawang Merah;Rp/kg;Rp. 36.500,-;pasar-senen
2025-01-06;Telur Ayam Ras;Rp/kg;28.500,00;pasar-senen
2025-01-06;Minyak Goreng Curah;Rp./Liter;Rp\u00a017.500;pasar-senen
2025-01-06;Daging Ayam Ras;Rp/kg;IDR 37,000;pasar-senen
2025-01-06;Beras Medium;Rp/kg;13,6;pasar-senen
"""


def test_indonesian_number_formats_are_read_as_rupiah() -> None:
    rows = read_import(io.StringIO(FORMATS))
    prices = {key[1]: p for key, p in zip(rows.series, rows.price, strict=True)}
    assert prices == {"cabai-merah": 45_000, "bawang-merah": 36_500, "telur-ayam": 28_500,
                      "minyak-goreng-curah": 17_500, "daging-ayam": 37_000}
    # "13,6" (thousands of rupiah with a decimal comma) is refused, never filed as Rp 14.
    [refused] = rows.refused
    assert refused.line == 7 and "not a plausible price of Beras Medium per kg" in refused.reason


def test_an_unquoted_thousands_separator_is_refused_not_read_as_a_fraction() -> None:
    text = ("Tanggal,Komoditas,Satuan,Harga,Pasar\n"
            "2025-01-06,Cabai Merah Keriting,Rp/kg,45,000,pasar-senen\n"
            "2025-01-06,Bawang Merah,Rp/kg,\"36,500\",pasar-senen\n"
            "2025-01-06,Telur Ayam Ras,Rp/kg,28,pasar-senen\n")
    rows = read_import(io.StringIO(text))
    assert rows.read == 3 and rows.price == [36_500]
    reasons = {r.line: r.reason for r in rows.refused}
    assert "row has 6 cells, the header 5" in reasons[2] and "quote the prices" in reasons[3 - 1]
    assert "thousands of rupiah" in reasons[4]
    pihps = read_import(io.StringIO("No.,Komoditas (Rp),02/01/2025,03/01/2025\n1,Bawang Merah,36,500,37,000\n"
                                    "2,Cabai Merah Keriting,\"41.000\",\"42.000\"\n"),
                        ImportDefaults(market="pasar-kosambi"))
    assert pihps.price == [41_000, 42_000] and [r.line for r in pihps.refused] == [2]


def test_a_refused_price_is_quoted_as_the_file_wrote_it_and_coded_once() -> None:
    text = ("Tanggal;Pasar;Komoditas;Satuan;Harga\n"
            "2026-03-06;Pasar Senen;Bawang Merah;Rp/kg;45,5\n"
            "2026-03-06;Pasar Senen;Cabai Merah Keriting;Rp/kg;45rb\n")
    rows = read_import(io.StringIO(text))
    reasons = {r.line: r for r in rows.refused}
    # The cell as written, its comma kept; the amount read from it in the rupiah's own notation.
    assert reasons[2].reason.startswith("price '45,5' read as Rp 46 is not a plausible price of Bawang Merah")
    assert "Rp 36.000" in reasons[2].reason
    # The code is the row's own field; the reason does not repeat it.
    assert reasons[3].code == "BAD_INPUT_FILE"
    assert reasons[3].reason == "price: expected a rupiah amount, got '45rb'"
    assert "BAD_INPUT_FILE" not in json.dumps(rows.report()["refused_rows"][1]["reason"])
