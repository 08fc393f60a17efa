"""Bulk import of price history: the national food agency's export, the PIHPS table and Jejak's own long
layout, read into columns with every refused row and its reason, for backfilling by observation date."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from coap_server.wording import count

from .calendar import date_of
from .catalog import MARKETS_BY_ID, Commodity, find_commodity
from .errors import BadInputFile, BadUnit
from .loaders import parse_date_id, parse_idr, slug
from .model import DAY_S, WIB_OFFSET_S
from .units import Conversion, as_reported, conversion
from .validate import ObservationBatch

# The agency's export (Panel Harga Pangan, "Unduh Data"): one row per commodity and day.
AGENCY_COLUMNS = ("Timestamp", "ID", "Komoditas", "Satuan", "Harga", "Harga Kemarin", "Tanggal Kemarin", "Gap",
                  "Gap Persen", "Gap Perubahan")
OBSERVED_HOUR = 8  # a day's price without a time of day is filed at 08:00 local time, market hours
Progress = Callable[[int], None]

_DATE_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# A price this many times below or above the catalogue's typical one is not rupiah per the catalogue's unit:
# a table in thousands of rupiah ("45" for Rp 45.000), a decimal comma read as a separator, a price per ons
# or per sack. Real moves stay well inside: chilli went from about a half to about three times its typical
# price in the worst seasons.
IMPLAUSIBLE = 20
# PIHPS numbers its commodity groups I, II, III ... and their items 1, 2 ...: a group's row ("Beras", "Cabai
# Merah") averages its items (six qualities of rice, two chillies), so it is no price of any one of them; read as
# the item of the same name it would stand in for that item's own row, which then counts as a duplicate.
_HEADING = re.compile(r"[IVXLC]+\.?")
_MARKET_NAMES = {**{slug(m.name): m.id for m in MARKETS_BY_ID.values()}, **{m: m for m in MARKETS_BY_ID}}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportDefaults:
    """What the file leaves out: the market, region and reporter its prices stand for."""

    market: str = ""  # catalogue market id, or any id ("panel-kota-bandung") for a place without one
    region: str = ""  # province (admin1)
    reporter: str = ""  # empty: the file's source name
    source: str = "import"


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    line: int  # 1-based line in the file (the header is line 1)
    reason: str
    code: str = BadInputFile.code  # BAD_UNIT for a unit that cannot be converted

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "reason": self.reason, "code": self.code}


@dataclass(slots=True, kw_only=True)
class ImportRows:
    """The rows read so far, as columns, and the rows refused with their reasons."""

    layout: str
    series: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    regions: list[str] = field(default_factory=list)
    reporters: dict[str, int] = field(default_factory=dict)
    series_idx: list[int] = field(default_factory=list)
    reporter_idx: list[int] = field(default_factory=list)
    price: list[int] = field(default_factory=list)
    day: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    # Rows converted to the catalogue's unit (a price per ons or per half kg): each one's id -> the price as
    # the file gave it ("Rp 4.500/ons"), which the observation keeps beside the converted one.
    reported: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    read: int = 0
    folded: int = 0  # refused cells of a PIHPS row listed under an earlier cell's entry (same line, same reason)
    no_price: int = 0  # rows (or PIHPS cells) whose price is "-", empty or 0: no price that day, not an error

    def batch(self, *, start: int = 0, stop: int | None = None) -> ObservationBatch:
        """Rows start..stop as an ObservationBatch filed at their observation day (arrival = observation:
        the agency's records are history, not a late uplink)."""
        sl = slice(start, stop)
        day = np.array(self.day[sl], np.int64)
        t = day * DAY_S - WIB_OFFSET_S + OBSERVED_HOUR * 3600
        return ObservationBatch(series=tuple(self.series), regions=tuple(self.regions),
                                reporters=tuple(self.reporters), series_idx=np.array(self.series_idx[sl], np.int64),
                                reporter_idx=np.array(self.reporter_idx[sl], np.int64),
                                price=np.array(self.price[sl], np.float64), time=t, arrived=t.copy(),
                                ids=tuple(self.ids[sl]))

    def __len__(self) -> int:
        return len(self.price)

    def report(self, limit: int = 100) -> dict[str, object]:
        return {"layout": self.layout, "rows": self.read, "taken": len(self), "duplicates": self.duplicates,
                "converted": len(self.reported), "refused": len(self.refused) + self.folded, "no_price": self.no_price,
                "refused_rows": [r.to_dict() for r in self.refused[:limit]]}


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().casefold()).strip("_")


