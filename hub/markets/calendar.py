"""Indonesian seasonal and holiday dates that move food prices: Ramadan, Lebaran, Idul Adha, Nataru."""

from __future__ import annotations

import datetime as dt

# 1 Ramadan and 1 Syawal (Idul Fitri) as the government set or expects them. From 2026 on the dates are
# the calendar's expectation; the Ministry of Religious Affairs fixes each one after the sighting
# (sidang isbat), so update this table when it does.
RAMADAN: dict[int, tuple[str, str]] = {
    2019: ("2019-05-06", "2019-06-05"),
    2020: ("2020-04-24", "2020-05-24"),
    2021: ("2021-04-13", "2021-05-13"),
    2022: ("2022-04-03", "2022-05-02"),
    2023: ("2023-03-23", "2023-04-22"),
    2024: ("2024-03-12", "2024-04-10"),
    2025: ("2025-03-01", "2025-03-31"),
    2026: ("2026-02-19", "2026-03-21"),
    2027: ("2027-02-08", "2027-03-10"),
    2028: ("2028-01-28", "2028-02-27"),
    2029: ("2029-01-16", "2029-02-15"),
    2030: ("2030-01-06", "2030-02-05"),
}
IDUL_ADHA: dict[int, str] = {
    2019: "2019-08-11", 2020: "2020-07-31", 2021: "2021-07-20", 2022: "2022-07-10", 2023: "2023-06-29",
    2024: "2024-06-17", 2025: "2025-06-06", 2026: "2026-05-27", 2027: "2027-05-16", 2028: "2028-05-05",
    2029: "2029-04-24", 2030: "2030-04-13",
}
EPOCH = dt.date(1970, 1, 1)

# Demand for Lebaran starts about a week before Idul Fitri (mudik, hampers) and eases a week after.
LEBARAN_BEFORE, LEBARAN_AFTER = 7, 7
ADHA_BEFORE, ADHA_AFTER = 5, 2


def day_number(date: str | dt.date) -> int:
    if isinstance(date, str):
        date = dt.date.fromisoformat(date)
    return (date - EPOCH).days


def date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def _build() -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {"ramadan": [], "lebaran": [], "idul_adha": [], "nataru": []}
    for start, fitri in RAMADAN.values():
        s, f = day_number(start), day_number(fitri)
        ranges["ramadan"].append((s, f - 1))
        ranges["lebaran"].append((f - LEBARAN_BEFORE, f + LEBARAN_AFTER))
    for adha in IDUL_ADHA.values():
        a = day_number(adha)
        ranges["idul_adha"].append((a - ADHA_BEFORE, a + ADHA_AFTER))
    for year in range(2018, 2031):
        ranges["nataru"].append((day_number(f"{year}-12-18"), day_number(f"{year + 1}-01-03")))
    return ranges


HOLIDAYS: dict[str, list[tuple[int, int]]] = _build()
COVERED = (day_number("2019-01-01"), day_number("2030-12-31"))


def holidays_on(day: int) -> tuple[str, ...]:
    """Names of the holiday periods that include `day` (a local day number)."""
    return tuple(name for name, spans in HOLIDAYS.items() if any(a <= day <= b for a, b in spans))


def in_holiday(name: str, day: int) -> bool:
    return any(a <= day <= b for a, b in HOLIDAYS[name])


def holiday_share(name: str, first_day: int, last_day: int) -> float:
    """Share of the days first_day..last_day (inclusive) that fall in holiday period `name`."""
    total = last_day - first_day + 1
    if total <= 0:
        return 0.0
    covered = 0
    for a, b in HOLIDAYS[name]:
        lo, hi = max(a, first_day), min(b, last_day)
        if hi >= lo:
            covered += hi - lo + 1
    return covered / total
