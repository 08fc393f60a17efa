"""Each dashboard page, loaded from a running demo hub in headless Chromium, shows the hub's own numbers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.error
import urllib.request

import aiocoap
import pytest
from selenium.common.exceptions import ElementNotInteractableException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from coap_server.sync import sync_once
from hub.markets.calendar import date_of
from hub.markets.catalog import MARKETS_BY_ID
from hub.markets.model import day_of
from ledger import ChainBuilder, ChainState, Ed25519Signer, decode_bundle, verify_bundle
from ledger.enroll import make_enroll_request
from ledger.sync import Head

from .harness import digits


def load(driver, demo, route, ready):
    driver.get(f"{demo.url}/#/{route}")
    WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, ready)))


def text_of(driver, css):
    # Live updates re-render the page: an element found just before a re-render is gone when read.
    for _ in range(10):
        try:
            return driver.find_element(By.CSS_SELECTOR, css).text
        except StaleElementReferenceException:
            continue
    return driver.find_element(By.CSS_SELECTOR, css).text


def no_js_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_chain_health_page_shows_log_devices_and_checkpoint(demo, driver, tmp_path):
    load(driver, demo, "chain", "[data-testid=devices]")
    health = demo.get("/api/chain/health")
    assert digits(text_of(driver, "[data-testid=chain-size] .n")) == health["size"]
    assert health["size"] > 1000
    assert digits(text_of(driver, "[data-testid=chain-devices] .n")) == health["device_count"] == len(health["devices"])
    assert digits(text_of(driver, "[data-testid=chain-forks] .n")) == health["forks"]
    rows = driver.find_elements(By.CSS_SELECTOR, "[data-testid=devices] tbody tr")
    assert len(rows) == len(health["devices"])
    dev = max(health["devices"], key=lambda d: d["length"])
    assert digits(text_of(driver, f"[data-testid=len-{dev['device']}]")) == dev["length"]
    shown = digits(text_of(driver, "[data-testid=cp-size]"))
    assert 0 < shown <= health["size"]
    # The download button fetches an audit bundle that verifies offline against this hub's key.
    href = driver.find_element(By.ID, "export").get_attribute("href")
    with pytest.raises(urllib.error.HTTPError) as refused:  # a bundle holds record bodies: not for the public
        urllib.request.urlopen(href, timeout=30)
    assert refused.value.code == 403
    token = (demo.data_dir / "auditor.token").read_text().strip()  # the demo's auditor
    with urllib.request.urlopen(urllib.request.Request(href, headers={"Authorization": f"Bearer {token}"}),
                                timeout=30) as resp:
        data = resp.read()
    report = verify_bundle(data, hub_key=bytes.fromhex(demo.get("/api/status")["pubkey"]))
    assert report.ok, report.all_problems()[:3]
    # Every device's log, the hub's own log (its decisions and attestations) apart in hub_log.
    hub_id = demo.get("/api/status")["hub"]
    bundle = decode_bundle(data)
    assert sorted(log.device_id.hex() for log in bundle.logs) == sorted(
        d["device"] for d in health["devices"] if d["device"] != hub_id)
    assert bundle.hub_log
    driver.save_screenshot(str(tmp_path / "chain.png"))
    assert (tmp_path / "chain.png").stat().st_size > 10_000
    assert no_js_errors(driver) == []


def test_mbg_page_shows_todays_deliveries_violations_and_stock(demo, driver, tmp_path):
    load(driver, demo, "mbg", "[data-testid=stock]")
    deliveries = demo.get("/api/mbg/deliveries")
    totals = deliveries["totals"]
    for status in ("on_time", "late", "short", "missing"):
        assert digits(text_of(driver, f"[data-testid=mbg-{status}] .n")) == totals[status]
    # The simulated day puts one late, one short and one missing delivery on three kitchens.
    assert totals["late"] >= 1 and totals["short"] >= 1 and totals["missing"] >= 1
    for kitchen in deliveries["kitchens"]:
        for status in ("on_time", "late", "short", "missing"):
            shown = text_of(driver, f"[data-testid=k-{kitchen['kitchen']}-{status}]")
            assert int(shown) == kitchen["counts"][status]
    violations = demo.get("/api/mbg/violations")["violations"]
    assert violations, "the temperature_drop kitchen must show a food-safety violation"
    rows = driver.find_elements(By.CSS_SELECTOR, "[data-testid=violations] table")[0].find_elements(
        By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == len(violations)
    assert violations[0]["school"] in rows[0].text
    stock = demo.get("/api/mbg/stock")["on_hand"]
    stock_rows = driver.find_elements(By.CSS_SELECTOR, "[data-testid=stock] tbody tr")
    assert len(stock_rows) == len(stock)
    assert driver.find_elements(By.CSS_SELECTOR, "[data-testid=timeline] li")
    driver.save_screenshot(str(tmp_path / "mbg.png"))
    assert no_js_errors(driver) == []


def rendered_markets(driver):
    """The markets page's chart marks together with the data the page drew them from, read in one step once no
    render is under way: live records re-render the page, so comparing with a separate API call races."""
    snap = driver.execute_script(
        "if (rendering) return null;"
        "const p = STATE.data.markets && STATE.data.markets.p; if (!p) return null;"
        "const dots = [...document.querySelectorAll('[data-testid=price-chart] circle.impact')].map((d) => ({"
        " market: d.dataset.market, day: Number(d.dataset.day), score: Number(d.dataset.score),"
        " dominant: d.dataset.dominant, tip: d.dataset.tip}));"
        "const marks = document.querySelectorAll('[data-testid=price-chart] g.quarantine').length;"
        "return {p: p, dots: dots, marks: marks, obs: document.querySelector('[data-testid=obs-count]').textContent};")
    return snap or False


def test_markets_page_marks_quarantine_impact_forecast_and_alps_map(demo, driver, tmp_path):
    load(driver, demo, "markets", "[data-testid=price-chart]")
    snap = WebDriverWait(driver, 15).until(rendered_markets)
    prices = snap["p"]
    assert digits(snap["obs"]) == sum(len(s["points"]) for s in prices["series"])
    assert snap["marks"] == sum(1 for s in prices["series"] for p in s["points"] if p["quarantined"])
    # One impact dot per series and day that has an accepted price, carrying the hub's score and main cause.
    accepted = {(s["market"], p["day"]) for s in prices["series"] for p in s["points"] if not p["quarantined"]}
    expected = {(i["market"], i["day"]): (i["score"], i["dominant"]) for i in prices["impact"]
                if (i["market"], i["day"]) in accepted}
    shown = {(d["market"], d["day"]): (d["score"], d["dominant"]) for d in snap["dots"]}
    assert shown == expected and len(snap["dots"]) == len(expected)
    assert expected, "the demo's prices have impact scores"
    last = snap["dots"][-1]
    words = driver.execute_script("return I18N[STATE.lang]")
    assert words["dominant"] in last["tip"] and words[f"factor.{last['dominant']}"] in last["tip"]
    commodity = driver.find_element(By.ID, "commodity").get_attribute("value")
    forecast = demo.get(f"/api/markets/forecast/{commodity}")
    means = [int(c.get_attribute("data-mean"))
             for c in driver.find_elements(By.CSS_SELECTOR, "[data-testid=forecast-chart] circle")]
    assert means == [p["mean"] for p in forecast["forecast"]]
    # The map: Leaflet over the bundled province shapes; every market is a marker or in a group of markers.
    assert driver.find_elements(By.CSS_SELECTOR, "[data-testid=map] path.land")
    assert driver.find_elements(By.CSS_SELECTOR, "[data-testid=map] .leaflet-control-zoom-in")
    for market in demo.get("/api/markets/map")["markets"]:
        own = driver.find_elements(By.CSS_SELECTOR, f"[data-testid=map] [data-market='{market['id']}']")
        groups = [g for g in driver.find_elements(By.CSS_SELECTOR, "[data-testid=map] [data-markets]")
                  if market["id"] in g.get_attribute("data-markets").split()]
        assert len(own) + len(groups) == 1, market["id"]
        if own:
            assert own[0].get_attribute("data-band") == market["band"]
    # Zooming in splits the groups: at the closest zoom every market has its own marker.
    driver.execute_script("MAP.map.setView([-6.2, 106.8], 11, {animate: false})")
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=map] [data-market]"))
    # Nothing is fetched from outside the hub: no tiles, no CDN.
    hosts = driver.execute_script("return [...new Set(performance.getEntriesByType('resource').map((e) => new URL(e.name).host))]")
    assert set(hosts) == {demo.url.split("//")[1]}
    # Every price waiting for a decision is listed, whatever its commodity and however old (the prices answer covers
    # only the days it lists), a page at a time, with the validator's checks in plain words.
    listed_from = demo.get("/api/markets/prices")["observations_from"]
    waiting = demo.get("/api/markets/quarantine?state=pending")
    assert any(date_of(day_of(e["observation"]["time"])).isoformat() < listed_from for e in waiting["entries"]), \
        "the demo's backlog holds prices older than the days listed"
    page = WebDriverWait(driver, 15).until(lambda d: held_page_matches(d, demo))
    assert any(date_of(day_of(e["observation"]["time"])).isoformat() < listed_from for e in page["entries"])
    check = next(c["check"] for c in page["entries"][0]["verdict"]["checks"] if c["fired"])
    assert words[f"reason.{check}"] in text_of(driver, "[data-testid=quarantined]")
    alerts = demo.get("/api/markets/alerts")
    assert any(a["code"].startswith("alps_") for a in alerts["alerts"]), "the generated shocks raise ALPS alerts"
    assert any(m["band"] != "normal" for m in demo.get("/api/markets/map")["markets"])
    driver.save_screenshot(str(tmp_path / "markets.png"))
    assert no_js_errors(driver) == []


def stale_marks(driver, market):
    """The markets page's stale and held marks, read in one step once no render is under way and the forecast of
    `market` is drawn with its sentence: the ALPS rows marked stale or held, the forecast's sentence and the
    market's map tooltip."""
    return driver.execute_script(
        "if (rendering || !STATE.data.markets || STATE.market !== arguments[0]) return null;"
        "const fc = document.querySelector('[data-testid=forecast-stale], [data-testid=forecast-held]');"
        "if (!fc) return null;"
        "const marker = document.querySelector(`[data-testid=map] [data-market='${arguments[0]}']`);"
        "const marks = (kind) => [...document.querySelectorAll('[data-testid=alps] tbody tr')].filter((r) =>"
        "  r.querySelector(`[data-testid=alps-${kind}]`)).map((r) => ({name: r.cells[0].textContent,"
        "  word: r.querySelector(`[data-testid=alps-${kind}]`).textContent,"
        "  title: r.querySelector(`[data-testid=alps-${kind}]`).getAttribute('title')}));"
        "return {rows: marks('stale'), held: marks('held'), forecast: fc.textContent,"
        " forecast_kind: fc.dataset.testid, tip: marker ? marker.getAttribute('aria-label') : null, lang: STATE.lang};",
        market) or False


