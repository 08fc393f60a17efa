"""Markets (real pasar rakyat with their coordinates) and commodities that the generator, loaders and
checks share."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Market:
    id: str
    name: str
    admin1: str  # province, as WFP's admin1
    admin2: str  # city or regency, as WFP's admin2
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Commodity:
    id: str
    name: str  # Indonesian name as Panel Harga writes it
    wfp_name: str  # WFP's commodity name
    category: str  # WFP's category
    unit: str
    grade: str
    base_idr: int  # a typical 2024 consumer price, for the generator
    daily_vol: float  # typical day-to-day change of the true price (log sd), for the generator
    noise: float  # typical disagreement between honest reporters (relative sd)
    tick_idr: int  # traders quote in steps of this many rupiah
    max_jump: float  # largest plausible one-day move, for the sudden-jump rule
    ramadan_lift: float  # typical rise over Ramadan and Lebaran
    weekly: float  # amplitude of the weekly market-day pattern


# Coordinates are the markets' approximate positions (good to a few hundred metres) for the map.
MARKETS: tuple[Market, ...] = (
    Market(id="pasar-kramat-jati", name="Pasar Induk Kramat Jati", admin1="DKI Jakarta",
           admin2="Jakarta Timur", latitude=-6.2793, longitude=106.8679),
    Market(id="pasar-senen", name="Pasar Senen", admin1="DKI Jakarta", admin2="Jakarta Pusat",
           latitude=-6.1737, longitude=106.8428),
    Market(id="pasar-minggu", name="Pasar Minggu", admin1="DKI Jakarta", admin2="Jakarta Selatan",
           latitude=-6.2846, longitude=106.8434),
    Market(id="pasar-kosambi", name="Pasar Kosambi", admin1="Jawa Barat", admin2="Kota Bandung",
           latitude=-6.9180, longitude=107.6213),
    Market(id="pasar-bogor", name="Pasar Bogor", admin1="Jawa Barat", admin2="Kota Bogor",
           latitude=-6.6046, longitude=106.7990),
    Market(id="pasar-johar", name="Pasar Johar", admin1="Jawa Tengah", admin2="Kota Semarang",
           latitude=-6.9686, longitude=110.4270),
    Market(id="pasar-gede", name="Pasar Gede Hardjonagoro", admin1="Jawa Tengah", admin2="Kota Surakarta",
           latitude=-7.5686, longitude=110.8318),
    Market(id="pasar-beringharjo", name="Pasar Beringharjo", admin1="DI Yogyakarta", admin2="Kota Yogyakarta",
           latitude=-7.7986, longitude=110.3658),
    Market(id="pasar-kranggan", name="Pasar Kranggan", admin1="DI Yogyakarta", admin2="Kota Yogyakarta",
           latitude=-7.7826, longitude=110.3670),
    Market(id="pasar-keputran", name="Pasar Keputran", admin1="Jawa Timur", admin2="Kota Surabaya",
           latitude=-7.2765, longitude=112.7427),
    Market(id="pasar-besar-malang", name="Pasar Besar Malang", admin1="Jawa Timur", admin2="Kota Malang",
           latitude=-7.9866, longitude=112.6318),
    Market(id="pasar-petisah", name="Pasar Petisah", admin1="Sumatera Utara", admin2="Kota Medan",
           latitude=3.5899, longitude=98.6698),
    Market(id="pasar-sambu", name="Pasar Sambu", admin1="Sumatera Utara", admin2="Kota Medan",
           latitude=3.5866, longitude=98.6886),
    Market(id="pasar-badung", name="Pasar Badung", admin1="Bali", admin2="Kota Denpasar",
           latitude=-8.6556, longitude=115.2131),
    Market(id="pasar-kreneng", name="Pasar Kreneng", admin1="Bali", admin2="Kota Denpasar",
           latitude=-8.6500, longitude=115.2229),
    Market(id="pasar-terong", name="Pasar Terong", admin1="Sulawesi Selatan", admin2="Kota Makassar",
           latitude=-5.1410, longitude=119.4210),
    Market(id="pasar-pabaeng-baeng", name="Pasar Pa'baeng-baeng", admin1="Sulawesi Selatan",
           admin2="Kota Makassar", latitude=-5.1720, longitude=119.4290),
)

COMMODITIES: tuple[Commodity, ...] = (
    Commodity(id="beras-medium", name="Beras Medium", wfp_name="Rice (medium quality)",
              category="cereals and tubers", unit="kg", grade="medium", base_idr=12_300, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0),
    Commodity(id="beras-premium", name="Beras Premium", wfp_name="Rice (premium quality)",
              category="cereals and tubers", unit="kg", grade="premium", base_idr=14_300, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0),
    Commodity(id="cabai-merah", name="Cabai Merah Keriting", wfp_name="Chili (red)",
              category="vegetables and fruits", unit="kg", grade="", base_idr=42_000, daily_vol=0.025,
              noise=0.02, tick_idr=1000, max_jump=0.35, ramadan_lift=0.15, weekly=0.01),
    Commodity(id="cabai-rawit", name="Cabai Rawit Merah", wfp_name="Chili (bird's eye)",
              category="vegetables and fruits", unit="kg", grade="", base_idr=48_000, daily_vol=0.025,
              noise=0.02, tick_idr=1000, max_jump=0.35, ramadan_lift=0.15, weekly=0.01),
    Commodity(id="bawang-merah", name="Bawang Merah", wfp_name="Shallots",
              category="vegetables and fruits", unit="kg", grade="", base_idr=36_000, daily_vol=0.015,
              noise=0.015, tick_idr=500, max_jump=0.25, ramadan_lift=0.10, weekly=0.005),
    Commodity(id="bawang-putih", name="Bawang Putih Bonggol", wfp_name="Garlic",
              category="vegetables and fruits", unit="kg", grade="", base_idr=38_000, daily_vol=0.008,
              noise=0.012, tick_idr=500, max_jump=0.20, ramadan_lift=0.05, weekly=0.0),
    Commodity(id="telur-ayam", name="Telur Ayam Ras", wfp_name="Eggs",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=27_500, daily_vol=0.006,
              noise=0.01, tick_idr=500, max_jump=0.15, ramadan_lift=0.06, weekly=0.003),
    Commodity(id="daging-ayam", name="Daging Ayam Ras", wfp_name="Meat (chicken)",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=35_000, daily_vol=0.007,
              noise=0.012, tick_idr=500, max_jump=0.15, ramadan_lift=0.10, weekly=0.004),
    Commodity(id="minyak-goreng", name="Minyak Goreng Kemasan Sederhana", wfp_name="Oil (cooking)",
              category="oil and fats", unit="liter", grade="minyakita", base_idr=15_200, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0),
    Commodity(id="gula-pasir", name="Gula Konsumsi", wfp_name="Sugar", category="miscellaneous food",
              unit="kg", grade="", base_idr=17_000, daily_vol=0.002, noise=0.006, tick_idr=100,
              max_jump=0.10, ramadan_lift=0.03, weekly=0.0),
)

MARKETS_BY_ID = {m.id: m for m in MARKETS}
COMMODITIES_BY_ID = {c.id: c for c in COMMODITIES}


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
