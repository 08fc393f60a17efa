"""Macro input series (inflation, fuel price, exchange rate) loaded from CSV files and read per day."""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .calendar import day_number
from .errors import BadInputFile


@dataclass(frozen=True, slots=True, kw_only=True)
class MacroSeries:
    """A step series: each value holds from its day until the next one."""

    name: str
    unit: str
    days: tuple[int, ...]
    values: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.days) != len(self.values) or not self.days:
            raise BadInputFile(f"macro series {self.name}: expected as many days as values and at least one, "
                               f"got {len(self.days)} days and {len(self.values)} values")
        if list(self.days) != sorted(self.days):
            raise BadInputFile(f"macro series {self.name}: expected dates in order")

    def at(self, day: int) -> float:
        """The value in force on `day`; before the first point, NaN (unknown, not zero)."""
        k = bisect_right(self.days, day) - 1
        return self.values[k] if k >= 0 else float("nan")

    def daily(self, first_day: int, n: int) -> np.ndarray:
        return np.array([self.at(first_day + i) for i in range(n)])


def _parse_date(text: str, where: str) -> int:
    text = text.strip()
    try:
        return day_number(text + "-01" if len(text) == 7 else text)
    except ValueError:
        raise BadInputFile(f"{where}: expected a date as YYYY-MM or YYYY-MM-DD, got {text!r}") from None


def read_macro_csv(text: str, *, column: str, name: str, unit: str, where: str = "macro csv") -> MacroSeries:
    """Read one value column of a CSV whose first column is a date (YYYY-MM or YYYY-MM-DD). Lines that start
    with '#' are comments (the shipped files say where their numbers come from)."""
    lines = [ln for ln in io.StringIO(text) if not ln.lstrip().startswith("#")]
    comments = [ln.lstrip("# ").strip() for ln in io.StringIO(text) if ln.lstrip().startswith("#")]
    rows = list(csv.DictReader(lines))
    if not rows:
        raise BadInputFile(f"{where}: expected a header and rows, found none")
    if column not in rows[0]:
        raise BadInputFile(f"{where}: expected a column {column!r}, found {list(rows[0])}")
    date_col = next(iter(rows[0]))
    days, values = [], []
    for k, row in enumerate(rows, start=2):
        days.append(_parse_date(row[date_col], f"{where} line {k}"))
        try:
            values.append(float(row[column]))
        except (TypeError, ValueError):
            raise BadInputFile(f"{where} line {k}: expected a number in {column!r}, got {row[column]!r}") from None
    return MacroSeries(name=name, unit=unit, days=tuple(days), values=tuple(values), source=" ".join(comments))


@dataclass(frozen=True, slots=True, kw_only=True)
class MacroInputs:
    inflation: MacroSeries | None = None  # headline CPI, percent year on year
    fuel: MacroSeries | None = None  # rupiah per litre
    fx: MacroSeries | None = None  # rupiah per US dollar

    @classmethod
    def load(cls, inflation: str | Path | None = None, fuel: str | Path | None = None,
             fx: str | Path | None = None) -> MacroInputs:
        """Load the three series from files; any path left out comes from the example files shipped in
        hub/markets/data."""
        def text(path: str | Path | None, default: str) -> tuple[str, str]:
            if path is None:
                return resources.files("hub.markets").joinpath(f"data/{default}").read_text("utf-8"), default
            return Path(path).read_text("utf-8"), str(path)

        t, w = text(inflation, "macro_inflation.csv")
        infl = read_macro_csv(t, column="inflation_yoy_pct", name="inflation", unit="% yoy", where=w)
        t, w = text(fuel, "macro_fuel.csv")
        fu = read_macro_csv(t, column="pertamax_idr", name="fuel", unit="IDR/litre", where=w)
        t, w = text(fx, "macro_fx.csv")
        ex = read_macro_csv(t, column="usd_idr", name="exchange rate", unit="IDR/USD", where=w)
        return cls(inflation=infl, fuel=fu, fx=ex)
