"""The MBG plan: kitchens, schools, their schedules and the rules the analytics apply, loadable from TOML."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from coap_server.settings import settings_from_toml, unknown_key
from ledger.failures import MissingFile

from .errors import PlanError

# Indonesia keeps no daylight saving time, so a zone is a fixed offset.
TIMEZONES: dict[str, int] = {"WIB": 7 * 3600, "WITA": 8 * 3600, "WIT": 9 * 3600}
WIB = TIMEZONES["WIB"]
DAY = 86_400
HOUR = 3_600

# Where each food-safety default comes from; the docs and every violation repeat it.
SOURCE_COOK_TO_SERVE = (
    "SPPG kitchen SOP: meals are served within 4 hours of cook-end (the limit kitchens set themselves; "
    "configurable per plan)"
)
SOURCE_DANGER_ZONE = (
    "WHO, Five Keys to Safer Food Manual (2006), key 4 'Keep food at safe temperatures': do not leave "
    "cooked food at room temperature for more than 2 hours; microorganisms multiply quickly between "
    "5 °C and 60 °C"
)
SOURCE_HOT_HOLDING = (
    "WHO, Five Keys to Safer Food Manual (2006), key 4: keep cooked food piping hot (more than 60 °C) "
    "prior to serving"
)


def _require(cond: bool, message: str, *, hint: str | None = None) -> None:
    if not cond:
        raise PlanError(message, hint=hint)


def _check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise PlanError(f"{name}: expected at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise PlanError(f"{name}: expected at most {maximum}, got {value}")


def parse_time_of_day(text: str | int, *, name: str = "time of day") -> int:
    """'09:00' or '09:00:30' (or seconds after midnight) -> seconds after local midnight."""
    if isinstance(text, int) and not isinstance(text, bool):
        _check_int(name, text, minimum=0, maximum=DAY - 1)
        return text
    if not isinstance(text, str):
        raise PlanError(f"{name}: expected 'HH:MM', got {type(text).__name__} {text!r}")
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise PlanError(f"{name}: expected 'HH:MM' or 'HH:MM:SS', got {text!r}")
    h, m = int(parts[0]), int(parts[1])
    s = int(parts[2]) if len(parts) == 3 else 0
    if h > 23 or m > 59 or s > 59:
        raise PlanError(f"{name}: expected a time between 00:00 and 23:59:59, got {text!r}")
    return h * HOUR + m * 60 + s


def parse_timezone(text: str | int, *, name: str = "timezone") -> int:
    """'WIB', 'WITA', 'WIT' or '+07:00' (or an offset in seconds) -> offset from UTC in seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        _check_int(name, text, minimum=-14 * HOUR, maximum=14 * HOUR)
        return text
    if not isinstance(text, str):
        raise PlanError(f"{name}: expected 'WIB', 'WITA', 'WIT' or '+HH:MM', got {text!r}")
    if text.upper() in TIMEZONES:
        return TIMEZONES[text.upper()]
    if len(text) == 6 and text[0] in "+-" and text[3] == ":" and text[1:3].isdigit() and text[4:].isdigit():
        offset = int(text[1:3]) * HOUR + int(text[4:]) * 60
        if offset > 14 * HOUR:
            raise PlanError(f"{name}: offset beyond ±14:00: {text!r}")
        return offset if text[0] == "+" else -offset
    raise PlanError(f"{name}: expected 'WIB', 'WITA', 'WIT' or '+HH:MM', got {text!r}")


