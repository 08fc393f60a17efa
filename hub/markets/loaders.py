"""Loaders for real price data: WFP's market-prices CSV (as HDX publishes it) and daily consumer-price
CSVs as Badan Pangan Nasional's Panel Harga exports them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path

from .calendar import day_number
from .catalog import COMMODITIES, find_commodity
from .errors import BadInputFile
from .model import DAY_S, WIB_OFFSET_S, PriceObservation

WFP_REQUIRED = ("date", "admin1", "admin2", "market", "commodity", "unit", "pricetype", "currency", "price")

_BY_WFP = {c.wfp_name.lower(): c for c in COMMODITIES}
_BY_NAME = {c.name.lower(): c for c in COMMODITIES}
# WFP's and older exports' short names for catalogue items (never a name of another catalogue item).
_ALIASES = {
    "telur ayam": "telur-ayam", "cabai merah": "cabai-merah", "cabai rawit": "cabai-rawit",
    "daging ayam": "daging-ayam",
}
_UNITS = {"kg": "kg", "l": "liter", "litre": "liter", "liter": "liter", "unit": "butir", "butir": "butir"}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def commodity_id(name: str) -> tuple[str, str]:
    """Jejak's (commodity id, grade) for a WFP or Panel Harga commodity name; unknown names are slugged."""
    key = name.strip().lower()
    base = re.sub(r"\s*-\s*(retail|wholesale)$", "", key)
    c = _BY_WFP.get(base) or _BY_NAME.get(base) or find_commodity(base)
    if c is not None:
        return c.id, c.grade
    alias = _ALIASES.get(base)
    if alias is not None:
        grade = next(x.grade for x in COMMODITIES if x.id == alias)
        return alias, grade
    return slug(base), ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WfpPrice:
    day: int
    admin1: str
    admin2: str
    market: str
    latitude: float | None
    longitude: float | None
    category: str
    commodity: str
    unit: str
    priceflag: str
    pricetype: str
    currency: str
    price: float
    usdprice: float | None


def _float(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    return float(text)


def read_wfp_csv(source: str | Path | io.TextIOBase) -> list[WfpPrice]:
    """Rows of a WFP market-prices CSV. The HXL tag row under the header (#date, #adm1+name, ...) is
    skipped; extra columns (market_id, commodity_id) are ignored."""
    if isinstance(source, str | Path):
        text = Path(source).read_text("utf-8-sig")
        where = str(source)
    else:
        text, where = source.read(), "wfp csv"
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in WFP_REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise BadInputFile(f"{where}: expected WFP columns {list(WFP_REQUIRED)}, missing {missing}",
                           hint="is this the market-prices file (wfp_food_prices_idn.csv)?")
    out = []
    for line, row in enumerate(reader, start=2):
        if row["date"].startswith("#"):
            continue
        try:
            out.append(WfpPrice(
                day=day_number(row["date"][:10]), admin1=row["admin1"], admin2=row["admin2"],
                market=row["market"], latitude=_float(row.get("latitude")),
                longitude=_float(row.get("longitude")), category=row.get("category", ""),
                commodity=row["commodity"], unit=row["unit"], priceflag=row.get("priceflag", ""),
                pricetype=row["pricetype"], currency=row["currency"], price=float(row["price"]),
                usdprice=_float(row.get("usdprice")),
            ))
        except ValueError as e:
            raise BadInputFile(f"{where} line {line}: expected a date and numbers, got {e}") from None
    return out


def _noon(day: int) -> int:
    return day * DAY_S - WIB_OFFSET_S + 12 * 3600


def wfp_observations(rows: list[WfpPrice], *, pricetype: str = "Retail",
                     source: str = "wfp") -> list[PriceObservation]:
    """Retail rupiah prices of WFP rows as observations (time = local noon of the row's date)."""
    out = []
    for r in rows:
        if r.pricetype != pricetype or r.currency != "IDR" or r.price < 1:
            continue
        cid, grade = commodity_id(r.commodity)
        t = _noon(r.day)
        out.append(PriceObservation(
            id=f"{source}:{r.day}:{slug(r.market)}:{cid}", market=slug(r.market), region=r.admin1,
            commodity=cid, grade=grade, unit=_UNITS.get(r.unit.strip().lower(), r.unit.strip().lower()),
            price_idr=round(r.price), time=t, arrived_at=t, reporter=source, source=source,
        ))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PanelPrice:
    day: int
    province: str
    city: str
    commodity: str  # as written in the file
    price_idr: int


def parse_idr(text: str) -> int | None:
    """A rupiah amount as Indonesian files write it: "15.250", "Rp 15.250", "Rp. 15.250,-", "15,250",
    "15250.00"; "-" or empty for no data."""
    t = re.sub(r"\s", "", text)  # spaces, and the no-break spaces spreadsheets put after "Rp"
    t = re.sub(r"^(?:Rp\.?|IDR)", "", t, flags=re.IGNORECASE)
    t = re.sub(r",-+$", "", t)  # "15.250,-": no sen
    if t in ("", "-", "--", "0"):
        return None
    if re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", t):
        t = t.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    else:
        t = t.replace(",", ".")
    try:
        v = round(float(t))
    except ValueError:
        raise BadInputFile(f"price: expected a rupiah amount, got {text!r}") from None
    return v if v > 0 else None


_MONTHS_ID = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "mei": 5, "may": 5, "jun": 6, "jul": 7, "agu": 8,
              "agt": 8, "aug": 8, "sep": 9, "okt": 10, "oct": 10, "nov": 11, "des": 12, "dec": 12}