def test_a_series_whose_data_is_old_is_shown_stale_in_both_languages(demo, driver, tmp_path):
    # In the demo some series' last accepted price is days old. A market that stopped reporting is stale; one
    # whose reports after a shock wait for an operator (alone in its province, nobody vouches for the move) is
    # held, not stale: the hub says which in their map band, live price and forecast, and the page says so
    # beside each of them, in Indonesian and in English, and beside no other series.
    commodity = "cabai-merah"  # the page's first commodity
    shown = demo.get("/api/markets/map")["markets"]
    bands = [a for m in shown for a in m["alps"] if a["commodity"] == commodity]
    # A series with too few weeks of accepted prices has no ALPS band: the map lists it apart, held or stale too.
    # Whether the demo's day leaves one held before it had a band depends on when its backlogs are judged; the map
    # lists every live series either way (below).
    unbanded = [a for m in shown for a in m["unbanded"] if a["commodity"] == commodity]
    assert all(a["no_band"].startswith("ALPS: expected at least") for a in unbanded)
    stale = {a["market"]: a["days_since_report"] for a in bands + unbanded if a["stale"]}
    held = {a["market"]: a for a in bands + unbanded if a["held"]}
    assert held and len(stale) + len(held) < len(bands) + len(unbanded), "the demo has chilli series held and current"
    assert not stale.keys() & held.keys()
    live = demo.get(f"/api/markets/live?commodity={commodity}")["prices"]
    assert sorted(p["market"] for p in live) == sorted(a["market"] for a in bands + unbanded)
    assert {p["market"] for p in live if p["stale"]} == set(stale)
    assert {p["market"] for p in live if p["held"]} == set(held)
    market = min(held)
    fresh = demo.get(f"/api/markets/forecast/{commodity}?market={market}")["freshness"]
    # Its last accepted price is older than a stale series' (it was shown stale before held was told apart).
    assert fresh["held"] and not fresh["stale"] and fresh["days_since"] == held[market]["days_since_report"] > 3
    assert fresh["held_reports"] == held[market]["held_reports"] and fresh["held_since"] == held[market]["held_since"]
    silent = min(a["market"] for a in bands if not a["stale"] and not a["held"])
    load(driver, demo, "markets", "[data-testid=price-chart]")
    for lang, word, ago, held_word in (("id", "data lama", "hari lalu", "ditahan untuk diperiksa"),
                                       ("en", "stale data", "days ago", "held for checking")):
        driver.execute_script(f"localStorage.setItem('jejak.lang', '{lang}')")
        driver.refresh()
        WebDriverWait(driver, 15).until(lambda d, lang=lang: d.execute_script("return STATE.lang") == lang)
        WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.ID, "market")))
        Select(driver.find_element(By.ID, "market")).select_by_value(market)
        WebDriverWait(driver, 20).until(lambda d: stale_marks(d, market))
        # Close enough that the market has a marker of its own, not a group's.
        m = MARKETS_BY_ID[market]
        driver.execute_script(f"MAP.map.setView([{m.latitude}, {m.longitude}], 11, {{animate: false}})")
        seen = WebDriverWait(driver, 20).until(lambda d: (s := stale_marks(d, market)) and s["tip"] and s)
        assert seen["lang"] == lang
        names = {MARKETS_BY_ID[k].name: days for k, days in stale.items()}
        assert sorted(r["name"] for r in seen["rows"]) == sorted(names), seen["rows"]
        for row in seen["rows"]:
            assert row["word"] == word and f"{names[row['name']]} {ago}" in row["title"], row
        held_names = {MARKETS_BY_ID[k].name: a for k, a in held.items()}
        assert sorted(r["name"] for r in seen["held"]) == sorted(held_names), seen["held"]
        for row in seen["held"]:
            a = held_names[row["name"]]
            assert row["word"] == held_word and a["held_since"] in row["title"], row
            assert f"{a['held_reports']} {'laporan' if lang == 'id' else 'in all'}" in row["title"], row
        assert seen["forecast_kind"] == "forecast-held" and seen["forecast"] == fresh["words"][lang]
        # The tooltip names each of the market's commodities: this one's says held, not stale.
        mine = tip_part(seen["tip"], commodity)
        assert f"({held_word})" in mine and word not in mine, seen["tip"]
        driver.save_screenshot(str(tmp_path / f"stale-{lang}.png"))
        # Every demo market keeps reporting: a current one is made silent in the page's answers, as the hub
        # answers for a market silent six days (tests/markets/test_staleness.py), and the page says stale there.
        driver.execute_script(SILENT_JS, silent)
        Select(driver.find_element(By.ID, "market")).select_by_value(silent)
        m = MARKETS_BY_ID[silent]
        driver.execute_script(f"MAP.map.setView([{m.latitude}, {m.longitude}], 11, {{animate: false}})")
        seen = WebDriverWait(driver, 20).until(lambda d: (s := stale_marks(d, silent)) and s["tip"] and s)
        assert [(r["name"], r["word"]) for r in seen["rows"]] == [(m.name, word)]
        assert f"6 {ago}" in seen["rows"][0]["title"]
        assert seen["forecast_kind"] == "forecast-stale" and seen["forecast"].startswith(
            {"id": "Data lama: laporan terakhir 2026-02-24 (6 hari lalu)",
             "en": "Stale data: last report 2026-02-24 (6 days ago)"}[lang]), seen["forecast"]
        mine = tip_part(seen["tip"], commodity)
        assert f"({word})" in mine and held_word not in mine, seen["tip"]
        assert sorted(r["name"] for r in seen["held"]) == sorted(held_names)
    assert no_js_errors(driver) == []