def _find(header: list[str], *names: str) -> int | None:
    keys = [_key(h) for h in header]
    for n in names:
        if n in keys:
            return keys.index(n)
    return None


class _Columns:
    """Turns rows of cells into kept rows and refusals column by column: a file repeats a few dozen names,
    units, dates, markets and reporters a million times, so each distinct text is resolved once."""

    def __init__(self, out: ImportRows, defaults: ImportDefaults, latest_day: int | None) -> None:
        self.out = out
        self.source = defaults.source
        self.latest_day = latest_day
        self._seen: set[tuple[int, int, int]] = set()

    def add(self, lines: list[int], names: list[str], units: list[str] | None, prices: list[str],
            days: list[str], markets: list[str], regions: list[str], reporters: list[str]) -> None:
        out, n = self.out, len(lines)
        out.read += n
        why: list[str | None] = [None] * n
        code: dict[int, str] = {}
        com = {t: find_commodity(t) for t in set(names)}
        cs = [com[t] for t in names]
        for k, c in enumerate(cs):
            if c is None:
                why[k] = f"unknown commodity {names[k].strip()[:60]!r}"
        per: list[Conversion | None] = [None] * n  # set where the row's unit is not the catalogue's
        if units is not None:
            read: dict[tuple[str, Commodity], Conversion | BadUnit] = {}
            for k, (c, u) in enumerate(zip(cs, units, strict=True)):
                if c is None:
                    continue
                cv = read.get((u, c))
                if cv is None:
                    try:
                        cv = read[(u, c)] = conversion(u, c)
                    except BadUnit as exc:
                        cv = read[(u, c)] = exc
                if isinstance(cv, BadUnit):
                    if why[k] is None:
                        why[k], code[k] = cv.message, cv.code
                elif not cv.same:
                    per[k] = cv
        day_of_text = {t: _day(t) for t in set(days)}
        ds = [day_of_text[t] for t in days]
        latest = self.latest_day
        for k, d in enumerate(ds):
            if why[k] is not None:
                continue
            if d is None:
                why[k] = f"date: expected a date such as 2025-01-31, got {days[k][:40]!r}"
            elif d < 0:
                why[k] = f"date: {days[k].strip()[:40]!r} is before 1970"
            elif latest is not None and d > latest:
                # A price file is history: a day after the hub's today is a wrong date (a typo, a clock), and
                # one at the end of the calendar left the forecasts unable to count days past it.
                why[k] = (f"date: {days[k].strip()[:40]!r} is after today ({date_of(latest)}): a price file holds "
                          f"prices already seen")
        ps: list[int | None] = [int(t) if t.isdigit() else None for t in prices]
        for k, p in enumerate(ps):
            if p is None or p == 0:
                try:
                    ps[k] = parse_idr(prices[k]) or None
                except BadInputFile as exc:
                    why[k] = why[k] or exc.message  # the row's code is listed beside its reason
                    continue
        # "-" (or an empty cell, or 0) is how the agency's and PIHPS's tables say a market had no price that day:
        # a day missing, as a Sunday or Lebaran's closed week is, not a row to correct.
        blank = [k for k in range(n) if ps[k] is None and why[k] is None]
        for k in blank:
            why[k] = ""
        out.no_price += len(blank)
        given: dict[int, str] = {}  # the price as the file gave it, of the rows converted
        for k, to in enumerate(per):
            p = ps[k]
            if to is not None and p is not None and why[k] is None:
                given[k] = as_reported(p, units[k] if units else "")
                ps[k] = to.price(p)
        for k, (c, p) in enumerate(zip(cs, ps, strict=True)):
            if c is not None and p is not None and why[k] is None and not (
                    c.base_idr / IMPLAUSIBLE <= p <= c.base_idr * IMPLAUSIBLE):
                why[k] = (f"price {prices[k].strip()[:20]!r} read as " + f"Rp {p:,} ".replace(",", ".")
                          + f"is not a plausible price of {c.name} per {c.unit} (typically about "
                          + f"Rp {c.base_idr:,}): ".replace(",", ".")
                          + "a table in thousands of rupiah, or a decimal or thousands separator read wrong?")
        for k, m in enumerate(markets):
            if not m and why[k] is None:
                why[k] = "market: the file names none and no --market was given"
        keep = [k for k in range(n) if why[k] is None] if any(w is not None for w in why) else range(n)
        for k in range(n):
            if why[k]:
                out.refused.append(Refused(line=lines[k], reason=why[k] or "", code=code.get(k, BadInputFile.code)))
        # Each distinct (market, item, reporter) is resolved to its series, reporter and id prefix once.
        series, regs, reps, source = out.series, out.regions, out.reporters, self.source
        cid = [c.id if c is not None else "" for c in cs]  # ids hash in C; the dataclass hashes in Python
        slot: dict[tuple[str, str, str], tuple[int, int, str]] = {}
        for k in keep:
            t = (markets[k], cid[k], reporters[k])
            if t in slot:
                continue
            c = cs[k]
            assert c is not None
            key = (markets[k], c.id, c.grade, c.unit)
            s = series.get(key)
            if s is None:
                s = series[key] = len(regs)
                regs.append(regions[k])
            rep = reporters[k] or source
            r = reps.get(rep)
            if r is None:
                r = reps[rep] = len(reps)
            slot[t] = (s, r, f"{source}:{key[0]}:{key[1]}:{rep}:")
        got = [slot[(markets[k], cid[k], reporters[k])] for k in keep]
        kd = cast(list[int], [ds[k] for k in keep])  # a row without a day was refused above
        keys = [(g[0], g[1], d) for g, d in zip(got, kd, strict=True)]
        # The same reporter's price for the same item, market and day is one observation: a second row
        # does not count it twice.
        fresh = set(keys)
        if len(fresh) != len(keys) or not self._seen.isdisjoint(fresh):
            first: list[int] = []
            for j, seen in enumerate(keys):
                if seen in self._seen:
                    out.duplicates += 1
                else:
                    self._seen.add(seen)
                    first.append(j)
            got, kd, keep = [got[j] for j in first], [kd[j] for j in first], [keep[j] for j in first]
        else:
            self._seen |= fresh
        out.series_idx.extend(g[0] for g in got)
        out.reporter_idx.extend(g[1] for g in got)
        out.price.extend(ps[k] for k in keep)  # type: ignore[misc]
        out.day.extend(kd)
        out.ids.extend(g[2] + str(d) for g, d in zip(got, kd, strict=True))
        if given:
            for k, g, d in zip(keep, got, kd, strict=True):
                if k in given:
                    out.reported[g[2] + str(d)] = given[k]