def parse_date_id(text: str) -> int | None:
    """A date as Panel Harga exports write it: 2024-03-01, 01/03/2024, 01-03-2024, 1 Mar 2024, 1 Mei 2024.
    None if the text is not a date (so a header cell can be told from a date column)."""
    t = text.strip()
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", t)
    if m:
        y, mo, d = map(int, m.groups())
    else:
        # PIHPS's table heads its columns "01/ 12/ 2025", a space after each slash.
        m = re.fullmatch(r"(\d{1,2})\s*[/-]\s*(\d{1,2})\s*[/-]\s*(\d{4})", t)
        if m:
            d, mo, y = map(int, m.groups())
        else:
            m = re.fullmatch(r"(\d{1,2})\s+([A-Za-z]+)\s+(\d{4})", t)
            if not m or m.group(2)[:3].lower() not in _MONTHS_ID:
                return None
            d, mo, y = int(m.group(1)), _MONTHS_ID[m.group(2)[:3].lower()], int(m.group(3))
    try:
        return day_number(dt.date(y, mo, d))
    except ValueError:
        return None


def _col(fields: list[str], *names: str) -> str | None:
    low = {f.strip().lower().replace(" ", "_").replace("/", "_"): f for f in fields}
    for n in names:
        if n in low:
            return low[n]
    return None


def read_panel_harga_csv(source: str | Path | io.TextIOBase, *, province: str = "",
                         city: str = "") -> list[PanelPrice]:
    """Rows of a Panel Harga consumer-price export. Two layouts are read: long (one row per date and
    commodity: tanggal, provinsi, kab_kota, komoditas, harga) and wide (one row per commodity, one column
    per date, as the site's table export has it). `province` and `city` fill in what the file leaves out.
    Semicolon-separated files (Excel in Indonesian locale) are read too."""
    if isinstance(source, str | Path):
        text = Path(source).read_text("utf-8-sig")
        where = str(source)
    else:
        text, where = source.read(), "panel harga csv"
    dialect = csv.excel
    first = text.splitlines()[0] if text else ""
    if first.count(";") > first.count(","):
        dialect = csv.excel
        rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    else:
        rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        raise BadInputFile(f"{where}: expected a header row, found an empty file")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    c_com = _col(header, "komoditas", "commodity", "nama_komoditas", "komoditi")
    if c_com is None:
        raise BadInputFile(f"{where}: expected a 'Komoditas' column, found {header}")
    k_com = header.index(c_com)
    c_date = _col(header, "tanggal", "date", "tgl")
    out: list[PanelPrice] = []
    if c_date is not None:
        c_price = _col(header, "harga", "price", "harga_rata_rata", "rata_rata")
        if c_price is None:
            raise BadInputFile(f"{where}: expected a 'Harga' column beside 'Tanggal', found {header}")
        c_prov = _col(header, "provinsi", "province")
        c_city = _col(header, "kab_kota", "kabupaten_kota", "kota", "kabupaten", "city")
        for line, r in enumerate(body, start=2):
            cell = dict(zip(header, r, strict=False))
            d = parse_date_id(cell.get(c_date, ""))
            if d is None:
                raise BadInputFile(f"{where} line {line}: expected a date in {c_date!r}, got {cell.get(c_date)!r}")
            p = parse_idr(cell.get(c_price, ""))
            if p is None:
                continue
            out.append(PanelPrice(day=d, province=cell.get(c_prov, province) if c_prov else province,
                                  city=cell.get(c_city, city) if c_city else city,
                                  commodity=cell[c_com].strip(), price_idr=p))
        return out
    date_cols = [(k, d) for k, d in ((k, parse_date_id(h)) for k, h in enumerate(header)) if d is not None]
    if not date_cols:
        raise BadInputFile(f"{where}: expected a 'Tanggal' column or date columns (dd/mm/yyyy), found {header}")
    for r in body:
        name = r[k_com].strip() if k_com < len(r) else ""
        if not name:
            continue
        for k, d in date_cols:
            p = parse_idr(r[k]) if k < len(r) else None
            if p is not None:
                out.append(PanelPrice(day=d, province=province, city=city, commodity=name, price_idr=p))
    return out


def panel_observations(rows: list[PanelPrice], *, source: str = "panel-harga") -> list[PriceObservation]:
    """Panel Harga rows as observations: the market is the city (or province) the prices stand for."""
    out = []
    for r in rows:
        cid, grade = commodity_id(r.commodity)
        c = find_commodity(cid)
        unit = c.unit if c is not None else "kg"
        place = slug(r.city or r.province or "nasional")
        t = _noon(r.day)
        out.append(PriceObservation(
            id=f"{source}:{r.day}:{place}:{cid}", market=f"panel-{place}", region=r.province, commodity=cid,
            grade=grade, unit=unit, price_idr=r.price_idr, time=t, arrived_at=t, reporter=source, source=source,
        ))
    return out
