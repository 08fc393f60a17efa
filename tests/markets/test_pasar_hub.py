"""A running `jejak hub run` given ten weeks of Jakarta's prices as an operator imports them (a ';' file with
prices as Indonesian spreadsheets write them, a fat-fingered chilli price, a price in thousands, a commodity
with three days of history), and what it answers: the rupiah read right, the mistakes held or refused, the
chilli spike standing and in ALPS crisis at every market, and forecasts with honest intervals or a clear
refusal."""

from __future__ import annotations

import numpy as np
import requests

from hub.markets.calendar import date_of, day_number
from hub.markets.model import day_of
from tests.security.test_fuzz_routes import OPERATOR, _get, hub_process

from .pasar import MARKETS, generate

__all__ = ["hub_process"]  # a fixture, used by name

NAMES = {"cabai-merah": "Cabai Merah Keriting", "beras-medium": "Beras Medium", "telur-ayam": "Telur Ayam Ras",
         "bawang-merah": "Bawang Merah"}
UNTIL = "2025-01-08"  # two days before the chilli's peak
FORMATS = ("Rp {}", "{},00", "Rp. {},-", "{}")


def _rupiah(price: int, k: int) -> str:
    return FORMATS[k % len(FORMATS)].format(f"{price:,}".replace(",", "."))


def _file() -> tuple[str, dict[tuple[str, int], int]]:
    """The import file and the daily price of each (market, day) of chilli in it."""
    data = generate()
    last = day_number(UNTIL)
    daily: dict[tuple[str, str, int], list[int]] = {}
    for o in data.observations:
        d = day_of(o.time)
        if o.id not in data.label and o.commodity in NAMES and d <= last:
            daily.setdefault((o.market, o.commodity, d), []).append(o.price_idr)
    lines = ["Tanggal;Komoditas;Satuan;Harga;Pasar;Pelapor"]
    chilli = {}
    for k, ((market, commodity, d), prices) in enumerate(sorted(daily.items(), key=lambda kv: kv[0][2])):
        price = int(round(float(np.median(prices)), -2))
        if commodity == "cabai-merah":
            chilli[(market, d)] = price
        lines.append(f"{date_of(d).isoformat()};{NAMES[commodity]};Rp/kg;{_rupiah(price, k)};{market};pihps")
    lines.append(f"{UNTIL};Cabai Merah Keriting;Rp/kg;Rp 420.000;pasar-minggu;pelapor-2")  # for 42.000
    lines.append(f"{UNTIL};Beras Medium;Rp/kg;13,6;pasar-minggu;pelapor-2")  # thousands of rupiah
    for d in (last - 2, last - 1, last):
        lines.append(f"{date_of(d).isoformat()};Daging Sapi Murni;Rp/kg;Rp 135.000;pasar-senen;pihps")
    return "\n".join(lines) + "\n", chilli


def test_a_running_hub_imports_pasar_prices_and_answers_on_them(hub_process, tmp_path) -> None:
    url, _, proc = hub_process
    text, chilli = _file()
    answer = requests.post(f"{url}/api/markets/import?source=pihps", data=text.encode(),
                           headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=120)
    report = answer.json()
    assert answer.status_code == 200, report
    assert report["refused"] == 1 and "thousands of rupiah" in report["refused_rows"][0]["reason"]
    held = _get(f"{url}/api/markets/quarantine")["entries"]
    # The one held is the mistyped chilli, not the honest price beside it on a day the chilli jumped.
    assert report["quarantined"] == 1, [e["verdict"]["summary"] for e in held]
    assert [e["observation"]["price_idr"] for e in held] == [420_000]
    # Every chilli price stood, read as rupiah whatever its format: Rp 25.000 in November to the spike.
    for market in MARKETS:
        hist = _get(f"{url}/api/markets/history/cabai-merah?market={market}")["history"]
        got = {h["day"]: h["price_idr"] for h in hist}
        assert got == {d: p for (m, d), p in chilli.items() if m == market}
        assert min(got.values()) < 30_000 and max(got.values()) > 60_000
    bands = {(a["market"], a["commodity"]): a for m in _get(f"{url}/api/markets/map")["markets"] for a in m["alps"]}
    assert all(bands[(m, "cabai-merah")]["band"] == "crisis" for m in MARKETS), bands
    fc = _get(f"{url}/api/markets/forecast/cabai-merah?market=pasar-senen")
    points = fc["points"]
    assert len(points) == 7 and points[0]["date"] == "2025-01-09"
    assert all(0 < p["lo95"] < p["lo80"] <= p["price_idr"] <= p["hi80"] < p["hi95"] for p in points)
    short = requests.get(f"{url}/api/markets/forecast/daging-sapi?market=pasar-senen", timeout=30)
    assert short.status_code == 422 and short.json()["error"]["code"] == "BAD_SERIES"
    assert "14 days" in short.json()["error"]["message"]
    assert proc.poll() is None and "Traceback" not in (tmp_path / "hub.log").read_text()