def format_offset(offset_s: int) -> str:
    """Offset in seconds -> '+07:00' (EPCIS eventTimeZoneOffset form)."""
    sign = "-" if offset_s < 0 else "+"
    minutes = abs(offset_s) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def local_date(time_s: int, offset_s: int) -> str:
    """ISO date of a Unix time in a fixed-offset zone."""
    return _iso_day((time_s + offset_s) // DAY)


@lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    # Every scan's time is put on a day, and a window holds few: each day's text is made once.
    return dt.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@lru_cache(maxsize=4096)
def next_date(date: str) -> str:
    """The ISO date of the day after `date`."""
    return (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()


@lru_cache(maxsize=4096)
def previous_date(date: str) -> str:
    """The ISO date of the day before `date`."""
    return (dt.date.fromisoformat(date) - dt.timedelta(days=1)).isoformat()


def local_midnight(date: str, offset_s: int) -> int:
    """Unix time of 00:00 local on an ISO date."""
    try:
        day = dt.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise PlanError(f"date: expected an ISO date 'YYYY-MM-DD', got {date!r}") from None
    return (day.toordinal() - dt.date(1970, 1, 1).toordinal()) * DAY - offset_s


def format_local(time_s: int, offset_s: int) -> str:
    """A Unix time as the plan writes a local date-time in a zone: '2026-03-02T10:00' (':SS' when not on a minute)."""
    s = (time_s + offset_s) % DAY
    text = f"{_iso_day((time_s + offset_s) // DAY)}T{s // HOUR:02d}:{s % HOUR // 60:02d}"
    return f"{text}:{s % 60:02d}" if s % 60 else text


def parse_local_time(value: Any, offset_s: int, *, name: str, end_of_day: bool = False) -> int:
    """A local date 'YYYY-MM-DD' or date-time 'YYYY-MM-DDTHH:MM[:SS]' in a zone (or TOML's own local date or
    date-time) -> Unix time. A date alone is its 00:00, or with `end_of_day` the 00:00 after it: a roster entry
    valid `until` a date is valid through that day."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # the zone is the kitchen's: a second zone written here would be a mistake
            raise PlanError(f"{name}: expected a local date-time in the kitchen's zone, got one with an offset "
                            f"{value.isoformat()!r}", hint="drop the offset: times are in the kitchen's timezone")
        value = value.isoformat(timespec="seconds")
    elif isinstance(value, dt.date):
        value = value.isoformat()
    if not isinstance(value, str):
        raise PlanError(f"{name}: expected a local date 'YYYY-MM-DD' or date-time 'YYYY-MM-DDTHH:MM', "
                        f"got {type(value).__name__} {value!r}")
    day, sep, time_of_day = value.partition("T")
    # fromisoformat takes forms the plan never writes ('20260302'): the date's own shape is checked first.
    if len(day) != 10 or day[4] != "-" or day[7] != "-" or (sep and not time_of_day):
        raise PlanError(f"{name}: expected a local date 'YYYY-MM-DD' or date-time 'YYYY-MM-DDTHH:MM', got {value!r}")
    try:
        midnight = local_midnight(day, offset_s)
    except PlanError:
        raise PlanError(f"{name}: expected a local date 'YYYY-MM-DD' or date-time 'YYYY-MM-DDTHH:MM', "
                        f"got {value!r}") from None
    if sep:
        return midnight + parse_time_of_day(time_of_day, name=name)
    return midnight + DAY if end_of_day else midnight


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffCard:
    """A roster entry valid for a while: a staff card, and the times (Unix seconds) it may tap from (included) and
    until (not included); None is no bound. A card taken off the roster at 10:00 stays right for its morning taps."""

    card: str
    valid_from: int | None = None
    valid_until: int | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.card, str) and self.card != "",
                 f"staff card: expected a non-empty card uid, got {self.card!r}")
        for name, value in (("valid_from", self.valid_from), ("valid_until", self.valid_until)):
            if value is not None:
                _check_int(f"staff card {self.card} {name}", value)
        _require(self.valid_from is None or self.valid_until is None or self.valid_from < self.valid_until,
                 f"staff card {self.card}: expected until after from, got until {self.valid_until} <= from "
                 f"{self.valid_from}")

    def valid_at(self, time_s: int) -> bool:
        return ((self.valid_from is None or self.valid_from <= time_s)
                and (self.valid_until is None or time_s < self.valid_until))


def roster_card(entry: str | StaffCard) -> StaffCard:
    """A roster entry as a StaffCard: a card uid alone is valid at any time."""
    return entry if isinstance(entry, StaffCard) else StaffCard(card=entry)


@dataclass(frozen=True, slots=True, kw_only=True)
class Kitchen:
    """A central kitchen (SPPG)."""

    id: str
    name: str = ""
    tz_offset_s: int = WIB
    # Empty containers are due back at the kitchen by this time of day; later ones count as unreturned.
    return_by_s: int = 15 * HOUR
    # The kitchen's roster: the staff cards (NFC uids) that may tap for its deliveries, at the kitchen and at its
    # schools' gates; a StaffCard may do so for a while only. A tap by any other card, or by a card outside its
    # while, is a finding; None: no roster, no card is judged.
    staff: tuple[str | StaffCard, ...] | None = None
    # Its deliveries carry temperature readings (a probe at the kitchen or at its schools' gates): a container that
    # left for a school with none is a finding. False for a kitchen with no probe, whose days would say it daily.
    temperature_required: bool = True

    def __post_init__(self) -> None:
        _require(isinstance(self.id, str) and self.id != "", f"kitchen id: expected a non-empty text, got {self.id!r}")
        _check_int(f"kitchen {self.id} tz_offset_s", self.tz_offset_s, minimum=-14 * HOUR, maximum=14 * HOUR)
        _check_int(f"kitchen {self.id} return_by_s", self.return_by_s, minimum=0, maximum=2 * DAY)
        _require(type(self.temperature_required) is bool,
                 f"kitchen {self.id} temperature_required: expected true or false, got {self.temperature_required!r}")
        if self.staff is not None:
            _require(isinstance(self.staff, tuple)
                     and all(isinstance(c, StaffCard) or (isinstance(c, str) and c != "") for c in self.staff),
                     f"kitchen {self.id} staff: expected a list of staff card uids, got {self.staff!r}")
            # A card may be listed again for another while (a driver back after months at another kitchen), never
            # for a while that meets one it has: a tap is judged by the one window it falls in.
            windows: dict[str, list[StaffCard]] = {}
            for entry in map(roster_card, self.staff):
                windows.setdefault(entry.card.lower(), []).append(entry)
            for card, entries in windows.items():
                if len(entries) < 2:
                    continue
                ordered = sorted(entries, key=lambda e: -(2**63) if e.valid_from is None else e.valid_from)
                for a, b in pairwise(ordered):
                    _require(a.valid_until is not None and b.valid_from is not None and a.valid_until <= b.valid_from,
                             f"kitchen {self.id} staff: card {card!r} is listed twice for times that meet",
                             hint="list a card once, or again only for a while after its entry's `until`")


@dataclass(frozen=True, slots=True, kw_only=True)
class School:
    """A school the kitchen feeds: how many portions a day and by when they must arrive."""

    id: str
    name: str = ""
    kitchen: str
    portions: int
    deadline_s: int = 9 * HOUR
    tz_offset_s: int = WIB
    # The school's own days off (an exam week, a local holiday): no delivery is expected, none is missing.
    closed_dates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(isinstance(self.id, str) and self.id != "", f"school id: expected a non-empty text, got {self.id!r}")
        _require(isinstance(self.kitchen, str) and self.kitchen != "",
                 f"school {self.id} kitchen: expected a kitchen id, got {self.kitchen!r}")
        _check_int(f"school {self.id} portions", self.portions, minimum=0)
        _check_int(f"school {self.id} deadline_s", self.deadline_s, minimum=0, maximum=DAY - 1)
        _check_int(f"school {self.id} tz_offset_s", self.tz_offset_s, minimum=-14 * HOUR, maximum=14 * HOUR)
        _require(isinstance(self.closed_dates, tuple), f"school {self.id} closed_dates: expected a list of dates")
        for day in self.closed_dates:
            local_midnight(day, 0)

    def deadline_at(self, date: str) -> int:
        return local_midnight(date, self.tz_offset_s) + self.deadline_s


@dataclass(frozen=True, slots=True, kw_only=True)
class FoodSafetyRules:
    """Limits of the food-safety timers; every limit is configurable, every default has a source."""

    cook_to_serve_max_s: int = 4 * HOUR
    danger_low_cc: int = 500
    danger_high_cc: int = 6000
    danger_max_s: int = 2 * HOUR
    hot_hold_min_cc: int = 6000
    source_cook_to_serve: str = SOURCE_COOK_TO_SERVE
    source_danger_zone: str = SOURCE_DANGER_ZONE
    source_hot_holding: str = SOURCE_HOT_HOLDING

    def __post_init__(self) -> None:
        _check_int("rules.cook_to_serve_max_s", self.cook_to_serve_max_s, minimum=1)
        _check_int("rules.danger_max_s", self.danger_max_s, minimum=1)
        _check_int("rules.danger_low_cc", self.danger_low_cc)
        _check_int("rules.danger_high_cc", self.danger_high_cc)
        _check_int("rules.hot_hold_min_cc", self.hot_hold_min_cc)
        _require(self.danger_low_cc < self.danger_high_cc,
                 f"rules: expected danger_low_cc < danger_high_cc, got {self.danger_low_cc} >= {self.danger_high_cc}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockPolicy:
    """When to believe a device's clock.

    A record whose device time is within `max_skew_s` of its arrival at the hub is timed by the device.
    A record whose device time is behind its arrival by more than that but less than `max_sync_delay_s`
    is taken as synced late (an uplink outage): device time is still used and the lag is reported.
    A device time ahead of arrival by more than `max_skew_s` (impossible for a right clock) or behind by
    more than `max_sync_delay_s` is a wrong clock: the arrival time is used instead and the record flagged.
    """

    max_skew_s: int = 15 * 60
    max_sync_delay_s: int = 30 * DAY

    def __post_init__(self) -> None:
        _check_int("clock.max_skew_s", self.max_skew_s, minimum=0)
        _check_int("clock.max_sync_delay_s", self.max_sync_delay_s, minimum=self.max_skew_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Everything the MBG analytics need to know beyond the records themselves."""

    kitchens: tuple[Kitchen, ...]
    schools: tuple[School, ...]
    portions_per_container: int = 10
    # Monday = 0. MBG serves on school days; a school with no delivery on other days is not "missing".
    service_weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    closed_dates: tuple[str, ...] = ()
    tz_offset_s: int = WIB
    # Two taps of the same thing closer than this are one tap read twice.
    duplicate_window_s: int = 10 * 60
    # A container step earlier than the step before it by more than this is out of order.
    order_tolerance_s: int = 60
    # A school still tapping containers in is not short yet: a delivery is short only this long after its last tap.
    settle_s: int = 10 * 60
    rules: FoodSafetyRules = field(default_factory=FoodSafetyRules)
    clock: ClockPolicy = field(default_factory=ClockPolicy)
    _schools: dict[str, School] = field(init=False, repr=False, compare=False)
    _kitchens: dict[str, Kitchen] = field(init=False, repr=False, compare=False)
    # card (lower case) -> (kitchen id, its entry) of each kitchen listing it, in the plan's order
    _rosters: dict[str, tuple[tuple[str, StaffCard], ...]] = field(init=False, repr=False, compare=False)
    has_rosters: bool = field(init=False, repr=False, compare=False)  # a kitchen keeps a roster: cards are judged

    def __post_init__(self) -> None:
        _require(isinstance(self.kitchens, tuple) and isinstance(self.schools, tuple),
                 "plan: expected kitchens and schools as tuples")
        kitchens: dict[str, Kitchen] = {}
        for k in self.kitchens:
            _require(isinstance(k, Kitchen), f"plan kitchens: expected Kitchen, got {type(k).__name__}")
            _require(k.id not in kitchens, f"plan: kitchen id {k.id!r} appears twice")
            kitchens[k.id] = k
        schools: dict[str, School] = {}
        for s in self.schools:
            _require(isinstance(s, School), f"plan schools: expected School, got {type(s).__name__}")
            _require(s.id not in schools, f"plan: school id {s.id!r} appears twice")
            _require(s.id not in kitchens, f"plan: id {s.id!r} names both a school and a kitchen")
            _require(s.kitchen in kitchens, f"plan: school {s.id!r} names kitchen {s.kitchen!r}, which the plan lacks",
                     hint="add a [[kitchens]] entry with that id")
            schools[s.id] = s
        _check_int("plan.portions_per_container", self.portions_per_container, minimum=1)
        _check_int("plan.duplicate_window_s", self.duplicate_window_s, minimum=0)
        _check_int("plan.order_tolerance_s", self.order_tolerance_s, minimum=0)
        _check_int("plan.settle_s", self.settle_s, minimum=0)
        _check_int("plan.tz_offset_s", self.tz_offset_s, minimum=-14 * HOUR, maximum=14 * HOUR)
        for d in self.service_weekdays:
            _check_int("plan.service_weekdays item", d, minimum=0, maximum=6)
        for day in self.closed_dates:
            local_midnight(day, 0)
        rosters: dict[str, tuple[tuple[str, StaffCard], ...]] = {}
        for k in self.kitchens:
            for entry in map(roster_card, k.staff or ()):
                card = entry.card.lower()
                rosters[card] = (*rosters.get(card, ()), (k.id, entry))
        object.__setattr__(self, "_schools", schools)
        object.__setattr__(self, "_kitchens", kitchens)
        object.__setattr__(self, "_rosters", rosters)
        object.__setattr__(self, "has_rosters", any(k.staff is not None for k in self.kitchens))

    def school(self, school_id: str) -> School | None:
        return self._schools.get(school_id)

    def kitchen(self, kitchen_id: str) -> Kitchen | None:
        return self._kitchens.get(kitchen_id)

    def kitchens_listing(self, card: str, at: int | None = None) -> tuple[str, ...]:
        """The kitchens whose roster lists a staff card (uids compared without case), in the plan's order; with `at`,
        only those whose entry is valid at that Unix time."""
        return tuple(k for k, entry in self._rosters.get(card.lower(), ()) if at is None or entry.valid_at(at))

    def roster_entries(self, kitchen_id: str, card: str) -> tuple[StaffCard, ...]:
        """A kitchen's roster entries for a staff card (uids compared without case), valid or not, each for a
        while of its own; none if unlisted."""
        return tuple(entry for k, entry in self._rosters.get(card.lower(), ()) if k == kitchen_id)

    def roster_windowed(self, card: str) -> bool:
        """Whether any roster entry of a card is valid for a while only: its taps are judged at their times."""
        return any(e.valid_from is not None or e.valid_until is not None for _, e in self._rosters.get(card.lower(), ()))

    def kitchen_of_site(self, site: str) -> Kitchen | None:
        """The kitchen a site's taps are for: the kitchen itself, or a school's kitchen."""
        school = self._schools.get(site)
        return self._kitchens.get(school.kitchen if school is not None else site)

    def schools_of(self, kitchen_id: str) -> tuple[School, ...]:
        return tuple(s for s in self.schools if s.kitchen == kitchen_id)

    def site_offset(self, site: str) -> int:
        """Time zone of a school or kitchen id; the plan's default for sites it does not list."""
        s = self._schools.get(site)
        if s is not None:
            return s.tz_offset_s
        k = self._kitchens.get(site)
        return k.tz_offset_s if k is not None else self.tz_offset_s

    def is_service_day(self, date: str, school: School | None = None) -> bool:
        """Whether meals are served on `date`: everywhere, or at `school` (which may have days off of its own)."""
        day = dt.date.fromisoformat(date)
        return (day.weekday() in self.service_weekdays and date not in self.closed_dates
                and (school is None or date not in school.closed_dates))


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise PlanError(f"[{name}]: expected a table, got {type(value).__name__}")
    return value


def _known(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise unknown_key(unknown[0], allowed, where if where == "plan" else f"{where}.{unknown[0]}", PlanError,
                          "the plan" if where == "plan" else where)


def _roster_entry(where: str, entry: Any, tz_offset_s: int) -> str | StaffCard:
    """A roster entry as the plan writes it: a card uid, or a table {card, from, until} with times local to the
    kitchen (a date alone: `from` its 00:00, `until` through its end)."""
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict):
        raise PlanError(f"{where}: expected a staff card uid or a table {{card, from, until}}, "
                        f"got {type(entry).__name__} {entry!r}")
    _known(where, entry, {"card", "from", "until"})
    card = entry.get("card")
    if not isinstance(card, str) or card == "":
        raise PlanError(f"{where}: expected 'card' as a staff card uid, got {card!r}"
                        if "card" in entry else f"{where}: missing required key 'card' (the staff card uid)")
    start = entry.get("from")
    end = entry.get("until")
    valid_from = None if start is None else parse_local_time(start, tz_offset_s, name=f"{where}.from")
    valid_until = None if end is None else parse_local_time(end, tz_offset_s, name=f"{where}.until", end_of_day=True)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise PlanError(f"{where}: expected until after from, got from {start!s} and until {end!s}",
                        hint="a card on the roster for a while is written {card, from, until} with from first")
    return StaffCard(card=card, valid_from=valid_from, valid_until=valid_until)


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Build a Plan from the parsed TOML layout documented in `load_plan`."""
    _known("plan", data, {"defaults", "kitchens", "schools", "rules", "clock"})
    defaults = _table(data, "defaults")
    _known("[defaults]", defaults, {"timezone", "portions_per_container", "deadline", "return_by",
                                    "service_weekdays", "closed_dates", "duplicate_window_s",
                                    "order_tolerance_s", "settle_s", "temperature_required"})
    tz = parse_timezone(defaults.get("timezone", "WIB"), name="defaults.timezone")
    deadline = parse_time_of_day(defaults.get("deadline", "09:00"), name="defaults.deadline")
    return_by = parse_time_of_day(defaults.get("return_by", "15:00"), name="defaults.return_by")
    temperature_required = defaults.get("temperature_required", True)
    if type(temperature_required) is not bool:
        raise PlanError(f"defaults.temperature_required: expected true or false, got {temperature_required!r}")
    kitchens = []
    for i, k in enumerate(data.get("kitchens", []), 1):  # counted from 1, as the configs count [[webhooks]]
        where = f"kitchens[{i}]"
        if not isinstance(k, dict):
            raise PlanError(f"{where}: expected a table, got {type(k).__name__}")
        _known(where, k, {"id", "name", "timezone", "return_by", "staff", "temperature_required"})
        staff = k.get("staff")
        if staff is not None and not isinstance(staff, list):
            raise PlanError(f"{where}.staff: expected a list of staff card uids, got {staff!r}")
        k_tz = parse_timezone(k.get("timezone", tz), name=f"{where}.timezone")
        kitchens.append(Kitchen(
            id=k.get("id", ""), name=k.get("name", ""), tz_offset_s=k_tz,
            return_by_s=parse_time_of_day(k.get("return_by", return_by), name=f"{where}.return_by"),
            staff=tuple(_roster_entry(f"{where}.staff[{j}]", e, k_tz) for j, e in enumerate(staff, 1))
            if staff is not None else None,
            temperature_required=k.get("temperature_required", temperature_required),
        ))
    schools = []
    for i, s in enumerate(data.get("schools", []), 1):
        where = f"schools[{i}]"
        if not isinstance(s, dict):
            raise PlanError(f"{where}: expected a table, got {type(s).__name__}")
        _known(where, s, {"id", "name", "kitchen", "portions", "deadline", "timezone", "closed_dates"})
        closed = s.get("closed_dates", [])
        if not isinstance(closed, list):
            raise PlanError(f"{where}.closed_dates: expected a list of dates 'YYYY-MM-DD', got {closed!r}")
        if "portions" not in s:
            raise PlanError(f"{where}: missing required key 'portions' (expected portions per day)")
        schools.append(School(
            id=s.get("id", ""), name=s.get("name", ""), kitchen=s.get("kitchen", ""), portions=s["portions"],
            deadline_s=parse_time_of_day(s.get("deadline", deadline), name=f"{where}.deadline"),
            tz_offset_s=parse_timezone(s.get("timezone", tz), name=f"{where}.timezone"),
            closed_dates=tuple(str(d) for d in closed),
        ))
    rules_t = _table(data, "rules")
    rule_keys = {"cook_to_serve_max_s", "danger_low_cc", "danger_high_cc", "danger_max_s", "hot_hold_min_cc",
                 "source_cook_to_serve", "source_danger_zone", "source_hot_holding"}
    _known("[rules]", rules_t, rule_keys)
    clock_t = _table(data, "clock")
    _known("[clock]", clock_t, {"max_skew_s", "max_sync_delay_s"})
    extra: dict[str, Any] = {}
    for key in ("portions_per_container", "duplicate_window_s", "order_tolerance_s", "settle_s"):
        if key in defaults:
            extra[key] = defaults[key]
    if "service_weekdays" in defaults:
        extra["service_weekdays"] = tuple(defaults["service_weekdays"])
    if "closed_dates" in defaults:
        extra["closed_dates"] = tuple(str(d) for d in defaults["closed_dates"])
    return Plan(kitchens=tuple(kitchens), schools=tuple(schools), tz_offset_s=tz,
                rules=FoodSafetyRules(**rules_t), clock=ClockPolicy(**clock_t), **extra)


_WHERE_SET = "set mbg_plan in the hub's config to the plan's path (deploy/mbg.toml is an example; hub/mbg/README.md)"


def load_plan(source: str | bytes | Path) -> Plan:
    """Load a plan from TOML text or a TOML file path.

    Layout::

        [defaults]
        timezone = "WIB"            # WIB, WITA, WIT or "+07:00"
        deadline = "09:00"          # default delivery deadline at schools, local time
        return_by = "15:00"         # empty containers due back at the kitchen
        portions_per_container = 10
        temperature_required = true # deliveries carry temperature readings; one without is a finding

        [[kitchens]]
        id = "SPPG-001"
        name = "SPPG Margamukti"
        staff = ["5a000001", "5a000002",  # optional roster: the cards that may tap for its deliveries
                 {card = "5a000009", until = "2026-03-02T10:00"},  # taken off it at 10:00 (local time)
                 {card = "5a000010", from = "2026-03-09"}]         # a new cook, on it from that day
        temperature_required = false       # this kitchen has no probe yet: its deliveries are not asked for one

        [[schools]]
        id = "SDN-001"
        name = "SDN 1 Margamukti"
        kitchen = "SPPG-001"
        portions = 300
        deadline = "08:30"
        closed_dates = ["2026-03-16"]   # the school's own days off; [defaults] closed_dates close every school

        [rules]                     # optional; see FoodSafetyRules
        cook_to_serve_max_s = 14400

        [clock]                     # optional; see ClockPolicy
        max_skew_s = 900
    """
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            shown = source if source.is_absolute() else f"{source} ({source.absolute()}: a relative path starts from " \
                "the directory the hub was started in)"
            raise MissingFile(f"plan file {shown} does not exist", where=str(source), hint=_WHERE_SET) from None
        except PermissionError:
            raise  # NO_PERMISSION, as for the config file
        except OSError as exc:
            raise PlanError(f"plan file {source}: cannot read ({exc.strerror})", where=str(source),
                            hint=_WHERE_SET) from None
        name = f"plan file {source}"
    else:
        data, name = (source if isinstance(source, bytes) else source.encode("utf-8")), "plan"
    try:
        return plan_from_dict(settings_from_toml(data, name, PlanError))
    except PlanError as exc:  # name the file: the hub's config names it, an operator keeps several
        if isinstance(source, Path) and not exc.message.startswith(name):
            raise PlanError(f"{name}: {exc.message}", where=exc.where, hint=exc.hint) from None
        raise
