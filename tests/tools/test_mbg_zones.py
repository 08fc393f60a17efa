"""`jejak mbg` says each school's and kitchen's times in its own zone: a WIT school's 09:00 deadline is 09:00 WIT,
never 07:00 WIB; and `stock --date` says the day its figures are the end of."""

from __future__ import annotations

import aiohttp

from hub.app import start_hub
from hub.config import HubConfig, SecurityConfig
from hub.mbg import Kitchen, Plan, School
from hub.mbg.plan import local_midnight
from tests.hub.conftest import Clock
from tools.mbg import Speaker, load_words, render

H = 3600
DAY = "2026-03-03"
WIB_MIDNIGHT, WIT_MIDNIGHT = local_midnight(DAY, 7 * H), local_midnight(DAY, 9 * H)
# A plan across zones, as the hub's names route gives it: WIB by default, SPPG Jayapura and SD Papua on WIT.
NAMES = {"tz_offset_s": 7 * H,
         "kitchens": {"K1": {"name": "SPPG Satu", "tz_offset_s": 7 * H},
                      "K3": {"name": "SPPG Jayapura", "tz_offset_s": 9 * H}},
         "schools": {"S2": {"name": "SD Dua", "kitchen": "K1", "tz_offset_s": 7 * H},
                     "S6": {"name": "SD Papua", "kitchen": "K3", "tz_offset_s": 9 * H}}}


def _missing(school: str, kitchen: str, midnight: int) -> dict:
    return {"school": school, "kitchen": kitchen, "date": DAY, "status": "missing", "statuses": ["missing"],
            "expected": 20, "received_portions": 0, "shortfall": 20, "deadline_at": midnight + 9 * H,
            "departed_at": None, "arrived_at": None, "received_at": None, "late_s": 0}


def test_a_wit_schools_deliveries_read_in_wit():
    say = Speaker(lang="id", names=NAMES, words=load_words("id"))
    papua = _missing("S6", "K3", WIT_MIDNIGHT)
    out = render("deliveries", {"date": DAY, "totals": {"missing": 1},
                                "kitchens": [{"kitchen": "K3", "schools": [papua]}]}, say)
    row = next(line for line in out.splitlines() if "SD Papua" in line)
    assert "Batas (WIT)" in out and "(WIB)" not in out
    assert "09:00" in row and "07:00" not in row
    # The finding's sentence says the deadline as the hub's own detail does ('no arrival recorded by 09:00').
    finding = {"code": "missing_delivery", "subject": "S6", "severity": "alert", "measured": 0, "limit": 20,
               "containers": [], "records": [], "detail": "no arrival recorded by 09:00"}
    out = render("violations", {"date": DAY, "violations": [], "findings": [finding]}, say,
                 {"kitchens": [{"kitchen": "K3", "schools": [papua]}]})
    assert "seharusnya tiba sebelum 09:00" in out and "07:00" not in out


def test_a_list_across_zones_names_each_rows_zone():
    say = Speaker(lang="en", names=NAMES, words=load_words("en"))
    out = render("missing", {"date": DAY, "missing": [_missing("S2", "K1", WIB_MIDNIGHT),
                                                      _missing("S6", "K3", WIT_MIDNIGHT)]}, say)
    head, dua, papua = out.splitlines()[1:]
    assert "Due (local time)" in head and "WIB" not in head and "WIT" not in head
    assert "09:00 WIB" in dua and "09:00 WIT" in papua
    # A kitchen's container history: the kitchen in WIB, the school in WIT, each step at its own site.
    steps = [{"time": WIB_MIDNIGHT + 6 * H, "event": "departed", "site": "K1", "device": None, "temp_cc": None},
             {"time": WIT_MIDNIGHT + 8 * H, "event": "arrived", "site": "S6", "device": None, "temp_cc": None}]
    out = render("container", {"tag": "04a1", "timelines": [{"date": DAY, "school": "S6", "steps": steps}]}, say)
    assert "Time (local time)" in out and "06:00 WIB" in out and "08:00 WIT" in out


def test_a_plan_of_one_zone_and_an_older_hub_keep_one_heading():
    # A hub older than per-site zones names none: every time is in the plan's zone, said once in the heading.
    say = Speaker(lang="en", names={"tz_offset_s": 9 * H, "schools": {"S6": {"name": "SD Papua"}}},
                  words=load_words("en"))
    out = render("missing", {"date": DAY, "missing": [_missing("S6", "K3", WIT_MIDNIGHT)]}, say)
    assert "Due (WIT)" in out and "09:00" in out and "09:00 WIT" not in out


def test_stock_of_a_day_says_the_day():
    say = Speaker(lang="id", names=NAMES, words=load_words("id"))
    on_hand = [{"kitchen": "K1", "item": "beras", "unit": "g", "on_hand": 47_000, "flags": []}]
    out = render("stock", {"date": "2026-03-02", "on_hand": on_hand, "cards": []}, say)
    assert out.splitlines()[0] == "Stok pada akhir Senin, 2 Maret 2026" and "47 kg" in out
    assert "Senin" not in render("stock", {"date": None, "on_hand": on_hand, "cards": []}, say)
    assert render("stock", {"date": "2026-03-02", "on_hand": [], "cards": []}, say).endswith("akhir Senin, 2 Maret 2026.")


def test_a_stock_unit_the_card_did_not_take_is_named_as_recorded():
    say = Speaker(lang="id", names=NAMES, words=load_words("id"))
    finding = {"code": "stock_unit_mismatch", "subject": "K1/telur", "severity": "warning", "measured": 2,
               "limit": None, "containers": [], "records": [],
               "detail": "use of 2 Kg on a card kept in butir: Kg does not convert to butir, not applied; record it "
                         "in butir"}
    out = render("violations", {"date": DAY, "violations": [], "findings": [finding]}, say,
                 {"kitchens": [], "on_hand": [{"kitchen": "K1", "item": "telur", "unit": "butir"}]})
    assert "catat ulang dalam butir (tercatat 2 Kg)" in out


async def test_the_names_route_gives_each_sites_zone(tmp_path) -> None:
    plan = Plan(kitchens=(Kitchen(id="K1"), Kitchen(id="K3", tz_offset_s=9 * H)),
                schools=(School(id="S2", kitchen="K1", portions=40), School(id="S6", kitchen="K3", portions=20,
                                                                          tz_offset_s=9 * H)))
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                       checkpoint_interval=3600, security=SecurityConfig(oscore=False))
    running = await start_hub(config, clock=Clock(WIB_MIDNIGHT + 6 * H), plan=plan)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{running.http_url}/api/mbg/names") as resp:
            names = await resp.json()
    finally:
        await running.close()
    assert names["tz_offset_s"] == 7 * H
    assert {k: v["tz_offset_s"] for k, v in names["kitchens"].items()} == {"K1": 7 * H, "K3": 9 * H}
    assert {k: v["tz_offset_s"] for k, v in names["schools"].items()} == {"S2": 7 * H, "S6": 9 * H}
    say = Speaker(lang="en", names=names, words=load_words("en"))
    assert say.clock(WIT_MIDNIGHT + 9 * H, "S6") == "09:00" and say.clock(WIT_MIDNIGHT + 9 * H, "S2") == "07:00"