def _day(text: str) -> int | None:
    t = text.strip()
    m = _DATE_ISO.match(t)
    # "01/ 12/ 2025" as PIHPS writes it, else a date before its time of day ("02/01/2025 00:00").
    return parse_date_id(m.group(0)) if m else parse_date_id(t) or parse_date_id(t.split(" ")[0])


def _rows(fh: Iterable[str], where: str) -> Iterator[list[str]]:
    """The file's rows; a file that is not UTF-8 CSV is BadInputFile with the line it stopped at."""
    line = 0
    try:
        it = iter(fh)
        first = next(it, "")
        delimiter = ";" if first.count(";") > first.count(",") else ","
        reader = csv.reader(itertools.chain((first,), it), delimiter=delimiter)
        for row in reader:
            line = reader.line_num
            yield row
    except (csv.Error, UnicodeDecodeError) as exc:  # a field over csv's limit (128 KB), bytes that are not UTF-8
        raise BadInputFile(f"{where}: after line {line}: not readable as UTF-8 CSV ({str(exc)[:200]})",
                           hint="export the table again as CSV in UTF-8; no cell of a price file is that long"
                           ) from None


def read_import(source: str | Path | io.TextIOBase, defaults: ImportDefaults | None = None, *,
                progress: Progress | None = None, every: int = 100_000, name: str | None = None,
                latest_day: int | None = None) -> ImportRows:
    """Read a price file in any of the three layouts. Rows that do not hold are refused one by one with
    their line and reason, among them rows dated before 1970 or after `latest_day` (the reader's today, a day
    number); a file whose header fits no layout raises BadInputFile, naming the file as `name` (default: its
    path)."""
    defaults = defaults or ImportDefaults()
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8-sig", newline="") as fh:
            return _read(fh, defaults, name or str(source), progress, every, latest_day)
    return _read(source, defaults, name or "import file", progress, every, latest_day)


