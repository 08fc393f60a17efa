"""Each dashboard page, loaded from a running demo hub in headless Chromium, shows the hub's own numbers."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiocoap
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from coap_server.sync import sync_once
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
    assert digits(text_of(driver, "[data-testid=chain-devices] .n")) == len(health["devices"])
    assert digits(text_of(driver, "[data-testid=chain-forks] .n")) == health["forks"]
    rows = driver.find_elements(By.CSS_SELECTOR, "[data-testid=devices] tbody tr")
    assert len(rows) == len(health["devices"])
    dev = max(health["devices"], key=lambda d: d["length"])
    assert digits(text_of(driver, f"[data-testid=len-{dev['device']}]")) == dev["length"]
    shown = digits(text_of(driver, "[data-testid=cp-size]"))
    assert 0 < shown <= health["size"]
    # The download button fetches an audit bundle that verifies offline against this hub's key.
    href = driver.find_element(By.ID, "export").get_attribute("href")
    with urllib.request.urlopen(href, timeout=30) as resp:
        data = resp.read()
    report = verify_bundle(data, hub_key=bytes.fromhex(demo.get("/api/status")["pubkey"]))
    assert report.ok, report.all_problems()[:3]
    assert len(decode_bundle(data).logs) == len(health["devices"])
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


def test_markets_page_marks_quarantine_impact_forecast_and_alps_map(demo, driver, tmp_path):
    load(driver, demo, "markets", "[data-testid=price-chart]")
    commodity = driver.find_element(By.ID, "commodity").get_attribute("value")
    prices = demo.get(f"/api/markets/prices?commodity={commodity}")
    n_obs = sum(len(s["points"]) for s in prices["series"])
    assert digits(text_of(driver, "[data-testid=obs-count]")) == n_obs
    marks = driver.find_elements(By.CSS_SELECTOR, "[data-testid=price-chart] g.quarantine")
    assert len(marks) == len(prices["quarantined"])
    dots = driver.find_elements(By.CSS_SELECTOR, "[data-testid=price-chart] circle.impact")
    assert len(dots) == len(prices["impact"])
    # Each impact dot carries the hub's score and dominant factor, and its tooltip the factor weights.
    shown = sorted((int(d.get_attribute("data-score")), d.get_attribute("data-dominant")) for d in dots)
    assert shown == sorted((i["score"], i["dominant"]) for i in prices["impact"])
    last = prices["impact"][-1]
    tip = dots[-1].get_attribute("data-tip")
    assert ("dominant" in tip or "dominan" in tip) and last["dominant"] in tip
    assert f"{max(last['weights'], key=last['weights'].get)} " in tip
    forecast = demo.get(f"/api/markets/forecast/{commodity}")
    means = [int(c.get_attribute("data-mean"))
             for c in driver.find_elements(By.CSS_SELECTOR, "[data-testid=forecast-chart] circle")]
    assert means == [p["mean"] for p in forecast["forecast"]]
    for market in demo.get("/api/markets/map")["markets"]:
        marker = driver.find_element(By.CSS_SELECTOR, f"[data-testid=map] g[data-market='{market['id']}']")
        assert marker.get_attribute("data-band") == market["band"]
    assert driver.find_elements(By.CSS_SELECTOR, "[data-testid=map] path.land")
    # Quarantined prices are listed with the validator's reasons, on the chart of their commodity.
    held = demo.get("/api/markets/prices")["quarantined"]
    assert held, "the generated reports include manipulated prices"
    Select(driver.find_element(By.ID, "commodity")).select_by_value(held[0]["commodity"])
    reason = held[0]["reasons"][0].split(":")[0]
    WebDriverWait(driver, 10).until(lambda d: reason in text_of(d, "[data-testid=quarantined]"))
    alerts = demo.get("/api/markets/alerts")
    assert any(a["code"].startswith("alps_") for a in alerts["alerts"]), "the generated shocks raise ALPS alerts"
    assert any(m["band"] != "normal" for m in demo.get("/api/markets/map")["markets"])
    driver.save_screenshot(str(tmp_path / "markets.png"))
    assert no_js_errors(driver) == []


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