def tip_part(tip: str, commodity: str) -> str:
    """What a market marker's tooltip ("Pasar X (City); beras-medium: normal; cabai-merah: normal (data lama)")
    says of one commodity."""
    parts = [p for p in tip.split("; ") if p.startswith(f"{commodity}: ")]
    assert len(parts) == 1, tip
    return parts[0]


# The page's answers with `arguments[0]`'s chilli series as the hub gives a market silent since 24 February.
SILENT_JS = """
const market = arguments[0], orig = api;
api = async (path) => {
  const answer = await orig(path);
  if (path === "/api/markets/map") for (const m of answer.markets) for (const a of m.alps)
    if (a.market === market && a.commodity === "cabai-merah") Object.assign(a, { stale: true, days_since_report: 6 });
  if (path.startsWith("/api/markets/forecast/cabai-merah?market=" + market))
    Object.assign(answer.freshness, { stale: true, held: false, last_report: "2026-02-24", days_since: 6 });
  return answer;
};
"""


def held_page_matches(driver, demo, page: int = 0):
    """The held panel's rows, count and page, read in one step once no render is under way, when they are the
    hub's own page of its pending values (asked for right after): that page, else False."""
    shown = driver.execute_script(
        "if (rendering || !STATE.data.markets || !STATE.data.markets.h) return null;"
        "return {ids: [...document.querySelectorAll('[data-testid=quarantined] tbody tr')].map((r) => r.dataset.id),"
        " count: (document.querySelector('[data-testid=held-count]') || {}).textContent, page: STATE.qpage};")
    if not shown or shown["page"] != page:
        return False
    answer = demo.get(f"/api/markets/quarantine?state=pending&offset={page * 20}&limit=20")
    ids = [e["observation"]["id"] for e in answer["entries"]]
    return answer if shown["ids"] == ids and digits(shown["count"]) == answer["total"] else False


def test_long_lists_come_a_page_at_a_time(demo, driver):
    load(driver, demo, "markets", "[data-testid=price-chart]")
    total = demo.get("/api/markets/quarantine?state=pending&limit=1")["total"]
    assert total > 40, "the demo holds more than two pages of prices waiting for a decision"
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=pager-quarantined]"))
    first = WebDriverWait(driver, 15).until(lambda d: held_page_matches(d, demo))
    assert len(first["entries"]) == 20
    buttons = "[data-testid=pager-quarantined] button"
    for _ in range(10):  # a live record may re-render the page between finding the button and pressing it
        try:
            driver.find_elements(By.CSS_SELECTOR, buttons)[1].send_keys(Keys.ENTER)
            break
        except (StaleElementReferenceException, ElementNotInteractableException):
            continue
    # The second page is the hub's second page; "previous" leads back to the first.
    second = WebDriverWait(driver, 15).until(lambda d: held_page_matches(d, demo, 1))
    assert len(second["entries"]) == 20 and second["offset"] == 20
    previous = f"const b = document.querySelector('{buttons}'); return b && [b.dataset.to, b.disabled]"
    assert driver.execute_script(previous) == ["0", False]
    # Another commodity changes the chart, not the list of values waiting for a decision.
    other = next(o.get_attribute("value") for o in Select(driver.find_element(By.ID, "commodity")).options
                 if not o.is_selected())
    Select(driver.find_element(By.ID, "commodity")).select_by_value(other)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return !rendering && STATE.commodity") == other)
    WebDriverWait(driver, 15).until(lambda d: held_page_matches(d, demo, 1))
    assert driver.execute_script("return document.body.scrollHeight") < 6000


def test_findings_most_urgent_first_and_notices_folded_by_device_name(demo, driver):
    load(driver, demo, "mbg", "[data-testid=findings]")
    api = demo.get("/api/mbg/violations")["findings"]
    codes = [r.get_attribute("data-code") for r in driver.find_elements(By.CSS_SELECTOR, "[data-testid=findings] tbody tr")]
    food = {"cook_to_serve", "danger_zone", "hot_holding"}
    assert codes and codes[0] in food
    ranks = [0 if c in food else 1 if c in ("missing_delivery", "overdue_delivery") else 2 for c in codes]
    assert ranks == sorted(ranks)
    notices = [f for f in api if f["code"] in ("late_sync", "clock_skew", "duplicate_scan", "out_of_order")]
    assert notices and not set(codes) & {f["code"] for f in notices}
    assert driver.execute_script("return document.querySelector('[data-testid=notices]').open") is False
    # Opened by keyboard; a live re-render keeps it open.
    for _ in range(10):
        try:
            driver.find_element(By.CSS_SELECTOR, "[data-testid=notices] summary").send_keys(Keys.ENTER)
            break
        except StaleElementReferenceException:
            continue
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return document.querySelector('[data-testid=notices]').open"))
    text = text_of(driver, "[data-testid=notices]")
    names = demo.get("/api/mbg/names")["devices"]
    for f in notices:
        if f["code"] == "late_sync":
            assert names[f["subject"]]["name"] in text and f["subject"] not in text


class OneDevice:
    """A device holding its own log in memory, as the sync session sees it."""

    def __init__(self, records):
        self.records = records

    def heads(self):
        return [Head.of(ChainState(device_id=self.records[0].device_id, length=len(self.records),
                                   head=self.records[-1].id))]

    def log_range(self, device_id, start, end):
        return [r.raw for r in self.records[start:end]]

    def receive(self, device_id, raws):
        raise AssertionError("the device pushes only")


