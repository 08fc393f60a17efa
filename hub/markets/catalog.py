"""Markets (real pasar rakyat with their coordinates) and the commodity catalogue (the national food
agency's consumer list, names as its panel writes them) that the bridges, loaders, checks and generator
share."""

from __future__ import annotations

import math
import re
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
    aliases: tuple[str, ...] = ()  # other spellings of this same item (never of a different item)


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

# Badan Pangan Nasional's consumer list (Panel Harga Pangan, tingkat konsumen), one entry per item as the
# panel writes it. Items that differ in grade or packaging are distinct entries (Cabai Merah Besar is not
# Keriting, Minyak Goreng Curah is not Minyakita): they are priced and regulated differently.
COMMODITIES: tuple[Commodity, ...] = (
    Commodity(id="beras-premium", name="Beras Premium", wfp_name="Rice (premium quality)",
              category="cereals and tubers", unit="kg", grade="premium", base_idr=14_300, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0,
              aliases=("Beras Kualitas Super I",)),
    Commodity(id="beras-medium", name="Beras Medium", wfp_name="Rice (medium quality)",
              category="cereals and tubers", unit="kg", grade="medium", base_idr=12_300, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0, aliases=("Beras", "Beras Kualitas Medium I")),
    Commodity(id="beras-sphp", name="Beras SPHP", wfp_name="Rice (SPHP stabilisation)",
              category="cereals and tubers", unit="kg", grade="sphp", base_idr=12_500, daily_vol=0.001,
              noise=0.004, tick_idr=100, max_jump=0.10, ramadan_lift=0.0, weekly=0.0),
    Commodity(id="jagung-peternak", name="Jagung Tk Peternak", wfp_name="Maize (feed)",
              category="cereals and tubers", unit="kg", grade="", base_idr=6_200, daily_vol=0.004,
              noise=0.01, tick_idr=100, max_jump=0.15, ramadan_lift=0.0, weekly=0.0,
              aliases=("Jagung Tingkat Peternak", "Jagung Pipilan Kering")),
    Commodity(id="kedelai-impor", name="Kedelai Biji Kering (Impor)", wfp_name="Soybeans (imported)",
              category="pulses and nuts", unit="kg", grade="", base_idr=11_000, daily_vol=0.003,
              noise=0.008, tick_idr=100, max_jump=0.12, ramadan_lift=0.01, weekly=0.0,
              aliases=("Kedelai Biji Kering Impor", "Kedelai Impor")),
    Commodity(id="bawang-merah", name="Bawang Merah", wfp_name="Shallots",
              category="vegetables and fruits", unit="kg", grade="", base_idr=36_000, daily_vol=0.015,
              noise=0.015, tick_idr=500, max_jump=0.25, ramadan_lift=0.10, weekly=0.005,
              aliases=("Bawang Merah Ukuran Sedang",)),
    Commodity(id="bawang-putih", name="Bawang Putih Bonggol", wfp_name="Garlic",
              category="vegetables and fruits", unit="kg", grade="", base_idr=38_000, daily_vol=0.008,
              noise=0.012, tick_idr=500, max_jump=0.20, ramadan_lift=0.05, weekly=0.0, aliases=("Bawang Putih", "Bawang Putih Ukuran Sedang")),
    Commodity(id="cabai-merah", name="Cabai Merah Keriting", wfp_name="Chili (red)",
              category="vegetables and fruits", unit="kg", grade="", base_idr=42_000, daily_vol=0.025,
              noise=0.02, tick_idr=1000, max_jump=0.35, ramadan_lift=0.15, weekly=0.01),
    Commodity(id="cabai-merah-besar", name="Cabai Merah Besar", wfp_name="Chili (red, large)",
              category="vegetables and fruits", unit="kg", grade="", base_idr=45_000, daily_vol=0.025,
              noise=0.02, tick_idr=1000, max_jump=0.35, ramadan_lift=0.15, weekly=0.01),
    Commodity(id="cabai-rawit", name="Cabai Rawit Merah", wfp_name="Chili (bird's eye)",
              category="vegetables and fruits", unit="kg", grade="", base_idr=48_000, daily_vol=0.025,
              noise=0.02, tick_idr=1000, max_jump=0.35, ramadan_lift=0.15, weekly=0.01),
    Commodity(id="daging-sapi", name="Daging Sapi Murni", wfp_name="Meat (beef)",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=135_000, daily_vol=0.002,
              noise=0.01, tick_idr=1000, max_jump=0.10, ramadan_lift=0.06, weekly=0.0, aliases=("Daging Sapi", "Daging Sapi Kualitas 1")),
    Commodity(id="daging-ayam", name="Daging Ayam Ras", wfp_name="Meat (chicken)",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=35_000, daily_vol=0.007,
              noise=0.012, tick_idr=500, max_jump=0.15, ramadan_lift=0.10, weekly=0.004,
              aliases=("Daging Ayam Ras Segar",)),
    Commodity(id="daging-kerbau-beku", name="Daging Kerbau Beku (Impor Luar Negeri)",
              wfp_name="Meat (buffalo, frozen, imported)", category="meat, fish and eggs", unit="kg", grade="",
              base_idr=100_000, daily_vol=0.002, noise=0.01, tick_idr=1000, max_jump=0.10, ramadan_lift=0.03,
              weekly=0.0, aliases=("Daging Kerbau Beku Impor Luar Negeri", "Daging Kerbau Beku")),
    Commodity(id="daging-kerbau-segar", name="Daging Kerbau Segar (Lokal)",
              wfp_name="Meat (buffalo, fresh, local)", category="meat, fish and eggs", unit="kg", grade="",
              base_idr=140_000, daily_vol=0.002, noise=0.01, tick_idr=1000, max_jump=0.10, ramadan_lift=0.05,
              weekly=0.0, aliases=("Daging Kerbau Segar Lokal", "Daging Kerbau Segar")),
    Commodity(id="telur-ayam", name="Telur Ayam Ras", wfp_name="Eggs",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=27_500, daily_vol=0.006,
              noise=0.01, tick_idr=500, max_jump=0.15, ramadan_lift=0.06, weekly=0.003,
              aliases=("Telur Ayam Ras Segar",)),
    Commodity(id="gula-pasir", name="Gula Konsumsi", wfp_name="Sugar", category="miscellaneous food",
              unit="kg", grade="", base_idr=17_000, daily_vol=0.002, noise=0.006, tick_idr=100,
              max_jump=0.10, ramadan_lift=0.03, weekly=0.0, aliases=("Gula Pasir", "Gula Konsumsi (GKP)", "Gula Pasir Lokal")),
    Commodity(id="minyak-goreng-kemasan", name="Minyak Goreng Kemasan", wfp_name="Oil (cooking, packaged)",
              category="oil and fats", unit="liter", grade="kemasan", base_idr=20_500, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0,
              aliases=("Minyak Goreng Kemasan Premium", "Minyak Goreng Kemasan Bermerk 1")),
    Commodity(id="minyak-goreng-curah", name="Minyak Goreng Curah", wfp_name="Oil (cooking, bulk)",
              category="oil and fats", unit="liter", grade="curah", base_idr=17_500, daily_vol=0.003,
              noise=0.008, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0),
    Commodity(id="minyak-goreng", name="Minyakita", wfp_name="Oil (cooking)",
              category="oil and fats", unit="liter", grade="minyakita", base_idr=15_200, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0,
              aliases=("Minyak Goreng Kemasan Sederhana", "MinyaKita")),
    Commodity(id="tepung-terigu-curah", name="Tepung Terigu (Curah)", wfp_name="Wheat flour (bulk)",
              category="cereals and tubers", unit="kg", grade="curah", base_idr=10_000, daily_vol=0.002,
              noise=0.008, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0,
              aliases=("Tepung Terigu Curah",)),
    Commodity(id="tepung-terigu-kemasan", name="Tepung Terigu Kemasan", wfp_name="Wheat flour (packaged)",
              category="cereals and tubers", unit="kg", grade="kemasan", base_idr=13_000, daily_vol=0.002,
              noise=0.006, tick_idr=100, max_jump=0.10, ramadan_lift=0.02, weekly=0.0,
              aliases=("Tepung Terigu (Kemasan)",)),
    Commodity(id="ikan-kembung", name="Ikan Kembung", wfp_name="Fish (mackerel)",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=40_000, daily_vol=0.008,
              noise=0.02, tick_idr=1000, max_jump=0.20, ramadan_lift=0.05, weekly=0.005),
    Commodity(id="ikan-tongkol", name="Ikan Tongkol", wfp_name="Fish (tuna, little)",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=35_000, daily_vol=0.008,
              noise=0.02, tick_idr=1000, max_jump=0.20, ramadan_lift=0.05, weekly=0.005),
    Commodity(id="ikan-bandeng", name="Ikan Bandeng", wfp_name="Fish (milkfish)",
              category="meat, fish and eggs", unit="kg", grade="", base_idr=35_000, daily_vol=0.008,
              noise=0.02, tick_idr=1000, max_jump=0.20, ramadan_lift=0.05, weekly=0.005),
    Commodity(id="garam-konsumsi", name="Garam Konsumsi", wfp_name="Salt", category="miscellaneous food",
              unit="kg", grade="", base_idr=11_000, daily_vol=0.001, noise=0.008, tick_idr=100,
              max_jump=0.10, ramadan_lift=0.0, weekly=0.0, aliases=("Garam Halus", "Garam")),
)

