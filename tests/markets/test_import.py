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
    assert [r.reason for r in rows.refused] == ["unknown commodity 'Beras Kualitas Bawah I'"] * 2
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