async def push_tap(demo, seed: bytes) -> str:
    """Enroll a new kitchen device over HTTP and push one sample tap over CoAP; return the record id."""
    status = demo.get("/api/status")
    now = demo.get("/api/demo")["sim_time"]
    signer = Ed25519Signer.from_seed(seed)
    req = make_enroll_request(signer, site="SPPG-0005", role="kitchen", name="test tap", time=now,
                              hub_id=bytes.fromhex(status["hub"]))
    http = urllib.request.Request(f"{demo.url}/api/enroll", data=req, method="POST")
    with urllib.request.urlopen(http, timeout=10) as resp:
        assert json.loads(resp.read())["status"] == "active"
    builder = ChainBuilder(signer, clock=lambda: now, boot=1)
    records = [builder.genesis(), builder.append("scan", {"event": "sample", "site": "SPPG-0005",
                                                          "checkpoint": "kitchen", "source": "nfc"})]
    ctx = await aiocoap.Context.create_client_context()
    try:
        report = await sync_once(ctx, demo.get("/api/demo")["coap"], OneDevice(records), pull=False)
    finally:
        await ctx.shutdown()
    assert report.pushed == 2, report.problems
    return records[-1].id.hex()


def test_new_tap_appears_live_without_reload(demo, driver, tmp_path):
    load(driver, demo, "mbg", "[data-testid=mbg-scans]")
    before = digits(text_of(driver, "[data-testid=mbg-scans] .n"))
    assert before == demo.get("/api/dashboard/summary")["total_scans_today"]
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "live").get_attribute("class") == "live on")
    driver.execute_script("window.__sameDocument = 'yes';")
    record_id = asyncio.run(push_tap(demo, b"\x42" * 32))
    WebDriverWait(driver, 15).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"#feed li[data-record='{record_id}']")))
    WebDriverWait(driver, 15).until(lambda d: digits(text_of(d, "[data-testid=mbg-scans] .n")) == before + 1)
    assert driver.execute_script("return window.__sameDocument") == "yes"
    assert demo.get("/api/dashboard/summary")["scans_today"]["sample"] >= 1
    driver.save_screenshot(str(tmp_path / "live.png"))


def test_language_toggle_and_phone_layout(demo, driver, tmp_path):
    load(driver, demo, "chain", "[data-testid=devices]")
    nav = driver.find_element(By.CSS_SELECTOR, "nav a[data-route=chain]")
    first = nav.text
    driver.find_element(By.ID, "lang").click()
    WebDriverWait(driver, 5).until(lambda d: nav.text != first)
    assert {first, nav.text} == {"Kesehatan rantai", "Chain health"}
    driver.set_window_size(390, 844)
    for route in ("chain", "mbg", "markets"):
        driver.get(f"{demo.url}/#/{route}")
        WebDriverWait(driver, 15).until(lambda d, r=route: d.find_element(By.ID, "view").get_attribute("data-route") == r)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{route}: page is {overflow}px wider than a phone screen"
    driver.save_screenshot(str(tmp_path / "phone.png"))


def test_numbers_are_written_the_readers_way_in_each_language(demo, driver):
    # Indonesian (the default) groups thousands with '.' and writes decimals after ',': 45,0 °C and 2.950;
    # English 45.0 °C and 2,950.
    cold = next(v for v in demo.get("/api/mbg/violations")["violations"] if v["unit"] == "cc")
    # A finding of a school the day does not list speaks from its own values: 2950 of 3000 portions.
    short = {"code": "short_delivery", "subject": "S-none", "date": "2026-03-02", "measured": 2950, "limit": 3000,
             "containers": [], "records": [], "severity": "alert", "detail": ""}
    load(driver, demo, "mbg", "[data-testid=findings]")
    for lang, point, group in (("id", ",", "."), ("en", ".", ",")):
        driver.execute_script(f"localStorage.setItem('jejak.lang', '{lang}')")  # the page's own origin
        driver.refresh()
        WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=findings]")))
        WebDriverWait(driver, 10).until(lambda d, lang=lang: d.execute_script("return STATE.lang") == lang)
        degrees = f"{cold['measured'] // 100}{point}{cold['measured'] % 100 // 10} °C"
        table = text_of(driver, "[data-testid=violations] table")
        assert degrees in table, (lang, degrees, table)
        said = driver.execute_script("return findingText(arguments[0])", short)
        assert f"2{group}950" in said and f"3{group}000" in said, (lang, said)
    assert no_js_errors(driver) == []


def test_english_findings_say_one_portion_and_one_container(demo, driver):
    # A finding of a school the day does not list speaks from its own values.
    def finding(code: str, n: int) -> dict[str, object]:
        return {"code": code, "subject": "S-none", "date": "2026-03-02", "measured": 0, "limit": n,
                "containers": [f"T{i}" for i in range(n)] if code == "misrouted" else [], "records": [],
                "other_school": "S-other", "severity": "alert", "detail": ""}

    load(driver, demo, "mbg", "[data-testid=findings]")
    driver.execute_script("localStorage.setItem('jejak.lang', 'en')")
    driver.refresh()
    WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=findings]")))
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return STATE.lang") == "en")

    def said(code: str, n: int) -> str:
        return str(driver.execute_script("return findingText(arguments[0])", finding(code, n)))

    assert said("short_delivery", 1).startswith("received 0 of 1 portion:"), said("short_delivery", 1)
    assert said("short_delivery", 2).startswith("received 0 of 2 portions:"), said("short_delivery", 2)
    assert "1 portion was due" in said("missing_delivery", 1) and "2 portions were due" in said("missing_delivery", 2)
    assert said("misrouted", 1).startswith("1 container bound for") and " was tapped in here" in said("misrouted", 1)
    assert said("misrouted", 2).startswith("2 containers bound for") and " were tapped in here" in said("misrouted", 2)
    assert no_js_errors(driver) == []


def test_a_staff_card_off_the_roster_is_said_in_both_languages(demo, driver):
    load(driver, demo, "mbg", "[data-testid=findings]")
    base = {"code": "staff_not_on_roster", "subject": "S-none", "date": "2026-03-02", "measured": 3, "limit": None,
            "containers": [], "records": ["r1", "r2", "r3"], "other_school": None, "severity": "warning",
            "detail": ""}

    def said(lang: str, other_kitchen: str | None) -> str:
        return str(driver.execute_script(
            "const kept = STATE.lang; STATE.lang = arguments[1];"
            "try { return findingText(arguments[0]); } finally { STATE.lang = kept; }",
            {**base, "other_kitchen": other_kitchen}, lang))

    assert said("en", "K-other") == "3 taps by staff of K-other, not on the roster of this delivery's kitchen"
    assert said("id", "K-other") == "3 tap oleh petugas K-other, yang tidak ada di daftar petugas dapur pengiriman ini"
    assert said("en", None).startswith("3 taps by staff cards on no kitchen's roster")
    assert said("id", None).startswith("3 tap dengan kartu petugas yang tidak ada di daftar petugas dapur mana pun")
    assert no_js_errors(driver) == []


