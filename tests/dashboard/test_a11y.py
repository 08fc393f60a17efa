"""Every dashboard page in both languages, at a laptop's and a phone's size: axe-core (vendored from npm) finds no
serious or critical WCAG 2 A/AA violation, every string has its translation, and no English label leaks into
the Indonesian pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .harness import browser

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
ROUTES = ("chain", "mbg", "markets")
SIZES = ((1366, 768), (390, 844))


def open_page(driver, url: str, route: str, lang: str) -> None:
    driver.get(f"{url}/#/{route}")
    driver.execute_script("localStorage.setItem('jejak.lang', arguments[0])", lang)
    driver.refresh()
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "const v = document.getElementById('view');"
        "return v.dataset.route === arguments[0] && v.dataset.lang === arguments[1] && !v.querySelector('.empty.error')",
        route, lang))
    # Folded lists (data-quality notices, held prices) are checked open as well as closed.
    driver.execute_script("document.querySelectorAll('details').forEach((d) => { d.open = true; })")


def axe_violations(driver) -> list[dict]:
    driver.execute_script(AXE)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ': ' + n.failureSummary)}))))"
        ".catch((e) => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    return [v for v in result if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_no_serious_accessibility_violation_on_any_page(demo, width, height):
    driver, close = browser(width, height)
    driver.set_script_timeout(60)
    try:
        found = {}
        for lang in ("id", "en"):
            for route in ROUTES:
                open_page(driver, demo.url, route, lang)
                bad = axe_violations(driver)
                if bad:
                    found[f"{route}/{lang}"] = bad
                # The live feed in a busy hour, before any alert is open: it scrolls, with nothing in it to focus.
                driver.execute_script("document.getElementById('alerts-live').replaceChildren();"
                                      "const ul = document.getElementById('feed');"
                                      "for (let i = 0; i < 60; i++) { const li = document.createElement('li');"
                                      " li.textContent = 'event ' + i; ul.append(li); }")
                if bad := axe_violations(driver):
                    found[f"{route}/{lang} busy feed"] = bad
        assert found == {}
    finally:
        close()


def test_every_string_is_translated_and_no_english_leaks_into_indonesian(demo, driver):
    english = driver_words = None
    for lang in ("id", "en"):
        for route in ROUTES:
            open_page(driver, demo.url, route, lang)
            missing = driver.execute_script("return [...window.__i18nMissing]")
            assert missing == [], f"{route}/{lang}: no translation for {missing}"
            if lang != "id":
                continue
            if driver_words is None:
                driver_words = driver.execute_script("return {en: I18N.en, id: I18N.id}")
                ids = set(driver_words["id"].values())
                # Labels only English has (not also an Indonesian word, like "Status" or "MBG"): headings and
                # phrases; a lone lowercase word may be a device's or a commodity's own name ("kitchen_exit K1").
                english = {v for k, v in driver_words["en"].items()
                           if v not in ids and len(v) >= 6 and "{" not in v and not v.isupper()
                           and (" " in v or v[0].isupper())}
            text = driver.find_element(By.TAG_NAME, "body").text
            leaks = sorted(w for w in english if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text))
            assert leaks == [], f"{route}: English on the Indonesian page: {leaks}"
            # Statistics jargon stays out of the Indonesian pages.
            for jargon in ("hampel", "modified_z", "MAD", "z-score", "IQR", "late_sync", "hot_holding"):
                assert jargon not in text, f"{route}: {jargon!r} on the Indonesian page"
    assert driver_words is not None and set(driver_words["en"]) == set(driver_words["id"])


def test_keyboard_reaches_scroll_regions_map_and_pager(demo, driver):
    open_page(driver, demo.url, "markets", "id")
    regions = driver.find_elements(By.CSS_SELECTOR, "#view .scroll")
    assert regions and all(r.get_attribute("tabindex") == "0" for r in regions)
    focusable = driver.execute_script(
        "const els = [...document.querySelectorAll('a[href], button:not([disabled]), select, [tabindex]:not([tabindex=\"-1\"])')];"
        "return els.map((e) => e.closest('[data-testid=map]') ? 'map' : e.closest('.pager') ? 'pager' : e.className);")
    assert "map" in focusable, "the map's zoom buttons and groups are reachable by Tab"
    assert "pager" in focusable