def _read(fh: Iterable[str], defaults: ImportDefaults, where: str, progress: Progress | None,
          every: int, latest_day: int | None) -> ImportRows:
    rows = _rows(fh, where)
    header = next(rows, None)
    if not header:
        raise BadInputFile(f"{where}: expected a header row, found an empty file")
    header = [h.strip().lstrip("\ufeff") for h in header]
    c_com = _find(header, "komoditas", "commodity", "nama_komoditas", "komoditi", "komoditas_rp")
    if c_com is None:
        raise BadInputFile(f"{where}: expected a 'Komoditas' column, found {header[:12]}",
                           hint="export from Panel Harga Pangan (Unduh Data) or PIHPS (tabel harga)")
    c_date = _find(header, "timestamp", "tanggal", "date", "tgl")
    c_market = _find(header, "market", "market_id", "pasar", "nama_pasar")
    c_region = _find(header, "provinsi", "province", "region", "admin1")
    c_city = _find(header, "kab_kota", "kabupaten_kota", "kota", "city", "admin2")
    c_rep = _find(header, "reporter", "pelapor", "enumerator", "petugas", "device_id")
    if c_date is not None:
        c_price = _find(header, "harga", "price", "harga_rata_rata", "rata_rata")
        if c_price is None:
            raise BadInputFile(f"{where}: expected a 'Harga' column beside {header[c_date]!r}, found {header[:12]}")
        c_unit = _find(header, "satuan", "unit")
        layout = "agency" if _find(header, "harga_kemarin") is not None else "long"
        out = ImportRows(layout=layout)
        cols = _Columns(out, defaults, latest_day)
        width = len(header)
        line = 1
        while True:
            block = list(itertools.islice(rows, every))
            if not block:
                break
            lines = list(range(line + 1, line + 1 + len(block)))
            line += len(block)
            if any(len(r) != width for r in block):
                fixed = []
                for k, r in zip(lines, block, strict=True):
                    if len(r) > width:
                        out.read += 1
                        out.refused.append(Refused(line=k, reason=_too_wide(len(r), width)))
                    elif any(x.strip() for x in r):
                        fixed.append((k, r + [""] * (width - len(r))))
                lines, block = [k for k, _ in fixed], [r for _, r in fixed]
                if not block:
                    continue
            def col(c: int | None, rows: list[list[str]] = block) -> list[str] | None:
                return None if c is None else list(map(operator.itemgetter(c), rows))
            markets, regions = _places(len(block), col(c_market), col(c_region), col(c_city), defaults)
            rep = col(c_rep)
            cols.add(lines, col(c_com) or [], col(c_unit), col(c_price) or [], col(c_date) or [], markets, regions,
                     [t.strip() for t in rep] if rep is not None else [defaults.reporter] * len(block))
            if progress is not None:
                progress(out.read)
        return out
    # PIHPS's table: one row per commodity, one column per date (dd/mm/yyyy).
    dates = [(k, parse_date_id(h)) for k, h in enumerate(header)]
    date_cols = [(k, h) for (k, d), h in zip(dates, header, strict=True) if d is not None]
    if not date_cols:
        raise BadInputFile(f"{where}: expected a 'Timestamp' or 'Tanggal' column or date columns "
                           f"(dd/mm/yyyy), found {header[:12]}")
    out = ImportRows(layout="pihps")
    cols = _Columns(out, defaults, latest_day)
    c_no = _find(header, "no")
    for line, r in enumerate(rows, start=2):
        if c_com >= len(r) or not r[c_com].strip():
            continue
        if c_no is not None and c_no < len(r) and _HEADING.fullmatch(r[c_no].strip()):
            continue
        if len(r) > len(header):
            out.read += 1
            out.refused.append(Refused(line=line, reason=_too_wide(len(r), len(header))))
            continue
        cells = [(text, r[k].strip()) for k, text in date_cols if k < len(r) and r[k].strip() not in ("", "-")]
        out.read += len(date_cols) - len(cells)
        out.no_price += len(date_cols) - len(cells)
        if not cells:
            continue
        mk, rg, ct = ([r[c]] if c is not None and c < len(r) else None for c in (c_market, c_region, c_city))
        markets, regions = _places(1, mk, rg, ct, defaults)
        n = len(cells)
        before = len(out.refused)
        cols.add([line] * n, [r[c_com]] * n, None, [p for _, p in cells], [d for d, _ in cells], markets * n,
                 regions * n, [r[c_rep].strip() if c_rep is not None else defaults.reporter] * n)
        if len(out.refused) > before + 1:
            listed = _once_a_row(out.refused[before:])
            out.folded += len(out.refused) - before - len(listed)
            out.refused[before:] = listed
    if progress is not None:
        progress(out.read)
    return out