def test_a_delivery_with_no_temperature_is_said_in_both_languages(demo, driver):
    load(driver, demo, "mbg", "[data-testid=findings]")
    base = {"code": "no_temperature", "subject": "S-none", "date": "2026-03-02", "measured": 1, "limit": 3,
            "containers": ["T3"], "records": ["r1"], "other_school": None, "other_kitchen": None,
            "severity": "warning", "detail": ""}

    def said(lang: str, **values: object) -> str:
        return str(driver.execute_script(
            "const kept = STATE.lang; STATE.lang = arguments[1];"
            "try { return findingText(arguments[0]); } finally { STATE.lang = kept; }", {**base, **values}, lang))

    assert said("en").startswith("no temperature reading for 1 of the 3 containers:"), said("en")
    assert said("id").startswith("suhu tidak tercatat untuk 1 dari 3 ompreng:"), said("id")
    every = {"measured": 2, "limit": 2, "containers": ["T1", "T2"]}
    assert said("en", **every).startswith("no temperature reading for any of the 2 containers:"), said("en", **every)
    assert said("id", **every).startswith("suhu tidak tercatat untuk semua 2 ompreng:"), said("id", **every)
    assert said("en", measured=1, limit=1).startswith("no temperature reading for the 1 container:")
    words = driver.execute_script("return {en: I18N.en['finding.no_temperature'], id: I18N.id['finding.no_temperature']}")
    assert words == {"en": "temperature not recorded", "id": "suhu tidak tercatat"}
    assert no_js_errors(driver) == []


def test_a_late_delivery_tapped_in_as_received_says_when_it_came(demo, driver):
    # A gate that taps only `received` has no arrival tap: its first tap in is when the meals came.
    load(driver, demo, "mbg", "[data-testid=findings]")
    midnight = 1_772_384_400  # 00:00 WIB, 2 March 2026
    row = {"school": "S-late", "date": "2026-03-02", "arrived_at": None, "received_at": midnight + 9 * 3600 + 25 * 60,
           "deadline_at": midnight + 9 * 3600, "departed_at": None, "expected": 40, "received_portions": 40,
           "shortfall": 0, "late_s": 25 * 60}
    finding = {"code": "late_delivery", "subject": "S-late", "date": "2026-03-02", "measured": 25 * 60, "limit": 0,
               "containers": [], "records": [], "other_school": None, "severity": "alert", "detail": ""}
    said = driver.execute_script(
        "const kept = STATE.deliveries; STATE.deliveries = {kitchens: [{schools: [arguments[0]]}]};"
        "try { return findingText(arguments[1]); } finally { STATE.deliveries = kept; }", row, finding)
    assert "09:25" in said and "09:00" in said, said


def test_cook_to_serve_findings_say_whether_the_meals_were_served(demo, driver):
    # A finding has no `open` of its own: its detail says how the timer stands, as `jejak mbg` reads it.
    load(driver, demo, "mbg", "[data-testid=findings]")
    driver.execute_script("localStorage.setItem('jejak.lang', 'en')")
    driver.refresh()
    WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=findings]")))
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return STATE.lang") == "en")
    base = {"code": "cook_to_serve", "subject": "S-none", "date": "2026-03-02", "measured": 6 * 3600 + 55 * 60,
            "limit": 4 * 3600, "containers": ["T1"], "records": [], "other_school": None, "severity": "alert"}

    def said(detail: str) -> str:
        return str(driver.execute_script("return findingText(arguments[0])", {**base, "detail": detail}))

    assert "1 container not served yet" in said("time from cook-end to serving: measured 24900 s, limit 14400 s (still open)")
    assert "1 container arrived at school 6 h 55 min after cooking" in said(
        "time from cook-end to arrival at school (not tapped served): measured 24900 s, limit 14400 s")
    assert said("time from cook-end to serving: measured 24900 s, limit 14400 s").startswith(
        "1 container served 6 h 55 min after cooking")
    # Meals served late and not served yet are findings of their own, each with its count.
    unserved = driver.execute_script("return findingText(arguments[0])",
                                     {**base, "part": "not_served", "containers": ["T3", "T4"], "detail": ""})
    assert unserved.startswith("2 containers not served yet, 6 h 55 min since cooking"), unserved


def test_temperature_findings_say_whether_the_meals_were_served(demo, driver):
    # A served meal that sat in the danger zone and meals still in it are findings of their own, each with its
    # count; a day stored before they were has one finding of both, said without a count.
    load(driver, demo, "mbg", "[data-testid=findings]")
    zone = {"code": "danger_zone", "subject": "S-none", "date": "2026-03-02", "measured": 2 * 3600 + 30 * 60,
            "limit": 2 * 3600, "containers": ["T1"], "records": [], "other_school": None, "severity": "alert",
            "detail": ""}
    cold = {**zone, "code": "hot_holding", "measured": 4500, "limit": 6000}

    def said(lang: str, f: dict, part: str | None, containers: list[str]) -> str:
        return str(driver.execute_script(
            "const kept = STATE.lang; STATE.lang = arguments[1];"
            "try { return findingText(arguments[0]); } finally { STATE.lang = kept; }",
            {**f, "part": part, "containers": containers}, lang))

    assert said("en", zone, "served", ["T1"]) == "1 container served after 2 h 30 min between 5 and 60 °C, limit 2 h 0 min"
    assert said("en", zone, "not_served", ["T2", "T3"]).startswith("2 containers not served yet, 2 h 30 min between")
    assert said("id", zone, "not_served", ["T2", "T3"]).startswith(
        "2 ompreng belum disajikan, sudah 2 jam 30 menit di antara 5 dan 60 °C")
    assert said("en", cold, "served", ["T1"]).startswith("1 container served after cooling to 45.0 °C")
    assert said("id", cold, "not_served", ["T2", "T3"]).startswith("2 ompreng belum disajikan, suhunya turun ke 45,0 °C")
    assert said("en", zone, None, ["T1", "T2", "T3"]) == "2 h 30 min between 5 and 60 °C, limit 2 h 0 min"
    assert no_js_errors(driver) == []


def test_a_history_step_on_another_day_says_which(demo, driver):
    # Empties back at 00:20 close the day before's trip: the history says the step was a day later.
    load(driver, demo, "mbg", "[data-testid=findings]")
    midnight = 1_772_384_400  # 00:00 WIB, 2 March 2026
    said = driver.execute_script("return [hhmmOn(arguments[0], '2026-03-02'), hhmmOn(arguments[1], '2026-03-02')]",
                                 midnight + 8 * 3600, midnight + 24 * 3600 + 20 * 60)
    assert said[0] == "08:00" and said[1].startswith("00:20 (+1 "), said


def page_says(driver, findings: list[dict[str, object]], lang: str) -> list[str]:
    """The page's sentence for each finding in `lang` (`findingText`), the page's own language left as it was."""
    return driver.execute_script(
        "const kept = STATE.lang; STATE.lang = arguments[1];"
        "try { return arguments[0].map((f) => findingText(f)); } finally { STATE.lang = kept; }", findings, lang)