MARKETS_BY_ID = {m.id: m for m in MARKETS}
COMMODITIES_BY_ID = {c.id: c for c in COMMODITIES}

# The commodities the generator and the demo use by default: the ten the project has always simulated.
CORE_COMMODITIES = tuple(COMMODITIES_BY_ID[c] for c in (
    "beras-medium", "beras-premium", "cabai-merah", "cabai-rawit", "bawang-merah", "bawang-putih", "telur-ayam",
    "daging-ayam", "minyak-goreng", "gula-pasir"))


# "Cabe" is how markets, and many a district's sheet, spell cabai.
_CABE = re.compile(r"\bcabe\b")


def name_key(text: str) -> str:
    """A commodity name as the catalogue matches it: case, spacing, brackets and hyphens do not count
    ("Cabai  merah keriting", "cabai-merah-keriting", "CABAI MERAH KERITING" and "Cabe Merah Keriting" are
    one key)."""
    return re.sub(r"[\s()\-_.]+", "", _CABE.sub("cabai", text.casefold()))


def _name_index() -> dict[str, Commodity]:
    index: dict[str, Commodity] = {}
    for c in COMMODITIES:
        for text in (c.id, c.name, *c.aliases):
            key = name_key(text)
            other = index.setdefault(key, c)
            # Two items under one key would merge their prices: refuse the catalogue instead.
            if other is not c:
                raise ValueError(f"commodity catalogue: {text!r} of {c.id} also names {other.id}")
    return index


_BY_KEY = _name_index()


def find_commodity(name: str) -> Commodity | None:
    """The catalogue item a name, id or alias stands for; None if the catalogue does not know it."""
    return _BY_KEY.get(name_key(name))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