def _once_a_row(refused: list[Refused]) -> list[Refused]:
    """A table row's refusals, each reason once with how many of its dates it holds for: an item the catalogue
    lacks is refused on every date of a year's table, and listed 365 times it would hide every other row's reason
    from the report's first hundred."""
    dates: dict[tuple[str, str], int] = {}
    for r in refused:
        dates[(r.reason, r.code)] = dates.get((r.reason, r.code), 0) + 1
    return [Refused(line=refused[0].line, reason=reason + (f" ({count(n, 'date')})" if n > 1 else ""), code=code)
            for (reason, code), n in dates.items()]


def _too_wide(cells: int, width: int) -> str:
    """Why a row with more cells than the header is refused rather than read: its cells no longer line up
    with the columns, and the commonest cause reads a price as a fraction of itself."""
    return (f"row has {cells} cells, the header {width}: a price with an unquoted thousands separator "
            f"(45,000 in a comma-separated file) splits in two and would be read as 45; quote the prices or "
            f"export with ';' between cells")


def _places(n: int, mk: list[str] | None, rg: list[str] | None, ct: list[str] | None,
            defaults: ImportDefaults) -> tuple[list[str], list[str]]:
    """Each row's market and region: the market column, else the city as a panel place, else the default;
    the region column, else the catalogue market's province, else the default."""
    none = [""] * n
    cache: dict[tuple[str, str, str], tuple[str, str]] = {}
    markets, regions = [], []
    for key in zip(mk or none, ct or none, rg or none, strict=True):
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = _place(*key, defaults)
        markets.append(hit[0])
        regions.append(hit[1])
    return markets, regions


def _place(market: str, city: str, region: str, defaults: ImportDefaults) -> tuple[str, str]:
    region = region.strip() or defaults.region
    if market.strip():
        # A sheet names its market as people do ("Pasar Senen", "PASAR INDUK KRAMAT JATI"): the catalogue's
        # market of that id or name, else the name as an id, so two spellings of one market are one series.
        market = _MARKET_NAMES.get(slug(market), slug(market))
    elif city.strip():
        market = "panel-" + slug(city)
    elif defaults.market:
        market = _MARKET_NAMES.get(slug(defaults.market), slug(defaults.market))
    else:
        market = ""
    m = MARKETS_BY_ID.get(market)
    if m is not None and not region:
        region = m.admin1
    return market, region


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
