"""Loading the MBG plan from TOML and refusing plans that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.mbg import PlanError, load_plan
from hub.mbg.plan import (
    StaffCard,
    format_local,
    format_offset,
    local_date,
    local_midnight,
    parse_time_of_day,
    parse_timezone,
)
from ledger.failures import MissingFile

PLAN = """
[defaults]
timezone = "WIB"
deadline = "09:00"
return_by = "15:30"

[[kitchens]]
id = "SPPG-001"
name = "SPPG Margamukti"

[[kitchens]]
id = "SPPG-002"
timezone = "WITA"

[[schools]]
id = "SDN-001"
name = "SDN 1 Margamukti"
kitchen = "SPPG-001"
portions = 300
deadline = "08:30"

[[schools]]
id = "SDN-002"
kitchen = "SPPG-002"
portions = 250

[rules]
cook_to_serve_max_s = 10800

[clock]
max_skew_s = 600
"""


def test_load_plan_reads_schools_kitchens_rules_and_clock(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    plan = load_plan(path)
    s1 = plan.school("SDN-001")
    assert s1 is not None and s1.portions == 300 and s1.deadline_s == 8 * 3600 + 30 * 60 and s1.tz_offset_s == 7 * 3600
    s2 = plan.school("SDN-002")
    assert s2 is not None and s2.deadline_s == 9 * 3600 and s2.tz_offset_s == 7 * 3600
    k2 = plan.kitchen("SPPG-002")
    assert k2 is not None and k2.tz_offset_s == 8 * 3600 and k2.return_by_s == 15 * 3600 + 30 * 60
    assert plan.rules.cook_to_serve_max_s == 10800 and plan.rules.danger_max_s == 2 * 3600
    assert plan.clock.max_skew_s == 600
    assert [s.id for s in plan.schools_of("SPPG-001")] == ["SDN-001"]
    assert load_plan(PLAN) == plan


def test_plan_refuses_a_school_of_an_unknown_kitchen() -> None:
    text = PLAN.replace('kitchen = "SPPG-002"', 'kitchen = "SPPG-999"')
    with pytest.raises(PlanError, match="SPPG-999") as exc:
        load_plan(text)
    assert exc.value.code == "MBG_PLAN" and exc.value.hint is not None


@pytest.mark.parametrize("bad, match", [
    ('deadline = "25:00"', "23:59"),
    ('deadline = "9am"', "HH:MM"),
    ('portions = -1', "at least 0"),
    ('timezone = "CET"', "WIB"),
    ('colour = "red"', "unknown setting 'colour'"),
])
def test_plan_errors_say_expected_and_found(bad: str, match: str) -> None:
    text = PLAN.replace('portions = 250', f'portions = 250\n{bad}' if not bad.startswith("portions") else bad)
    with pytest.raises(PlanError, match=match):
        load_plan(text)


def test_plan_refuses_bad_toml_and_duplicate_ids() -> None:
    with pytest.raises(PlanError, match="TOML"):
        load_plan("[[schools]\n")
    with pytest.raises(PlanError, match="twice"):
        load_plan(PLAN.replace('id = "SDN-002"', 'id = "SDN-001"'))


def test_a_plan_file_that_is_not_there_says_where_the_path_is_set(tmp_path: Path) -> None:
    # NO_SUCH_FILE (exit 84), as for a missing config: docs/ERRORS.md lists the plan there
    with pytest.raises(MissingFile, match="does not exist") as caught:
        load_plan(tmp_path / "nope.toml")
    assert caught.value.hint and "mbg_plan" in caught.value.hint
    assert caught.value.where == str(tmp_path / "nope.toml")


def test_a_relative_plan_path_that_is_not_there_says_where_it_was_looked_for(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingFile) as caught:
        load_plan(Path("mbg.toml"))
    assert str(tmp_path / "mbg.toml") in caught.value.message and "started in" in caught.value.message


def test_a_plan_file_is_read_as_the_configs_are(tmp_path: Path) -> None:
    """Notepad's byte order mark, bytes that are not UTF-8, a key set twice and a misspelt key: each named with
    the file, and the bytes a clear MBG_PLAN, not a UnicodeDecodeError that stopped the hub as INTERNAL."""
    path = tmp_path / "mbg.toml"
    path.write_bytes("\ufeff".encode() + PLAN.encode())
    assert load_plan(path).schools
    path.write_bytes(PLAN.replace("SDN 1", "SDN \u00e9").encode("latin-1"))
    with pytest.raises(PlanError, match="not UTF-8 text at line") as caught:
        load_plan(path)
    assert str(path) in caught.value.message and "UTF-8" in (caught.value.hint or "")
    path.write_text(PLAN.replace('portions = 250', 'portions = 250\nportions = 260'))
    with pytest.raises(PlanError, match=r"portions at line 26 is set twice in \[\[schools\]\] \(first at line 25\)"):
        load_plan(path)
    path.write_text(PLAN.replace('portions = 250', 'portion = 250'))
    # the second school, counted from 1 as the configs count their [[webhooks]] (it said schools[1])
    with pytest.raises(PlanError, match=r"unknown setting 'portion' in schools\[2\]") as caught:
        load_plan(path)
    assert (caught.value.hint or "").startswith("did you mean 'portions'?")


def test_time_helpers_round_trip() -> None:
    assert parse_time_of_day("07:05:09") == 7 * 3600 + 5 * 60 + 9
    assert parse_timezone("+08:00") == parse_timezone("WITA") == 8 * 3600
    assert parse_timezone("-03:30") == -(3 * 3600 + 30 * 60)
    assert format_offset(9 * 3600) == "+09:00" and format_offset(-3 * 3600 - 1800) == "-03:30"
    midnight = local_midnight("2026-01-12", 7 * 3600)
    assert local_date(midnight, 7 * 3600) == "2026-01-12"
    assert local_date(midnight - 1, 7 * 3600) == "2026-01-11"


def test_service_days() -> None:
    plan = load_plan(PLAN.replace("[defaults]", '[defaults]\nclosed_dates = ["2026-01-13"]'))
    assert plan.is_service_day("2026-01-12")
    assert not plan.is_service_day("2026-01-13")  # closed
    assert not plan.is_service_day("2026-01-18")  # a Sunday


def test_a_school_has_days_off_of_its_own() -> None:
    plan = load_plan(PLAN.replace('deadline = "08:30"', 'deadline = "08:30"\nclosed_dates = ["2026-01-12"]'))
    sdn1, sdn2 = plan.schools
    assert sdn1.closed_dates == ("2026-01-12",)
    assert plan.is_service_day("2026-01-12") and plan.is_service_day("2026-01-12", sdn2)
    assert not plan.is_service_day("2026-01-12", sdn1) and plan.is_service_day("2026-01-13", sdn1)
    with pytest.raises(PlanError, match="closed_dates"):
        load_plan(PLAN.replace('deadline = "08:30"', 'deadline = "08:30"\nclosed_dates = "2026-01-12"'))
    with pytest.raises(PlanError, match="YYYY-MM-DD"):
        load_plan(PLAN.replace('deadline = "08:30"', 'deadline = "08:30"\nclosed_dates = ["12/01/2026"]'))


def test_a_kitchen_may_keep_a_roster_of_staff_cards() -> None:
    plan = load_plan(PLAN.replace('name = "SPPG Margamukti"', 'name = "SPPG Margamukti"\nstaff = ["5a000001", "5A000002"]'))
    k1, k2 = plan.kitchens
    assert k1.staff == ("5a000001", "5A000002") and k2.staff is None and plan.has_rosters
    assert plan.kitchens_listing("5a000002") == ("SPPG-001",) and plan.kitchens_listing("5a000003") == ()
    kitchen = plan.kitchen_of_site("SDN-001")
    assert kitchen is not None and kitchen.id == "SPPG-001"
    assert not load_plan(PLAN).has_rosters
    for bad, match in (('staff = "5a000001"', "list of staff card uids"), ("staff = [1]", "staff card uid"),
                       ('staff = ["5a000001", "5A000001"]', "listed twice for times that meet")):
        with pytest.raises(PlanError, match=match):
            load_plan(PLAN.replace('name = "SPPG Margamukti"', f'name = "SPPG Margamukti"\n{bad}'))


def _roster(entries: str) -> str:
    return PLAN.replace('name = "SPPG Margamukti"', f'name = "SPPG Margamukti"\nstaff = [{entries}]')


def test_a_roster_entry_may_hold_a_card_for_a_while() -> None:
    # A card taken off the roster at 10:00 and a new one put on it from a day are entries with `until` and `from`,
    # local times in the kitchen's zone written as the plan writes its dates and times; a uid alone is valid always.
    plan = load_plan(_roster('"5a000001", {card = "5a000009", until = "2026-03-02T10:00"}, '
                             '{card = "5a000010", from = "2026-03-09"}, '
                             '{card = "5a000011", from = "2026-03-02T06:30:15", until = "2026-03-06"}, '
                             '{card = "5a000012"}'))
    wib = 7 * 3600
    day1, day5 = local_midnight("2026-03-02", wib), local_midnight("2026-03-06", wib)
    k1 = plan.kitchens[0]
    assert k1.staff == ("5a000001", StaffCard(card="5a000009", valid_until=day1 + 10 * 3600),
                        StaffCard(card="5a000010", valid_from=local_midnight("2026-03-09", wib)),
                        # A date alone: `from` is its 00:00, `until` takes in the whole day.
                        StaffCard(card="5a000011", valid_from=day1 + 6 * 3600 + 30 * 60 + 15, valid_until=day5 + 86_400),
                        StaffCard(card="5a000012"))
    assert plan.kitchens_listing("5A000009") == ("SPPG-001",)  # whether it is valid or not
    assert plan.kitchens_listing("5a000009", day1 + 10 * 3600 - 1) == ("SPPG-001",)
    assert plan.kitchens_listing("5a000009", day1 + 10 * 3600) == ()  # `until` is not included
    assert plan.kitchens_listing("5a000001", day1) == ("SPPG-001",)
    assert plan.roster_entries("SPPG-001", "5A000009") == (StaffCard(card="5a000009", valid_until=day1 + 10 * 3600),)
    assert plan.roster_entries("SPPG-002", "5a000009") == ()
    assert plan.roster_windowed("5a000009") and not plan.roster_windowed("5a000001")
    assert not plan.roster_windowed("5a000012")
    assert format_local(day1 + 10 * 3600, wib) == "2026-03-02T10:00"
    assert format_local(day1 + 6 * 3600 + 30 * 60 + 15, wib) == "2026-03-02T06:30:15"
    # The kitchen's own zone, and TOML's own local dates and date-times, read alike.
    wit = load_plan(_roster('{card = "5a000009", until = 2026-03-02T10:00:00, from = 2026-03-01}')
                    .replace('name = "SPPG Margamukti"', 'name = "SPPG Margamukti"\ntimezone = "WIT"'))
    assert wit.kitchens[0].staff == (StaffCard(card="5a000009", valid_from=local_midnight("2026-03-01", 9 * 3600),
                                               valid_until=local_midnight("2026-03-02", 9 * 3600) + 10 * 3600),)


def test_a_roster_entry_that_cannot_be_used_is_refused_with_what_was_expected() -> None:
    for bad, match in (
            ('{card = "5a000009", to = "2026-03-02"}', r"kitchens\[1\]\.staff\[1\]\.to"),
            ('{until = "2026-03-02"}', r"staff\[1\]: missing required key 'card'"),
            ('{card = "", until = "2026-03-02"}', "expected 'card' as a staff card uid"),
            ('{card = 5, until = "2026-03-02"}', "expected 'card' as a staff card uid"),
            ('"5a000001", {card = "5a000009", from = "2026-03-02T10:00", until = "2026-03-02T09:00"}',
             r"staff\[2\]: expected until after from, got from 2026-03-02T10:00 and until 2026-03-02T09:00"),
            ('{card = "5a000009", from = "2026-03-02T10:00", until = "2026-03-02T10:00"}', "expected until after from"),
            # A date alone in `until` takes in that day: until the day before `from` is before it.
            ('{card = "5a000009", from = "2026-03-02", until = "2026-03-01"}', "expected until after from"),
            ('{card = "5a000009", until = "2026-03-02T25:00"}', r"staff\[1\]\.until: expected a time between"),
            ('{card = "5a000009", until = "2026-03-02T10"}', r"staff\[1\]\.until: expected 'HH:MM'"),
            ('{card = "5a000009", until = "2026-03-02T"}', "expected a local date 'YYYY-MM-DD' or date-time"),
            ('{card = "5a000009", from = "02/03/2026"}', r"staff\[1\]\.from: expected a local date 'YYYY-MM-DD'"),
            ('{card = "5a000009", from = "20260302"}', "expected a local date 'YYYY-MM-DD'"),
            ('{card = "5a000009", from = "2026-02-30"}', "expected a local date 'YYYY-MM-DD'"),
            ('{card = "5a000009", from = "10:00"}', "expected a local date 'YYYY-MM-DD'"),
            ('{card = "5a000009", until = 10}', "got int 10"),
            ('{card = "5a000009", until = 10:00:00}', "got time"),
            ('{card = "5a000009", until = 2026-03-02T10:00:00+07:00}', "one with an offset"),
            ('"5a000009", {card = "5A000009", until = "2026-03-02"}', "listed twice for times that meet"),
            # Two whiles that overlap, or one with no end before another: a tap would fall in two.
            ('{card = "5a000009", until = "2026-03-05"}, {card = "5a000009", from = "2026-03-05"}',
             "listed twice for times that meet"),
            ('{card = "5a000009", from = "2026-03-09"}, {card = "5a000009", from = "2026-03-01", until = "2026-03-10"}',
             "listed twice for times that meet"),
            ("1", "expected a staff card uid or a table {card, from, until}, got int 1")):
        with pytest.raises(PlanError, match=match):
            load_plan(_roster(bad))


def test_a_kitchen_with_no_probe_says_so_in_the_plan() -> None:
    # Deliveries are expected to carry temperature readings unless the plan says a kitchen has no probe.
    assert [k.temperature_required for k in load_plan(PLAN).kitchens] == [True, True]
    plan = load_plan(PLAN.replace('name = "SPPG Margamukti"', 'name = "SPPG Margamukti"\ntemperature_required = false'))
    assert [k.temperature_required for k in plan.kitchens] == [False, True]
    # [defaults] sets it for every kitchen; a kitchen's own entry overrides it.
    plan = load_plan(PLAN.replace('return_by = "15:30"', 'return_by = "15:30"\ntemperature_required = false')
                     .replace('timezone = "WITA"', 'timezone = "WITA"\ntemperature_required = true'))
    assert [k.temperature_required for k in plan.kitchens] == [False, True]
    with pytest.raises(PlanError, match=r"kitchen SPPG-001 temperature_required: expected true or false, got 'no'"):
        load_plan(PLAN.replace('name = "SPPG Margamukti"', 'name = "SPPG Margamukti"\ntemperature_required = "no"'))
    with pytest.raises(PlanError, match=r"defaults.temperature_required: expected true or false, got 1"):
        load_plan(PLAN.replace('return_by = "15:30"', 'return_by = "15:30"\ntemperature_required = 1'))
