"""The chain page of a hub with more devices than a page: the count of all of them, one page of rows at a time,
Next and Previous following the hub's `next` cursor (headless Chromium)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import lmdb
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hub.app import start_hub
from hub.bridges import BridgeConfig
from hub.config import HubConfig
from hub.lastsigned import OlderStore
from hub.service import Hub
from hub.store import DeviceInfo, LmdbHubStore
from ledger import Ed25519Signer, sign_checkpoint
from tests.hub.conftest import Clock, enroll, new_device

from .harness import browser, digits

DEVICES = 230
# Read in one script, so a re-render between reads cannot mix two pages.
PAGE = """const pager = document.querySelector('[data-testid=pager-devices]');
return [[...document.querySelectorAll('[data-testid=devices] tbody tr [data-testid^=len-]')].map((e) => e.dataset.testid.slice(4)),
        pager ? pager.querySelector('span').textContent : '', pager ? !pager.querySelectorAll('button')[1].disabled : false];"""


def _press(driver, which: int) -> None:
    for _ in range(10):  # a re-render may replace the button between finding it and pressing it
        try:
            driver.find_elements(By.CSS_SELECTOR, "[data-testid=pager-devices] button")[which].click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError("the pager's button kept going stale")


def _walk(url: str) -> list[tuple[list[str], str, bool]]:
    """Each page the dashboard shows from the first to the last and back one: (devices, pager text, Next on)."""
    driver, close = browser()
    try:
        driver.get(f"{url}/#/chain")
        shown: list[tuple[list[str], str, bool]] = []

        def page() -> tuple[list[str], str, bool]:
            rows, text, nxt = driver.execute_script(PAGE)
            return rows, text, nxt

        WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=pager-devices]"))
        count = "return document.querySelector('[data-testid=chain-devices] .n').textContent"
        assert digits(driver.execute_script(count)) == DEVICES
        shown.append(page())
        while shown[-1][2]:
            _press(driver, 1)
            WebDriverWait(driver, 10).until(lambda d: page()[0] and page()[0] != shown[-1][0])
            shown.append(page())
        _press(driver, 0)
        WebDriverWait(driver, 10).until(lambda d: page()[0] and page()[0] != shown[-1][0])
        shown.append(page())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        return shown
    finally:
        close()


async def test_the_chain_page_shows_a_national_hubs_devices_a_page_at_a_time(tmp_path):
    clock = Clock()
    store = LmdbHubStore(tmp_path / "store", durable=False)
    for i in range(DEVICES):
        store.put_device(DeviceInfo(device_id=i.to_bytes(2, "big") * 8, pubkey=bytes(32), site=f"sppg-{i:03d}",
                                    role="kitchen_exit", status="active"))
    everyone = sorted(d.device_id.hex() for d in store.devices())
    hub = Hub(store, Ed25519Signer.from_seed(b"\x71" * 32), clock=clock)
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0,
                                        coap_port=0, mdns=False), hub=hub)
    try:
        shown = await asyncio.to_thread(_walk, running.http_url)
    finally:
        await running.close()
    pages = [rows for rows, _, _ in shown[:-1]]
    assert [len(rows) for rows in pages] == [100, 100, 30]
    assert [d for rows in pages for d in rows] == everyone, "every device once, in device id order"
    assert [text for _, text, _ in shown] == ["Halaman 1 dari 3", "Halaman 2 dari 3", "Halaman 3 dari 3",
                                             "Halaman 2 dari 3"]
    assert shown[-1][0] == pages[1] and shown[-1][2], "Previous goes back to the page before"


def _read_chain_page(url: str, read: str, ready: Callable[[list[Any]], bool] = lambda _: True,
                     shown: str = "[data-testid=devices]") -> list[Any]:
    """What script `read` returns on the chain page once `shown` (its devices) is and `ready` holds for it; the
    page must log no error."""
    driver, close = browser()
    try:
        driver.get(f"{url}/#/chain")
        WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, shown)
                                        and ready(d.execute_script(read)))
        values: list[Any] = driver.execute_script(read)
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        return values
    finally:
        close()


def _counting_marks(url: str, marks: int) -> tuple[str, list[str], list[str]]:
    """The chain page once it shows `marks` devices marked as still being counted: the note above the devices
    (empty if none), the devices marked, and the i18n keys the page lacked."""
    read = """const note = document.querySelector('[data-testid=figures-counting]');
