"""`jejak mbg` against running hubs (the demo's, and one without a plan): plain words for what the API says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest

from hub.mbg import view as mbg_view
from tests.ports import free_tcp
from tests.wait import wait_until
from tools.hubclient import HubRefused, hub_refused
from tools.mbg import TAG_HINT, Speaker, load_words, locale_lang, main, render, spoken

DAY = "2026-03-02"  # a Monday: the demo's hub clock is set to it, whatever day the tests run


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    port = free_tcp()
    data = tmp_path_factory.mktemp("demo") / "var"
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "demo", "--port", str(port), "--data-dir",
                             str(data), "--clock", f"{DAY}T04:00+07:00 x20000", "--duration", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        # Every answer folds in the records accepted before it, so once the day is pushed the API is current.
        wait_until(lambda: _api(url, "/api/demo").get("day_done"), 120, what="the demo day to finish",
                   step=0.5, tolerate=(OSError,))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def planless(tmp_path_factory):
    """A hub run from a config that names no MBG plan."""
    port = free_tcp()
    tmp = tmp_path_factory.mktemp("planless")
    config = tmp / "hub.toml"
    config.write_text(f'data_dir = "{tmp / "var"}"\nhttp_port = {port}\ncoap_port = 0\nmdns = false\n'
                      "[bridges]\nenabled = false\n")
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "hub", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _api(url, "/api/mbg/names") is not None, 60, what="the hub to answer", step=0.3,
                   tolerate=(OSError,))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _api(url: str, path: str):
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _hhmm(t: int, offset: int = 7 * 3600) -> str:
    s = (t + offset) % 86400
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def test_options_are_accepted_anywhere_on_the_line(demo, capsys):
    # The README's form (options after the query) and the older one (before it) give the same answer.
    after = _run(capsys, "deliveries", "--hub-url", demo, "--lang", "en")
    before = _run(capsys, "--hub-url", demo, "--lang", "en", "deliveries")
    assert after[0] == before[0] == 0
    assert after[1] == before[1] and "Deliveries on" in after[1]
    code, out, _ = _run(capsys, "--lang", "id", "late", "--json", "--hub-url", demo)
    assert code == 0 and "late" in json.loads(out)


def test_deliveries_name_every_kitchen_and_school_with_times_and_portions(demo, capsys):
    names = _api(demo, "/api/mbg/names")
    api = _api(demo, "/api/mbg/deliveries")
    code, out, _ = _run(capsys, "deliveries", "--hub-url", demo, "--lang", "en")
    assert code == 0
    for kid, k in names["kitchens"].items():
        assert f"{k['name']} ({kid})" in out
    lines = out.splitlines()
    for kitchen in api["kitchens"]:
        for d in kitchen["schools"]:
            name = names["schools"][d["school"]]["name"]
            line = next(x for x in lines if f"{name} ({d['school']})" in x)
            assert f"{d['received_portions']}/{d['expected']}" in line
            assert _hhmm(d["deadline_at"]) in line
            if d["arrived_at"]:
                assert _hhmm(d["arrived_at"]) in line
    # No codes or seconds: statuses in words, never the API's ids.
    assert "on_time" not in out and "on time" in out


def test_late_and_short_show_arrival_minutes_and_portions(demo, capsys):
    late = _api(demo, "/api/mbg/late")["late"]
    short = _api(demo, "/api/mbg/short")["short"]
    assert late and short, "the demo day has a late and a short delivery"
    code, out, _ = _run(capsys, "late", "--hub-url", demo, "--lang", "en")
    assert code == 0
    for d in late:
        line = next(x for x in out.splitlines() if d["school"] in x)
        assert _hhmm(d["arrived_at"]) in line and f"{round(d['late_s'] / 60)} min" in line
        assert f"{d['received_portions']}/{d['expected']}" in line
    code, out, _ = _run(capsys, "short", "--hub-url", demo, "--lang", "en")
    for d in short:
        line = next(x for x in out.splitlines() if d["school"] in x)
        cells = re.split(r"\s{2,}", line.strip())
        assert [str(d["received_portions"]), str(d["expected"]), str(d["shortfall"])] == cells[2:5]
        assert cells[5] == _hhmm(d["arrived_at"]), "the Arrived column holds the arrival, as in `deliveries`"


def test_violations_list_every_finding_kind_in_both_languages(demo, capsys):
    api = _api(demo, "/api/mbg/violations")
    codes = {f["code"] for f in api["findings"]}
    assert {"late_delivery", "short_delivery", "missing_delivery", "late_sync"} <= codes
    for lang in ("en", "id"):
        words = load_words(lang)
        code, out, _ = _run(capsys, "violations", "--lang", lang, "--hub-url", demo)
        assert code == 0
        for c in codes:
            assert words[f"finding.{c}"] in out, (lang, c)
        # Devices by name, never by their 32-hex id.
        assert not re.search(r"\b[0-9a-f]{32}\b", out)
    # Data-quality notices are folded into one line per kind; the act-now findings come first.
    code, out, _ = _run(capsys, "violations", "--lang", "en", "--hub-url", demo)
    findings = out.split("Findings")[1].splitlines()[2:]
    assert sum("records synced late" in x for x in findings) == 1
    first_note = next(i for i, x in enumerate(findings) if x.startswith(("note", "check")))
    assert all(x.startswith("act now") for x in findings[:first_note])
    assert "°C" in out and "cc" not in out.split()


def test_indonesian_is_the_default_under_an_indonesian_locale(demo, capsys, monkeypatch):
    assert locale_lang({"LANG": "id_ID.UTF-8"}) == "id" and locale_lang({"LANG": "en_US.UTF-8"}) == "en"
    assert locale_lang({"LC_ALL": "C", "LANG": "id_ID.UTF-8"}) == "en"
    monkeypatch.setenv("LC_ALL", "id_ID.UTF-8")
    code, out, _ = _run(capsys, "deliveries", "--hub-url", demo)
    assert code == 0 and "Pengiriman" in out and "tepat waktu" in out and "on time" not in out


def test_date_is_passed_on_and_checked(demo, capsys):
    day = _api(demo, "/api/mbg/deliveries")["date"]
    assert day == DAY  # the hub's clock, not the machine's, says which day it is
    code, out, _ = _run(capsys, "late", "--date", day, "--hub-url", demo, "--lang", "en")
    assert code == 0 and day in out
    code, out, _ = _run(capsys, "deliveries", "--date", "2020-01-06", "--hub-url", demo, "--lang", "en")
    assert code == 0 and "2020-01-06" in out
    code, _, err = _run(capsys, "late", "--date", "2026-13-01", "--hub-url", demo)
    assert code == 85 and json.loads(err)["error"]["code"] == "HUB_REFUSED"
    assert "--date 2026-03-02" in json.loads(err)["error"]["hint"]  # in the command's terms, not the query's


def test_container_history_in_times_of_day_and_degrees(demo, capsys):
    tag = _api(demo, "/api/mbg/containers")["containers"][0]["tag"]
    history = _api(demo, f"/api/mbg/containers/{tag}")["timelines"][0]
    code, out, _ = _run(capsys, "container", tag, "--hub-url", demo, "--lang", "en")
    assert code == 0 and tag in out
    for step in history["steps"]:
        assert _hhmm(step["time"]) in out
        if step["temp_cc"] is not None:
            assert f"{step['temp_cc'] / 100:.1f} °C" in out
    code, _, err = _run(capsys, "--hub-url", "http://127.0.0.1:9", "summary")
    assert code == 82 and json.loads(err)["error"]["code"] == "UNREACHABLE"


def test_epcis_export_is_served(demo, capsys):
    assert main(["--hub-url", demo, "epcis"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["type"] == "EPCISDocument" and doc["epcisBody"]["eventList"]


def test_a_hub_without_a_plan_says_so_with_a_hint(planless, capsys):
    code, out, err = _run(capsys, "deliveries", "--hub-url", planless, "--lang", "en")
    assert code == 0 and "no MBG plan" in out and "mbg_plan" in err


def test_an_overdue_truck_is_not_called_missing():
    say = Speaker(lang="en", names={"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}},
                                    "kitchens": {"K1": {"name": "SPPG Satu"}}}, words=load_words("en"))
    midnight = 1_767_200_400  # 00:00 WIB
    row = {"school": "S1", "kitchen": "K1", "status": "overdue", "departed_at": midnight + 7 * 3600 + 50 * 60,
           "deadline_at": midnight + 9 * 3600, "expected": 100}
    out = render("missing", {"date": "2026-01-01", "missing": [row]}, say)
    line = out.splitlines()[-1]
    assert "SD Satu (S1)" in line and "overdue, truck on the road" in line and "07:50" in line
    assert "missing" not in line


def test_stock_reads_in_kilograms_with_its_flags_in_words():
    say = Speaker(lang="id", names={"kitchens": {"K1": {"name": "SPPG Satu"}}}, words=load_words("id"))
    on_hand = [{"kitchen": "K1", "item": "beras", "unit": "g", "on_hand": 13500, "flags": ["overdraw"]},
               {"kitchen": "K1", "item": "garam", "unit": "g", "on_hand": 250, "flags": []},
               {"kitchen": "K1", "item": "telur", "unit": "butir", "on_hand": 1200, "flags": ["count_difference"]}]
    lines = render("stock", {"on_hand": on_hand}, say).splitlines()
    beras, garam, telur = (next(x for x in lines if item in x) for item in ("beras", "garam", "telur"))
    assert "SPPG Satu (K1)" in beras and "13,5 kg" in beras and "dipakai melebihi yang diterima" in beras
    assert "250 g" in garam
    assert "1.200 butir" in telur and "hitungan beda dengan catatan" in telur
    assert "overdraw" not in "\n".join(lines) and "count_difference" not in "\n".join(lines)


def test_indonesian_writes_dates_numbers_and_zones_the_indonesian_way():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}}, "kitchens": {"K1": {"name": "SPPG Satu"}}}
    say = Speaker(lang="id", names=names, words=load_words("id"))
    assert say.date("2026-12-02") == "Rabu, 2 Desember 2026" and say.num(1234) == "1.234"
    assert say.num(1234.5, 1) == "1.234,5" and say.celsius(4550) == "45,5 °C" and say.quantity(-2500, "g") == "-2,5 kg"
    midnight = 1_767_200_400  # 00:00 WIB, 1 January 2026
    row = {"school": "S1", "kitchen": "K1", "status": "short", "statuses": ["short"], "arrived_at": midnight + 7 * 3600,
           "received_at": None, "departed_at": None, "deadline_at": midnight + 9 * 3600, "expected": 3000,
           "received_portions": 2500, "shortfall": 500, "late_s": 0}
    out = render("deliveries", {"date": "2026-01-01", "totals": {"short": 1},
                                "kitchens": [{"kitchen": "K1", "schools": [row]}]}, say)
    assert "Pengiriman Kamis, 1 Januari 2026" in out and "Tiba (WIB)" in out and "2.500/3.000" in out
    finding = {"code": "stock_overdraw", "subject": "K1/beras", "severity": "alert", "measured": 12_000,
               "limit": 10_000, "containers": [], "records": [], "detail": "use of 12000 g with only 10000 on hand"}
    out = render("violations", {"date": "2026-01-01", "violations": [], "findings": [finding]}, say,
                 {"kitchens": [], "on_hand": [{"kitchen": "K1", "item": "beras", "unit": "g"}]})
    assert "12 kg dipakai padahal stok hanya 10 kg" in out
    summary = {"date": "2026-01-01", "deliveries": {"expected": 3, "on_time": 3}, "portions": {"received": 2950,
               "expected": 3000}, "total_scans_today": 1234, "devices_today": 4, "food_safety_violations": 1200,
               "alerts": 3400}
    out = render("summary", summary, say)
    assert "MBG Kamis, 1 Januari 2026" in out and "porsi 2.950 dari 3.000 diterima" in out and "1.234 tap" in out
    assert "Keamanan pangan: 1.200; temuan yang harus segera ditindak: 3.400" in out
    # A Pi that booted a year in the past (simulator's clock_year_off): its hours are grouped as every number is.
    skew = {"code": "clock_skew", "subject": "ab" * 16, "severity": "warning", "measured": 8760 * 3600 + 60,
            "limit": 900, "containers": [], "records": [], "detail": "clock off by 31536060 s"}
    out = render("violations", {"date": "2026-01-01", "violations": [], "findings": [skew]}, say, {"kitchens": []})
    assert "jam meleset 8.760 jam 1 menit" in out
    # English keeps the digits the API has.
    en = Speaker(lang="en", names=names, words=load_words("en"))
    assert en.date("2026-12-02") == "2026-12-02" and en.num(1234) == "1234" and en.celsius(4550) == "45.5 °C"


def test_the_shared_words_say_the_same_things_in_both_languages():
    """words.json, which `jejak mbg` and the dashboard both speak, has every key in English and in Indonesian with the
    same placeholders (a singular may write 1 for {n}); the command's own words (TEXT) repeat none of its keys: each
    sentence has one home."""
    from tools.mbg import TEXT

    placeholder = re.compile(r"\{(\w+)\}")
    en, ind = load_words("en"), load_words("id")
    assert sorted(en) == sorted(ind)
    differ = {k: (v, ind[k]) for k, v in en.items()
              if set(placeholder.findall(v)) - {"n"} != set(placeholder.findall(ind[k])) - {"n"}
              or (not k.endswith(".one") and set(placeholder.findall(v)) != set(placeholder.findall(ind[k])))}
    assert differ == {}, "placeholders differ between the languages"
    for lang, words in (("en", en), ("id", ind)):
        assert sorted(set(TEXT[lang]) & set(words)) == [], lang
        # A singular has its plural.
        assert [k for k in words if k.endswith(".one") and k[:-4] not in words] == [], lang


def test_english_says_one_container_and_two_containers():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}}, "kitchens": {"K1": {"name": "SPPG Satu"}}}
    say = Speaker(lang="en", names=names, words=load_words("en"))
    findings = [{"code": "container_unreturned", "subject": "S1", "severity": "alert", "measured": n,
                 "limit": None, "containers": [f"T{i}" for i in range(n)], "records": [], "detail": ""}
                for n in (1, 2)]
    one, two = (render("violations", {"date": "2026-01-01", "violations": [], "findings": [f]}, say, {"kitchens": []})
                for f in findings)
    assert "1 container not back at the kitchen" in one and "1 containers" not in one
    assert "2 containers not back at the kitchen" in two
    summary = {"date": "2026-01-01", "deliveries": {"expected": 1, "on_time": 1}, "portions": {"received": 30,
               "expected": 30}, "total_scans_today": 1, "devices_today": 1, "food_safety_violations": 0, "alerts": 0}
    out = render("summary", summary, say)
    assert "1 delivery:" in out and "1 tap today, 1 device" in out and "devices" not in out
    # Indonesian has one form for both.
    ind = Speaker(lang="id", names=names, words=load_words("id"))
    one = render("violations", {"date": "2026-01-01", "violations": [], "findings": [findings[0]]}, ind, {"kitchens": []})
    assert "1 ompreng belum kembali ke dapur" in one


def test_english_says_of_one_portion_and_of_two_portions():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}}, "kitchens": {"K1": {"name": "SPPG Satu"}}}
    midnight = 1_767_200_400  # 00:00 WIB, 1 January 2026

    def said(lang: str, expected: int) -> str:
        row = {"school": "S1", "kitchen": "K1", "date": "2026-01-01", "status": "short", "statuses": ["short"],
               "arrived_at": midnight + 7 * 3600, "received_at": None, "departed_at": None,
               "deadline_at": midnight + 9 * 3600, "expected": expected, "received_portions": 0,
               "shortfall": expected, "late_s": 0}
        finding = {"code": "short_delivery", "subject": "S1", "severity": "alert", "measured": 0, "limit": expected,
                   "containers": [], "records": [], "detail": ""}
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        return render("violations", {"date": "2026-01-01", "violations": [], "findings": [finding]}, say,
                      {"kitchens": [{"kitchen": "K1", "schools": [row]}]})

    assert "received 0 of 1 portion: 1 short" in said("en", 1)
    assert "received 0 of 2 portions: 2 short" in said("en", 2)
    assert "diterima 0 dari 1 porsi" in said("id", 1)  # Indonesian has one form


def test_a_late_delivery_tapped_in_as_received_says_when_it_came():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S2": {"name": "SD Dua"}}, "kitchens": {"K1": {"name": "SPPG Satu"}}}
    midnight = 1_767_200_400  # 00:00 WIB, 1 January 2026
    row = {"school": "S2", "kitchen": "K1", "date": "2026-01-01", "status": "late", "statuses": ["late"],
           "arrived_at": None, "received_at": midnight + 9 * 3600 + 25 * 60, "departed_at": midnight + 8 * 3600,
           "deadline_at": midnight + 9 * 3600, "expected": 40, "received_portions": 40, "shortfall": 0,
           "late_s": 25 * 60}
    finding = {"code": "late_delivery", "subject": "S2", "severity": "alert", "measured": 25 * 60, "limit": 0,
               "containers": [], "records": [], "detail": "arrived 09:25, due 09:00"}
    for lang, says in (("id", "tiba 09:25, batas 09:00"), ("en", "arrived 09:25, due 09:00")):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        out = render("violations", {"date": "2026-01-01", "violations": [], "findings": [finding]}, say,
                     {"kitchens": [{"kitchen": "K1", "schools": [row]}]})
        assert says in out, out


def test_cook_to_serve_says_whether_the_meals_were_served_not_yet_or_untapped():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S2": {"name": "SD Dua"}}, "kitchens": {}}
    base = {"code": "cook_to_serve", "subject": "S2", "severity": "alert", "measured": 6 * 3600 + 55 * 60,
            "limit": 4 * 3600, "containers": ["T1"], "records": []}
    details = {"served": "time from cook-end to serving: measured 24900 s, limit 14400 s; source: x",
               "open": "time from cook-end to serving: measured 24900 s, limit 14400 s (still open); source: x",
               "untapped": "time from cook-end to arrival at school (not tapped served): measured 24900 s, limit "
                           "14400 s; source: x"}
    said = {}
    for lang in ("id", "en"):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        for how, detail in details.items():
            said[(lang, how)] = render("violations", {"date": "2026-01-01", "violations": [],
                                                      "findings": [{**base, "detail": detail}]}, say, {"kitchens": []})
    # A day stored before the parts were findings of their own says in its detail how its timer stands.
    assert "1 ompreng disajikan 6 jam 55 menit setelah dimasak" in said[("id", "served")]
    assert "1 ompreng belum disajikan" in said[("id", "open")]
    assert "1 ompreng tiba di sekolah 6 jam 55 menit setelah dimasak" in said[("id", "untapped")]
    assert "penyajian tidak di-tap" in said[("id", "untapped")]
    assert "1 container arrived at school 6 h 55 min after cooking" in said[("en", "untapped")]


def test_meals_served_late_and_never_served_are_read_apart_in_both_languages():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S2": {"name": "SD Dua"}}, "kitchens": {}}
    base = {"rule": "cook_to_serve", "school": "S2", "kitchen": "K1", "date": "2026-01-01", "limit": 4 * 3600,
            "unit": "s", "source": "x", "at": 0, "to_arrival": False, "records": []}
    violations = [{**base, "measured": 4 * 3600 + 30 * 60, "open": False, "part": None, "containers": ["T1", "T2"]},
                  {**base, "measured": 6 * 3600 + 30 * 60, "open": True, "part": "not_served",
                   "containers": ["T3", "T4", "T5"]}]
    for lang, served, unserved in (
            ("id", "2 ompreng disajikan 4 jam 30 menit setelah dimasak, batas 4 jam 0 menit",
             "3 ompreng belum disajikan, sudah 6 jam 30 menit sejak dimasak, batas 4 jam 0 menit"),
            ("en", "2 containers served 4 h 30 min after cooking, limit 4 h 0 min",
             "3 containers not served yet, 6 h 30 min since cooking, limit 4 h 0 min")):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        out = render("violations", {"date": "2026-01-01", "violations": violations, "findings": []}, say,
                     {"kitchens": []})
        assert served in out and unserved in out, out


def test_meals_served_after_the_danger_zone_and_meals_still_in_it_are_read_apart_in_both_languages():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S2": {"name": "SD Dua"}}, "kitchens": {}}
    base = {"school": "S2", "kitchen": "K1", "date": "2026-01-01", "source": "x", "at": 0, "to_arrival": False,
            "records": []}
    zone = {**base, "rule": "danger_zone", "limit": 2 * 3600, "unit": "s"}
    cold = {**base, "rule": "hot_holding", "limit": 6000, "unit": "cc", "measured": 4500}
    violations = [{**zone, "measured": 2 * 3600 + 30 * 60, "open": False, "part": "served", "containers": ["T1"]},
                  {**zone, "measured": 3 * 3600, "open": True, "part": "not_served", "containers": ["T2", "T3"]},
                  {**cold, "open": False, "part": "served", "containers": ["T1"]},
                  {**cold, "open": True, "part": "not_served", "containers": ["T2", "T3"]}]
    # A day stored before the parts were apart has one violation of both, said without a count.
    stored_before = [{**zone, "measured": 3 * 3600, "open": True, "part": None, "containers": ["T1", "T2", "T3"]}]
    for lang, said, before in (
            ("id", ["1 ompreng disajikan setelah 2 jam 30 menit di antara 5 dan 60 °C, batas 2 jam 0 menit",
                    "2 ompreng belum disajikan, sudah 3 jam 0 menit di antara 5 dan 60 °C, batas 2 jam 0 menit",
                    "1 ompreng disajikan setelah suhunya turun ke 45,0 °C",
                    "2 ompreng belum disajikan, suhunya turun ke 45,0 °C"],
             "  3 jam 0 menit di antara 5 dan 60 °C, batas 2 jam 0 menit"),
            ("en", ["1 container served after 2 h 30 min between 5 and 60 °C, limit 2 h 0 min",
                    "2 containers not served yet, 3 h 0 min between 5 and 60 °C so far, limit 2 h 0 min",
                    "1 container served after cooling to 45.0 °C, must stay at 60.0 °C or above until served",
                    "2 containers not served yet, cooled to 45.0 °C"],
             "  3 h 0 min between 5 and 60 °C, limit 2 h 0 min")):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        out = render("violations", {"date": "2026-01-01", "violations": violations, "findings": []}, say,
                     {"kitchens": []})
        assert all(s in out for s in said), out
        out = render("violations", {"date": "2026-01-01", "violations": stored_before, "findings": []}, say,
                     {"kitchens": []})
        [row] = [line for line in out.splitlines() if "(S2)" in line]
        assert before in row and not any(w in row for w in ("disajikan", "served")), row


def test_a_day_without_deliveries_says_so():
    # A closed date or a weekend: the hub lists no delivery, and the heading alone would end in a bare colon.
    for lang, says in (("id", "Tidak ada pengiriman pada Sabtu, 17 Januari 2026: rencana tidak menjadwalkan"),
                       ("en", "No deliveries on 2026-01-17: the plan expects none that day")):
        say = Speaker(lang=lang, names={"tz_offset_s": 7 * 3600}, words=load_words(lang))
        out = render("deliveries", {"date": "2026-01-17", "totals": {}, "kitchens": []}, say)
        assert out.startswith(says) and not out.rstrip().endswith(":"), out


def test_a_staff_card_read_as_a_container_is_said_in_both_languages():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}}, "kitchens": {}}
    finding = {"code": "staff_card_tag", "subject": "S1", "severity": "warning", "measured": 2, "limit": None,
               "containers": [], "records": ["r1", "r2"], "detail": ""}
    for lang, says in (("id", "kartu petugas terbaca sebagai ompreng pada 2 tap; tidak dihitung"),
                       ("en", "a staff card was read as a container on 2 taps; not counted as one")):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        out = render("violations", {"date": "2026-01-16", "violations": [], "findings": [finding]}, say,
                     {"kitchens": []})
        assert says in out and "SD Satu (S1)" in out, out


def test_a_step_on_another_day_says_which():
    # Empties back at 00:20 close the day before's trip: its history says the step was a day later.
    midnight = 1_768_496_400  # 00:00 WIB, 16 January 2026
    step = {"event": "returned", "site": "K1", "device": "d", "temp_cc": None}
    data = {"tag": "T1", "timelines": [{"date": "2026-01-16", "school": "S1", "steps": [
        {**step, "event": "departed", "time": midnight + 8 * 3600}, {**step, "time": midnight + 24 * 3600 + 20 * 60}]}]}
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}}, "kitchens": {"K1": {"name": "SPPG"}}}
    for lang, says in (("id", "00:20 (+1 hari)"), ("en", "00:20 (+1 day)")):
        out = render("container", data, Speaker(lang=lang, names=names, words=load_words(lang)))
        assert says in out and "08:00 " in out and "08:00 (" not in out, out


def test_a_return_closing_a_trip_the_hub_no_longer_holds_says_which_trip():
    # Back eight days late: the trip's departure and arrival are beyond the days the hub holds, so the history
    # has the return alone and says which trip it closes.
    step = {"event": "returned", "site": "K1", "device": "d", "temp_cc": None, "time": 1_773_115_200}
    data = {"tag": "T1", "timelines": [{"date": "2026-03-10", "school": None, "closes": "2026-03-02",
                                        "steps": [step]}]}
    names = {"tz_offset_s": 7 * 3600, "schools": {}, "kitchens": {"K1": {"name": "SPPG"}}}
    for lang, says in (("id", "kembali dari perjalanan Senin, 2 Maret 2026, yang tap-nya tidak disimpan hub lagi"),
                       ("en", "back from its trip of 2026-03-02, whose taps the hub no longer holds")):
        out = render("container", data, Speaker(lang=lang, names=names, words=load_words(lang)))
        assert says in out, out
    del data["timelines"][0]["closes"]
    assert "2026-03-02" not in render("container", data, Speaker(lang="en", names=names, words=load_words("en")))


def test_a_staff_card_off_the_roster_is_said_in_both_languages():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}},
             "kitchens": {"K2": {"name": "SPPG Dua"}}}
    lent = {"code": "staff_not_on_roster", "subject": "S1", "severity": "warning", "measured": 3, "limit": None,
            "containers": [], "records": ["r1", "r2", "r3"], "detail": "", "other_kitchen": "K2"}
    unknown = {**lent, "measured": 1, "records": ["r4"], "other_kitchen": None}
    for lang, says in (
            ("id", ["3 tap oleh petugas SPPG Dua (K2), yang tidak ada di daftar petugas dapur pengiriman ini",
                    "1 tap dengan kartu petugas yang tidak ada di daftar petugas dapur mana pun"]),
            ("en", ["3 taps by staff of SPPG Dua (K2), not on the roster of this delivery's kitchen",
                    "1 tap by a staff card on no kitchen's roster"])):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        out = render("violations", {"date": "2026-01-16", "violations": [], "findings": [lent, unknown]}, say,
                     {"kitchens": []})
        assert all(s in out for s in says) and "SD Satu (S1)" in out, out


def test_a_staff_card_on_the_roster_for_a_while_only_is_said_with_its_time_in_both_languages():
    # A card taken off the kitchen's roster at 10:00 (`part` until, `limit` that time) that tapped after it, and a
    # card put on it from 09:00 that tapped before: said with the time, and never with advice to add it back.
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}, "S6": {"name": "SD Papua", "tz_offset_s": 9 * 3600}},
             "kitchens": {"K1": {"name": "SPPG Satu"}}}
    ten = 1772420400  # 2026-03-02 10:00 WIB
    until = {"code": "staff_not_on_roster", "subject": "K1", "severity": "warning", "measured": 3, "limit": ten,
             "part": "until", "date": "2026-03-02", "containers": [], "records": ["r1", "r2", "r3"], "detail": "",
             "other_kitchen": None}
    since = {**until, "subject": "S1", "measured": 1, "records": ["r4"], "part": "from", "limit": ten - 3600}
    night = {**until, "limit": ten - 10 * 3600}  # a date alone: the card was on it through the day before
    papua = {**until, "subject": "S6"}  # a school's times are said in its own zone
    said = {lang: [Speaker(lang=lang, names=names, words=load_words(lang)).finding(f, {}) for f in (until, since, night, papua)]
            for lang in ("en", "id")}
    assert said["en"] == ["3 taps after 10:00 by staff on the roster of this delivery's kitchen only until then",
                          "1 tap before 09:00 by staff on the roster of this delivery's kitchen only from then",
                          "3 taps after 00:00 by staff on the roster of this delivery's kitchen only until then",
                          "3 taps after 12:00 by staff on the roster of this delivery's kitchen only until then"]
    assert said["id"] == [
        "3 tap setelah pukul 10:00 oleh petugas yang ada di daftar petugas dapur pengiriman ini hanya sampai saat itu",
        "1 tap sebelum pukul 09:00 oleh petugas yang baru ada di daftar petugas dapur pengiriman ini mulai saat itu",
        "3 tap setelah pukul 00:00 oleh petugas yang ada di daftar petugas dapur pengiriman ini hanya sampai saat itu",
        "3 tap setelah pukul 12:00 oleh petugas yang ada di daftar petugas dapur pengiriman ini hanya sampai saat itu"]
    # Taken off days before: the day is said too.
    week = Speaker(lang="id", names=names, words=load_words("id")).finding({**until, "date": "2026-03-05"}, {})
    assert "setelah pukul 10:00 (-3 hari)" in week, week
    out = render("violations", {"date": "2026-03-02", "violations": [], "findings": [until, since]},
                 Speaker(lang="id", names=names, words=load_words("id")), {"kitchens": []})
    assert "hanya sampai saat itu" in out and "mulai saat itu" in out and "tambahkan" not in out, out


def test_a_device_clock_off_names_the_device_and_the_offset_in_both_languages():
    device = "ab" * 16
    names = {"tz_offset_s": 7 * 3600, "devices": {device: {"name": "Meja kembali", "site": "K1"}}}
    behind = {"code": "device_clock", "subject": device, "severity": "warning", "measured": -86_410, "limit": 900,
              "part": "behind", "containers": [], "records": [], "date": "2026-01-01",
              "detail": "device clock 86410 s behind the hub's at its last sync; its taps are signed 86410 s too "
                        "early, and timed by the clock set right"}
    ahead = {**behind, "measured": 1_200, "part": "ahead", "detail": "device clock 1200 s ahead"}
    said = {}
    for lang in ("id", "en"):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        said[lang] = [render("violations", {"date": "2026-01-01", "violations": [], "findings": [f]}, say)
                      for f in (behind, ahead)]
    (id_behind, id_ahead), (en_behind, en_ahead) = said["id"], said["en"]
    assert "Meja kembali (K1)" in id_behind and "terlambat 24 jam 0 menit dari jam hub" in id_behind, id_behind
    assert "hari sebelumnya" in id_behind and "minta teknisi menyetel jamnya" in id_behind
    assert "lebih cepat 20 menit dari jam hub" in id_ahead, id_ahead
    assert "Meja kembali (K1)" in en_behind and "24 h 0 min behind the hub's" in en_behind, en_behind
    assert "20 min ahead of the hub's" in en_ahead, en_ahead


def _error(err: str) -> dict[str, str]:
    return json.loads(err)["error"]


def test_a_refusal_by_the_hub_is_said_in_indonesian_with_its_code_and_exit_code_kept(demo, capsys, monkeypatch):
    code, _, err = _run(capsys, "container", "ZZZ", "--lang", "id", "--hub-url", demo)
    error = _error(err)
    assert code == 85 and error["code"] == "HUB_REFUSED"
    assert error["message"].startswith("tidak ada tap yang menyebut ompreng 'ZZZ'"), error
    assert "MBG_NOT_FOUND: container 'ZZZ'" in error["message"]  # the hub's own words kept, for whoever helps
    assert error["hint"] == "periksa UID tag pada ompreng"
    # Under an Indonesian locale, without --lang.
    monkeypatch.setenv("LC_ALL", "id_ID.UTF-8")
    code, _, err = _run(capsys, "late", "--date", "2026-13-45", "--hub-url", demo)
    error = _error(err)
    assert code == 85 and error["code"] == "HUB_REFUSED"
    assert error["message"].startswith("hub tidak bisa membaca tanggal '2026-13-45': tulis TTTT-BB-HH"), error
    assert error["hint"] == "mis. --date 2026-03-02"
    # English stays as the hub says it.
    code, _, err = _run(capsys, "container", "ZZZ", "--lang", "en", "--hub-url", demo)
    assert code == 85 and _error(err)["hint"] == "check the tag uid on the ompreng"


def test_no_answer_is_said_in_words_in_both_languages_not_as_an_errno():
    url = f"http://127.0.0.1:{free_tcp()}"  # nothing listens there
    for lang, says, hint in (("id", "hub tidak menjawab di", "periksa bahwa hub berjalan"),
                             ("en", "no answer from", "check that the hub runs")):
        proc = subprocess.run([sys.executable, "-m", "tools.cli", "mbg", "summary", "--hub-url", url, "--lang", lang],
                              capture_output=True, text=True, timeout=60)
        error = _error(proc.stderr)
        assert proc.returncode == 82 and error["code"] == "UNREACHABLE", proc.stderr
        assert error["message"].startswith(f"{says} {url}/api/dashboard/summary: "), error
        assert "Errno" not in error["message"] and hint in error["hint"], error
    assert "sambungan ditolak" in _error(subprocess.run(
        [sys.executable, "-m", "tools.cli", "mbg", "summary", "--hub-url", url], capture_output=True, text=True,
        timeout=60, env={**os.environ, "LC_ALL": "", "LC_MESSAGES": "", "LANG": "id_ID.UTF-8"}).stderr)["message"]


def test_refusals_are_said_by_their_code_and_an_unknown_code_quotes_the_hub():
    def refused(status: int, said: str, hint: str | None) -> HubRefused:
        code, _, message = said.partition(": ")
        body = json.dumps({"error": {"code": code, "message": message, "hint": hint}}) if message else said
        return hub_refused("http://hub/api/mbg/late", status, body)

    busy = spoken(refused(503, "BUSY: too many appends wait", "try again shortly"), "id")
    assert isinstance(busy, HubRefused) and busy.code == "HUB_REFUSED" and busy.exit_code == 85 and busy.status == 503
    assert busy.message == "hub sedang sibuk (jawaban hub http://hub/api/mbg/late: 503 BUSY: too many appends wait)"
    assert busy.hint == "coba lagi sebentar lagi"
    odd = spoken(refused(418, "TEAPOT: short and stout", "tip it over"), "id")
    assert odd.message.startswith("hub menolak pertanyaan ini (jawaban hub") and "TEAPOT: short and stout" in odd.message
    assert odd.hint == "petunjuk hub: tip it over"
    html = spoken(refused(502, "<html>Bad Gateway</html>", "check the token"), "id")
    assert html.hint == "periksa --hub-url dan pertanyaannya"  # not the default hint about a token mbg never sends
    older = spoken(refused(404, "MBG_NOT_FOUND: container 'T9': no scan names this tag",
                           "check the tag uid on the ompreng; the scans of 3 stored days up to 2026-02-27 are beyond "
                           "the window held in memory, their containers are not searched"), "id", tag="T9")
    assert older.hint == ("periksa UID tag pada ompreng; petunjuk hub: check the tag uid on the ompreng; the scans of 3 "
                          "stored days up to 2026-02-27 are beyond the window held in memory, their containers are not "
                          "searched")
    assert TAG_HINT == mbg_view.TAG_HINT  # the hub's words, known to the command without loading the hub's MBG
    english = refused(503, "BUSY: too many appends wait", "try again shortly")
    assert spoken(english, "en") is english


def test_a_truck_on_the_road_has_left_and_has_not_arrived():
    names = {"tz_offset_s": 7 * 3600, "schools": {"S1": {"name": "SD Satu"}, "S2": {"name": "SD Dua"}},
             "kitchens": {"K1": {"name": "SPPG Satu"}}}
    midnight = 1_767_200_400  # 00:00 WIB, 1 January 2026
    base = {"kitchen": "K1", "received_at": None, "deadline_at": midnight + 9 * 3600, "expected": 300,
            "received_portions": 0, "shortfall": 0, "late_s": 0}
    rows = [{**base, "school": "S1", "status": "in_transit", "statuses": ["in_transit"], "arrived_at": None,
             "departed_at": midnight + 6 * 3600 + 9 * 60},
            {**base, "school": "S2", "status": "on_time", "statuses": ["on_time"], "received_portions": 300,
             "departed_at": midnight + 6 * 3600, "arrived_at": midnight + 6 * 3600 + 40 * 60}]
    for lang, left, arrived in (("id", "Berangkat (WIB)", "Tiba (WIB)"), ("en", "Left (WIB)", "Arrived (WIB)")):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        out = render("deliveries", {"date": "2026-01-01", "totals": {"in_transit": 1, "on_time": 1},
                                    "kitchens": [{"kitchen": "K1", "schools": rows}]}, say)
        lines = out.splitlines()
        head = next(x for x in lines if arrived in x)
        cells = [dict(zip(re.split(r"\s{2,}", head.strip()), re.split(r"\s{2,}", x.strip()), strict=False))
                 for x in lines if "SD Satu" in x or "SD Dua" in x]
        on_road, arrived_row = cells
        assert on_road[left] == "06:09" and on_road[arrived] == "–", out
        assert arrived_row[left] == "06:00" and arrived_row[arrived] == "06:40", out
        assert "Berangkat 06:09" not in out and "Left kitchen 06:09" not in out


def test_no_stock_reads_0_kg_beside_the_kilograms():
    say = Speaker(lang="id", names={"kitchens": {"K1": {"name": "SPPG Satu"}}}, words=load_words("id"))
    on_hand = [{"kitchen": "K1", "item": "ayam", "unit": "g", "on_hand": 0, "flags": []},
               {"kitchen": "K1", "item": "beras", "unit": "g", "on_hand": 10_000, "flags": []},
               {"kitchen": "K1", "item": "minyak", "unit": "ml", "on_hand": 0, "flags": []}]
    lines = render("stock", {"on_hand": on_hand}, say).splitlines()
    ayam, beras, minyak = (next(x for x in lines if item in x) for item in ("ayam", "beras", "minyak"))
    assert ayam.endswith("0 kg") and "0 g" not in ayam and beras.endswith("10 kg") and minyak.endswith("0 l")


def test_no_stock_at_all_is_said_without_a_day():
    for lang, says in (("id", "Belum ada stok tercatat"), ("en", "No stock recorded")):
        said = render("stock", {"on_hand": []}, Speaker(lang=lang, names={}, words=load_words(lang)))
        assert said.startswith(says) and " ." not in said and "{" not in said, said