def test_a_closed_schools_meals_a_gate_that_missed_a_delivery_rereads_and_cooled_meals_are_said_as_jejak_mbg_says(
        demo, driver):
    """The finding words `jejak mbg` and the page share (words.json): a school closed that day that got meals anyway
    (status `unplanned`, over_receipt with limit 0), a delivery with no tap in whose containers came back, a container
    read three times, meals below 60 °C. The page shows them in its findings and deliveries tables, and says every
    finding, in both languages, with the very sentence `jejak mbg` prints for it (the same key and values)."""
    from tools.mbg import Speaker, load_words

    t1, t2, t3 = "04a1000000000001", "04a1000000000002", "04a1000000000003"
    template = demo.get("/api/mbg/deliveries")["kitchens"][0]["schools"][0]
    date = template["date"]
    closed = {**template, "school": "S-closed", "school_name": "SDN Libur", "status": "unplanned",
              "statuses": ["unplanned"], "expected": 0, "departed_portions": 30, "received_portions": 20,
              "shortfall": 0, "containers_out": 3, "containers_in": 2, "late_s": 0}
    untapped = {**template, "school": "S-untapped", "school_name": "SDN Gerbang", "status": "missing",
                "statuses": ["missing"], "expected": 20, "departed_portions": 20, "received_portions": 0,
                "shortfall": 20, "containers_out": 3, "containers_in": 0, "arrived_at": None, "received_at": None,
                "served_at": None, "late_s": 0}

    def finding(code: str, subject: str, severity: str, **values: object) -> dict[str, object]:
        return {"code": code, "subject": subject, "date": date, "severity": severity, "measured": None,
                "limit": None, "containers": [], "records": [], "other_school": None, "other_kitchen": None,
                "part": None, "detail": "", **values}

    shown = [finding("over_receipt", "S-closed", "warning", measured=20, limit=0),
             finding("missing_delivery", "S-untapped", "alert", measured=0, limit=20, containers=[t1, t2]),
             finding("returned_without_arrival", "S-untapped", "warning", measured=2, limit=3, containers=[t1, t2]),
             finding("hot_holding", "S-closed", "alert", measured=5500, limit=6000, containers=[t1], part="served"),
             finding("hot_holding", "S-closed", "alert", measured=5500, limit=6000, containers=[t1, t2],
                     part="not_served")]
    # Data-quality notices fold into one line per kind: each way a reread is said is asked of the page's sentence.
    rereads = [finding("duplicate_scan", "S-untapped", "info", measured=2, containers=[t1], records=["r1", "r2"]),
               finding("duplicate_scan", "S-untapped", "info", measured=2, containers=[t1, t2]),
               finding("duplicate_scan", "S-untapped", "info", measured=3, containers=[t1, t2]),
               finding("duplicate_scan", "S-untapped", "info", containers=[t1, t2, t3]),  # a day stored before
               finding("duplicate_scan", "S-untapped", "info", measured=2, records=["r1", "r2"]),
               finding("duplicate_scan", "S-untapped", "info", measured=1, records=["r1"]),
               finding("hot_holding", "S-closed", "alert", measured=5500, limit=6000, containers=[t1, t2])]
    rows = {d["school"]: d for d in (closed, untapped)}
    names = demo.get("/api/mbg/names")

    def cli(lang: str, f: dict[str, object]) -> str:
        return Speaker(lang=lang, names=names, words=load_words(lang)).finding(f, rows)

    assert [cli("en", f) for f in shown + rereads] == [
        "no delivery planned that day (school closed): 30 portions sent, 20 received",
        "no tap at the gate; 2 of its 3 containers came back to the kitchen, so it was most likely delivered "
        "untapped: check with the school",
        "2 of the 3 containers not tapped in here came back to the kitchen: most likely delivered but not tapped",
        "1 container served after cooling to 55.0 °C, must stay at 60.0 °C or above until served",
        "2 containers not served yet, cooled to 55.0 °C, must stay at 60.0 °C or above until served",
        "1 container read 3 times; counted once",
        "2 containers read twice; counted once",
        "2 containers tapped again, 3 extra reads; counted once",
        "3 containers read twice; counted once",
        "2 count taps read again; counted once",
        "1 count tap read again; counted once",
        "55.0 °C, must stay at 60.0 °C or above until served"]

    # The page asks the hub through api(): its deliveries and findings get these rows too.
    load(driver, demo, "mbg", "[data-testid=findings]")
    driver.execute_script("""
        const [rows, findings] = arguments, asked = api;
        window.api = async (path) => {
          const body = await asked(path);
          if (path.startsWith("/api/mbg/deliveries")) {
            body.kitchens[0].schools.push(...rows);
            for (const counts of [body.totals, body.kitchens[0].counts]) {
              counts.unplanned = (counts.unplanned || 0) + 1;
              counts.missing = (counts.missing || 0) + 1;
            }
            window.asked = {totals: body.totals, kitchen: body.kitchens[0].counts};
          }
          if (path.startsWith("/api/mbg/violations")) body.findings.push(...findings);
          return body;
        };""", [closed, untapped], shown)
    for lang in ("en", "id"):
        driver.execute_script("STATE.lang = arguments[0]; render();", lang)
        # Shown once a render in this language has the rows (a live record may re-render the page meanwhile).
        WebDriverWait(driver, 15).until(lambda d, lang=lang: d.execute_script(
            "const tr = document.querySelector('[data-testid=findings] tr[data-code=over_receipt][data-subject=S-closed]');"
            "return document.getElementById('view').dataset.lang === arguments[0] && !!tr"
            " && tr.textContent.includes(arguments[1])", lang, cli(lang, shown[0])))
        said = driver.execute_script("return arguments[0].map((f) => findingText(f))", shown + rereads)
        assert said == [cli(lang, f) for f in shown + rereads], lang
        details = [text_of(driver, f"[data-testid=findings] tr[data-code={f['code']}][data-subject={f['subject']}]")
                   for f in shown[:3]]
        for f, row in zip(shown[:3], details, strict=True):
            assert cli(lang, f) in row, (lang, row)
        cooled = driver.execute_script(
            "return [...document.querySelectorAll('[data-testid=findings] tr[data-code=hot_holding][data-subject=S-closed]')]"
            ".map((r) => r.textContent)")
        assert [any(cli(lang, f) in text for text in cooled) for f in shown[3:]] == [True, True], (lang, cooled)
        # The closed school's row: its status in words, coloured as a warning, and no deadline it could miss.
        row = driver.execute_script("""
            const tr = [...document.querySelectorAll('[data-testid^=kitchen-] tbody tr')]
              .find((r) => r.textContent.includes('SDN Libur'));
            const badge = tr.querySelector('.badge'), late = document.createElement('span');
            late.className = 'badge late';  // a warning's colour, as app.css gives it
            badge.parentNode.appendChild(late);
            const colour = (el) => getComputedStyle(el).backgroundColor;
            const out = {status: badge.textContent, cls: badge.className, warning: colour(badge) === colour(late),
                         due: tr.querySelector('td[data-h^="' + I18N[STATE.lang].deadline + ' ("]').textContent};
            late.remove();
            return out;""")
        assert row == {"status": load_words(lang)["status.unplanned"], "cls": "badge unplanned", "warning": True,
                       "due": "–"}, row
        # The cards count every status the day has, the unplanned delivery among them, and the kitchen's row too:
        # the four usual ones always, any other only when there is one.
        cards = driver.execute_script("""
            const n = (sel) => { const el = document.querySelector(sel); return el && el.textContent; };
            const kitchen = document.querySelector('[data-testid^=kitchen-]').dataset.testid.slice(8);
            return {asked: window.asked, unplanned: n('[data-testid=mbg-unplanned]'),
                    missing: n('[data-testid=mbg-missing] .n'), overdue: n('[data-testid=mbg-overdue]'),
                    k_unplanned: n(`[data-testid=k-${kitchen}-unplanned]`)}""")
        asked = cards.pop("asked")
        totals = asked["totals"]
        assert cards == {"unplanned": f"{totals['unplanned']}{load_words(lang)['status.unplanned']}",
                         "missing": str(totals["missing"]), "k_unplanned": str(asked["kitchen"]["unplanned"]),
                         "overdue": (f"{totals['overdue']}{load_words(lang)['status.overdue']}"
                                     if totals.get("overdue") else None)}, (lang, cards, totals)
    assert no_js_errors(driver) == []