return [note ? note.textContent : '', [...document.querySelectorAll('[data-testid^=counting-]')].map(
  (e) => e.dataset.testid.slice(9)), [...window.__i18nMissing]];"""
    note, marked, missing = _read_chain_page(url, read, lambda values: len(values[1]) == marks)
    return note, marked, missing


async def test_the_chain_page_marks_the_figures_still_being_counted_after_an_upgrade(tmp_path):
    """A store from before the chain's figures (layout 1) opens at once and counts them in the background: until
    then the page says how many records are left and marks the devices whose records are not all counted."""
    clock = Clock()
    hub = Hub(LmdbHubStore(tmp_path / "store", durable=False), Ed25519Signer.from_seed(b"\x72" * 32), clock=clock)
    sent = []
    for n in (30, 0):
        signer, builder = new_device(clock)
        device_id = enroll(hub, signer, clock)
        if n:
            recs = [builder.genesis()] + [builder.append("note", {"text": str(i)}) for i in range(n)]
            assert hub.ingest(device_id, [r.raw for r in recs]).accepted == n + 1
            sent.append(device_id.hex())
    size = hub.store.size()
    hub.store.close()
    env = lmdb.open(str(tmp_path / "store"), max_dbs=32)
    with env.begin(write=True) as txn:  # what a release before the figures left
        for name in (b"activity", b"kinds", b"kind_index"):
            txn.drop(env.open_db(name, txn=txn), delete=True)
        txn.put(b"layout", b"1", db=env.open_db(b"meta", txn=txn))
    env.close()
    store = LmdbHubStore(tmp_path / "store", durable=False, index_behind=False)  # counted below, step by step
    hub = Hub(store, Ed25519Signer.from_seed(b"\x72" * 32), clock=clock)
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0,
                                        coap_port=0, mdns=False), hub=hub)
    try:
        note, marked, missing = await asyncio.to_thread(_counting_marks, running.http_url, 1)
        assert digits(note) == size == store.figures_from() and marked == sent and missing == []
        while store.count_older_figures(chunk=7):
            pass
        note, marked, missing = await asyncio.to_thread(_counting_marks, running.http_url, 0)
        assert note == "" and marked == [] and missing == []
    finally:
        await running.close()


def _stopped_note(url: str) -> tuple[str, str, list[str]]:
    """The chain page's note that signing stopped (its text and code; empty when none) and the i18n keys it
    lacked."""
    read = """const note = document.querySelector('[data-testid=signing-stopped]');
return [note ? note.querySelector('b').textContent : '', note ? note.querySelector('.mono').textContent : '',
        [...window.__i18nMissing]];"""
    text, code, missing = _read_chain_page(url, read)
    return text, code, missing


async def test_the_chain_page_says_when_the_hub_stopped_signing(tmp_path):
    """A device presented a checkpoint of this hub its store does not hold (the store is an older copy of the one
    it signed for): the hub signs no checkpoint until its operator acts, and the chain page says so, in the
    page's language, above the latest checkpoint."""
    clock = Clock()
    signer = Ed25519Signer.from_seed(b"\x73" * 32)
    hub = Hub(LmdbHubStore(tmp_path / "store", durable=False), signer, clock=clock)
    device, builder = new_device(clock)
    device_id = enroll(hub, device, clock)
    assert hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    assert hub.checkpoint() is not None
    running = await start_hub(HubConfig(bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path), http_port=0,
                                        coap_port=0, mdns=False), hub=hub)
    try:
        assert await asyncio.to_thread(_stopped_note, running.http_url) == ("", "", [])
        later = sign_checkpoint(signer, tree_size=len(hub.tree) + 5, root=bytes(32), time=clock())  # lost records'
        with pytest.raises(OlderStore):
            hub.witness(later.raw)
        assert hub.checkpoint(force=True) is None
        text, code, missing = await asyncio.to_thread(_stopped_note, running.http_url)
        assert text.startswith("Penandatanganan berhenti") and code == "HUB_STORE_OLDER" and missing == []
    finally:
        await running.close()