def test_a_wit_schools_times_are_said_at_its_own_time_as_jejak_mbg_says(demo, driver):
    """A plan in WIB with a kitchen and a school in Papua (WIT, UTC+9), and a WIT school served by a WIB kitchen. The
    page says each delivery's times at its school's time, as `jejak mbg` does: a WIT school's 09:00 deadline is 09:00,
    not 07:00. A table whose rows share one zone names it in its heading ("Due (WIT)"); one whose rows are in
    different zones says "(local time)" and each time names its own ("09:00 WIT"). The finding sentences, the
    container history and the stock card are said the same way, in both languages, with the words of `jejak mbg`."""
    from tools.mbg import Speaker, load_words

    kitchens = demo.get("/api/mbg/deliveries")["kitchens"]
    template, home = kitchens[0]["schools"][0], kitchens[0]["kitchen"]
    date = template["date"]
    nine_wit = int(dt.datetime.fromisoformat(f"{date}T09:00+09:00").timestamp())  # 07:00 WIB
    late = {**template, "status": "late", "statuses": ["late"], "expected": 40, "departed_portions": 40,
            "received_portions": 40, "shortfall": 0, "departed_at": nine_wit - 3600, "arrived_at": nine_wit + 25 * 60,
            "received_at": nine_wit + 26 * 60, "served_at": None, "deadline_at": nine_wit, "late_s": 25 * 60}
    papua = {**late, "school": "S-papua", "school_name": "SDN Jayapura", "kitchen": "K-papua"}  # a WIT kitchen's
    sorong = {**late, "school": "S-sorong", "school_name": "SDN Sorong", "kitchen": home}  # of the WIB kitchen
    names = demo.get("/api/mbg/names")
    wit = 9 * 3600
    assert names["schools"][template["school"]]["tz_offset_s"] == 7 * 3600  # the demo's schools keep WIB
    names["kitchens"]["K-papua"] = {"name": "Dapur Jayapura", "tz_offset_s": wit}
    for d in (papua, sorong):
        names["schools"][d["school"]] = {"name": d["school_name"], "kitchen": d["kitchen"], "portions": 40,
                                         "deadline_s": 9 * 3600, "tz_offset_s": wit}
    findings = [{"code": "late_delivery", "subject": d["school"], "date": date, "severity": "warning",
                 "measured": 25 * 60, "limit": 0, "containers": [], "records": [], "other_school": None,
                 "other_kitchen": None, "part": None, "detail": ""} for d in (papua, sorong)]

    load(driver, demo, "mbg", "[data-testid=findings]")
    driver.execute_script("""
        const [names, papua, sorong, findings] = arguments, asked = api;
        window.api = async (path) => {
          const body = await asked(path);
          if (path === "/api/mbg/names") return names;
          if (path.startsWith("/api/mbg/deliveries")) {
            body.kitchens[0].schools.push(sorong);
            body.kitchens.push({kitchen: "K-papua", name: "Dapur Jayapura", date: papua.date,
                                counts: {on_time: 0, late: 1, short: 0, missing: 0}, schools: [papua]});
            window.asked = {kitchens: body.kitchens};
          }
          if (path.startsWith("/api/mbg/violations")) body.findings.push(...findings);
          if (path.startsWith("/api/mbg/containers/")) {
            // The container's history gets a step at the WIT school: its steps are in two zones.
            const x = body.timelines[0];
            x.steps.push({...x.steps[x.steps.length - 1], event: "received", site: "S-papua", time: papua.received_at,
                          derived: false, temp_cc: null});
            window.askedTimeline = x;
          }
          if (path.startsWith("/api/mbg/stock")) window.askedStock = body;
          return body;
        };""", names, papua, sorong, findings)
    rows = {d["school"]: d for d in (papua, sorong)}
    for lang in ("en", "id"):
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        driver.execute_script("STATE.lang = arguments[0]; render();", lang)
        WebDriverWait(driver, 15).until(lambda d, lang=lang: d.execute_script(
            "return document.getElementById('view').dataset.lang === arguments[0]"
            " && !!document.querySelector('[data-testid=kitchen-K-papua]')"
            " && !!document.querySelector('[data-testid=findings] tr[data-code=late_delivery][data-subject=S-papua]')",
            lang))
        shown = driver.execute_script("""
            const tables = {};
            for (const panel of document.querySelectorAll('[data-testid^=kitchen-]')) {
              const heads = [...panel.querySelectorAll('th')].map((th) => th.textContent);
              tables[panel.dataset.testid.slice(8)] = {heads, rows: Object.fromEntries([...panel.querySelectorAll('tbody tr')]
                .map((tr) => [tr.cells[0].textContent, [...tr.cells].map((td) => td.textContent)]))};
            }
            const stock = document.querySelectorAll('.panel')[document.querySelectorAll('.panel').length - 1];
            const zone = document.querySelector('[data-testid=timeline-zone]');
            return {tables, zone: zone && zone.textContent,
                    steps: [...document.querySelector('[data-testid=timeline]').children].map((li) => li.textContent),
                    stockHead: stock.querySelector('th') && stock.querySelector('th').textContent,
                    stockTime: stock.querySelector('tbody td') && stock.querySelector('tbody td').textContent,
                    kitchens: window.asked.kitchens, timeline: window.askedTimeline, stock: window.askedStock,
                    said: arguments[0].map((f) => findingText(f)),
                    findings: arguments[0].map((f) => document.querySelector(
                      `[data-testid=findings] tr[data-code=late_delivery][data-subject=${f.subject}]`).textContent)};
            """, findings)
        # The WIT kitchen's table: one zone, named in its heading; its school's times at WIT.
        papua_table = shown["tables"]["K-papua"]
        assert papua_table["rows"]["SDN Jayapura"][5:7] == ["09:25", "09:00"], papua_table
        arrived, due = papua_table["heads"][5:7]
        assert (arrived, due) == (say.at("arrived", ["S-papua"]), say.at("due", ["S-papua"])), papua_table["heads"]
        assert due.endswith("(WIT)"), due
        # The WIB kitchen's table with a WIT school: "(local time)", and each time with its zone.
        home_table = shown["tables"][home]
        home_rows = next(k for k in shown["kitchens"] if k["kitchen"] == home)["schools"]
        sites = [d["school"] for d in home_rows]
        assert home_table["heads"][5:7] == [say.at("arrived", sites), say.at("due", sites)], home_table["heads"]
        assert home_table["heads"][6].endswith(f"({say('local_time')})"), home_table["heads"]
        assert home_table["rows"]["SDN Sorong"][5:7] == ["09:25 WIT", "09:00 WIT"], home_table
        for d in home_rows:  # the demo's WIB schools keep their WIB times, now saying WIB
            due_at = "–" if not d["expected"] and d["status"] == "unplanned" else say.clock(d["deadline_at"], d["school"], zoned=True)
            assert home_table["rows"][d["school_name"]][5:7] == [say.arrival(d, zoned=True), due_at], (d, home_table)
            if d["school"] != "S-sorong":
                wib = dt.datetime.fromtimestamp(d["deadline_at"], dt.timezone(dt.timedelta(hours=7)))
                assert due_at == f"{wib:%H:%M} WIB", due_at
        # The findings: the very sentence `jejak mbg` prints, with the WIT school's 09:25 and 09:00.
        assert shown["said"] == [say.finding(f, rows) for f in findings], shown["said"]
        assert "09:25" in shown["said"][0] and "09:00" in shown["said"][0], shown["said"]
        assert all(s in row for s, row in zip(shown["said"], shown["findings"], strict=True)), shown["findings"]
        # The container history: its steps at the kitchen's WIB and the school's WIT, each time saying which.
        tl = shown["timeline"]
        steps = [s["site"] for s in tl["steps"]]
        assert shown["zone"] == say.at("time", steps) == f"{say('time')} ({say('local_time')})", shown["zone"]
        assert [say.clock_on(s["time"], tl["date"], s["site"], zoned=True) in li
                for s, li in zip(tl["steps"], shown["steps"], strict=True)] == [True] * len(steps), shown["steps"]
        assert any("09:26 WIT" in li for li in shown["steps"]), shown["steps"]
        # The stock card: its times at its kitchen's, the zone in the heading.
        card = shown["stock"]["cards"][0]
        assert shown["stockHead"] == say.at("time", [card["kitchen"]]), shown["stockHead"]
        assert shown["stockTime"] == say.clock(card["lines"][0]["time"], card["kitchen"]), shown["stockTime"]
    assert no_js_errors(driver) == []


def test_a_container_returned_days_late_is_said_as_jejak_mbg_says(demo, driver):
    """A container back days after its trip's day: how many days late and on which day, the same sentence on the page
    and in `jejak mbg`, in both languages."""
    from tools.mbg import Speaker, load_words

    load(driver, demo, "mbg", "[data-testid=findings]")
    names = demo.get("/api/mbg/names")
    back = 1773111600  # 2026-03-10 10:00 WIB
    base = {"code": "container_returned_late", "subject": "S-none", "date": "2026-03-02", "measured": 8,
            "limit": back, "containers": ["T3"], "records": ["r1"], "other_school": None, "other_kitchen": None,
            "part": None, "severity": "info", "detail": ""}
    shown = [base, {**base, "containers": ["T3", "T4"], "records": ["r1", "r2"], "measured": 2, "limit": back - 7 * 86400}]
    for lang in ("en", "id"):
        page = page_says(driver, shown, lang)
        cli = [Speaker(lang=lang, names=names, words=load_words(lang)).finding(f, {}) for f in shown]
        assert page == cli, (lang, page, cli)
    assert page == ["1 ompreng kembali ke dapur 8 hari terlambat, pada 2026-03-10",
                    "2 ompreng kembali ke dapur 2 hari terlambat, pada 2026-03-03"], page
    assert no_js_errors(driver) == []


def test_a_roster_entry_that_ended_or_had_not_begun_is_said_as_jejak_mbg_says(demo, driver):
    """A staff card on a kitchen's roster only until (or from) a time: its taps past that time are said with that
    time and no advice to add the card back, the same sentence on the page and in `jejak mbg`, in both languages."""
    from tools.mbg import Speaker, load_words

    load(driver, demo, "mbg", "[data-testid=findings]")
    names = demo.get("/api/mbg/names")
    ten = 1772420400  # 2026-03-02 10:00 WIB
    base = {"code": "staff_not_on_roster", "subject": "S-none", "date": "2026-03-02", "measured": 3, "limit": ten,
            "part": "until", "containers": [], "records": ["r1", "r2", "r3"], "other_school": None,
            "other_kitchen": None, "severity": "warning", "detail": ""}
    shown = [base, {**base, "part": "from", "measured": 1, "records": ["r1"], "limit": ten - 3600},
             {**base, "date": "2026-03-03"}, {**base, "date": "2026-03-05"}, {**base, "part": None, "limit": None}]
    for lang in ("en", "id"):
        page = page_says(driver, shown, lang)
        cli = [Speaker(lang=lang, names=names, words=load_words(lang)).finding(f, {}) for f in shown]
        assert page == cli, (lang, page, cli)
        assert "10:00" in page[0] and "09:00" in page[1], page
        assert ("(-1 day)" in page[2] and "(-3 days)" in page[3]) if lang == "en" else "(-3 hari)" in page[3], page
    assert no_js_errors(driver) == []


def test_a_stock_movement_in_a_unit_its_card_does_not_take_names_that_unit_as_jejak_mbg_does(demo, driver):
    """A use recorded in a unit the item's card does not take: the sentence names the card's unit, and the unit it
    was recorded in after it ("(recorded as 2 Ikat)"), the same on the page and in `jejak mbg`."""
    from tools.mbg import Speaker, load_words

    load(driver, demo, "mbg", "[data-testid=findings]")
    card = demo.get("/api/mbg/stock")["on_hand"][0]
    subject = f"{card['kitchen']}/{card['item']}"
    f = {"code": "stock_unit_mismatch", "subject": subject, "date": "2026-03-02", "severity": "warning",
         "measured": 2, "limit": None, "containers": [], "records": ["r1"], "other_school": None,
         "other_kitchen": None, "part": None,
         "detail": f"use of 2 Ikat on a card kept in {card['unit']}: record it again in {card['unit']}"}
    for lang in ("en", "id"):
        [page] = page_says(driver, [f], lang)
        cli = Speaker(lang=lang, names=demo.get("/api/mbg/names"), words=load_words(lang)).finding(
            f, {}, {subject: card["unit"]})
        assert page == cli, (lang, page, cli)
        assert page.endswith(f"({load_words(lang)['recorded_as'].format(amount='2 Ikat')})"), page
    assert no_js_errors(driver) == []


def test_a_return_closing_a_trip_the_hub_no_longer_holds_says_which_trip(demo, driver):
    """A container back days late whose trip is beyond the days the hub holds: its history has the return alone,
    and says which trip it closes, in the words `jejak mbg` uses."""
    from tools.mbg import load_words

    load(driver, demo, "mbg", "[data-testid=timeline]")
    driver.execute_script("""
        const asked = api;
        window.api = async (path) => {
          const body = await asked(path);
          if (path.startsWith("/api/mbg/containers/")) body.timelines[0].closes = "2026-03-02";
          return body;
        };""")
    for lang in ("en", "id"):
        driver.execute_script("STATE.lang = arguments[0]; render();", lang)
        said = load_words(lang)["closes_trip"].format(date="2026-03-02")
        WebDriverWait(driver, 15).until(lambda d, said=said: d.execute_script(
            "const el = document.querySelector('[data-testid=timeline-closes]'); return !!el && el.textContent === arguments[0]",
            said))
    assert no_js_errors(driver) == []