async def test_a_national_hubs_chain_page_shows_its_regions_and_why_one_fails(tmp_path):
    """A national hub follows one regional hub by its checkpoints and pulls another that does not answer: the chain
    page lists both with their state, says how many regions are in trouble, and for the one not answering why,
    since when and what to do, in the page's words (no key missing)."""
    import json
    import urllib.request

    from hub.app import load_or_create_key
    from hub.config import SecurityConfig
    from hub.tiers import Unreachable
    from tests.ports import free_coap
    from tests.wait import wait_until

    clock = Clock()
    port, dead = free_coap(), free_coap()
    national_key = load_or_create_key(tmp_path / "n" / "hub.key").public_key
    regional = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "r"), http_port=0, coap_port=port, mdns=False,
        checkpoint_interval=3600, security=SecurityConfig(oscore=True, peer_hubs=(national_key.hex(),))))
    signer, builder = new_device(clock)
    device_id = enroll(regional.hub, signer, clock)
    assert regional.hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
    assert regional.hub.checkpoint() is not None
    key = regional.hub.signer.public_key.hex()
    national = await start_hub(HubConfig(
        bridges=BridgeConfig(enabled=False), data_dir=str(tmp_path / "n"), http_port=0, coap_port=0, mdns=False,
        checkpoint_interval=0.2, upstream=(f"coap://127.0.0.1:{port} {key} checkpoints",
                                           f"coap://127.0.0.1:{dead} records")))

    def regions() -> dict[str, str] | None:  # from a thread: the hubs' loop goes on meanwhile
        with urllib.request.urlopen(national.http_url + "/api/regions", timeout=30) as response:
            shown = {r["url"]: r["state"] for r in json.loads(response.read())["regions"]}
        return shown if sorted(shown.values()) == ["followed", "unreachable"] else None

    read = """return [[...document.querySelectorAll('[data-testid=regions] tbody tr')].map((r) => [r.dataset.url,
  r.dataset.state, r.textContent]), document.querySelector('[data-testid=chain-regions] .n').textContent,
  document.querySelector('[data-testid=chain-regions]').className, [...window.__i18nMissing]];"""
    try:
        await asyncio.to_thread(wait_until, regions, 60, what="one region followed, the other unreachable")
        rows, troubled, card_class, missing = await asyncio.to_thread(
            _read_chain_page, national.http_url, read, lambda values: len(values[0]) == 2, "[data-testid=regions]")
    finally:
        await national.close()
        await regional.close()
    shown = {url: (state, text) for url, state, text in rows}
    followed, down = shown[f"coap://127.0.0.1:{port}"], shown[f"coap://127.0.0.1:{dead}"]
    assert followed[0] == "followed" and "diikuti lewat checkpoint-nya" in followed[1]
    assert "putaran" not in followed[1]  # no problem to say
    assert "ditandatangani" in followed[1]  # when the region signed the checkpoint held: a region that stopped
    # signing (its store restored from an older copy, say) shows an old time here
    assert down[0] == "unreachable" and "tidak menjawab" in down[1] and Unreachable.code in down[1]
    assert "tidak ada jawaban: periksa bahwa hub regional berjalan" in down[1]  # what the code means
    # since when and how many rounds; the hub's own message and hint behind "pesan hub"
    assert "putaran" in down[1] and "pesan hub" in down[1]
    assert "did not answer GET /sync/summary" in down[1] and "check that it runs" in down[1]
    assert (troubled, "bad" in card_class.split()) == ("1", True)
    assert missing == []
