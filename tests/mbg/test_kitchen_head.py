"""What a kitchen head reads of a messy day: records of several devices taken in by a hub on its LMDB store, asked
through its HTTP API and `jejak mbg` (in its own process, Indonesian and English). Each test is one case of the
day, its expected answer worked out by hand."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from hub.app import RunningHub, start_hub
from hub.config import HubConfig, SecurityConfig
from hub.mbg import load_plan
from ledger import ChainBuilder, Ed25519Signer
from tests.hub.conftest import Clock, enroll
from tests.mbg.common import DATE, MIDNIGHT, H, M
from tests.mbg.test_messy_day import PLAN as K1_PLAN  # K1 feeds S1 and S2, 30 portions each, due 09:00

PLAN = K1_PLAN + '[[kitchens]]\nid = "K2"\nname = "SPPG Dua"\n[[schools]]\nid = "S4"\nkitchen = "K2"\nportions = 20\n'


@dataclass
class Kitchen:
    """A hub on a real LMDB store with the plan above, and the devices that tap for it."""

    running: RunningHub
    clock: Clock
    devices: dict[str, tuple[bytes, ChainBuilder]] = field(default_factory=dict)

    def device(self, name: str, site: str) -> tuple[bytes, ChainBuilder]:
        if name not in self.devices:
            signer = Ed25519Signer.from_seed(name.encode().ljust(32, b"."))
            device_id = enroll(self.running.hub, signer, self.clock, site=site)
            builder = ChainBuilder(signer, clock=self.clock, boot=1)
            assert self.running.hub.ingest(device_id, [builder.genesis().raw]).accepted == 1
            self.devices[name] = (device_id, builder)
        return self.devices[name]

    def record(self, name: str, kind: str, body: dict[str, Any], *, at: int, arrives: int | None = None) -> None:
        """A record made on `name` at `at` (its device time) and taken in by the hub at `arrives` (default: then)."""
        device_id, builder = self.device(name, body["site"])
        self.clock.now = at
        raw = builder.append(kind, body).raw
        self.clock.now = at if arrives is None else arrives
        assert self.running.hub.ingest(device_id, [raw]).accepted == 1

    def stock(self, item: str, movement: str, qty: int, unit: str, *, at: int, arrives: int | None = None) -> None:
        self.record("store", "stock", {"site": "K1", "item": item, "movement": movement, "qty": qty, "unit": unit},
                    at=at, arrives=arrives)

    def scan(self, name: str, event: str, site: str, *tags: str, at: int, **fields: Any) -> None:
        self.record(name, "scan", {"event": event, "site": site, "tags": list(tags), **fields}, at=at)

    async def api(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(f"{self.running.http_url}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json(content_type=None)

    async def jejak_mbg(self, *args: str, lang: str = "id") -> str:
        """`jejak mbg` as a kitchen head runs it, in its own process (the hub answers on this event loop)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tools.cli", "mbg", *args, "--hub-url", self.running.http_url, "--lang", lang,
            "--date", DATE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        return out.decode()


@pytest.fixture
async def kitchen(tmp_path) -> AsyncIterator[Kitchen]:
    (tmp_path / "plan.toml").write_text(PLAN)
    clock = Clock(MIDNIGHT + 4 * H)
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                       checkpoint_interval=3600, security=SecurityConfig(oscore=False))
    running = await start_hub(config, clock=clock, plan=load_plan(tmp_path / "plan.toml"))
    try:
        yield Kitchen(running, clock)
    finally:
        await running.close()


async def test_rice_received_by_the_kilogram_and_used_by_the_gram_is_one_stock(kitchen: Kitchen) -> None:
    kitchen.stock("beras", "receive", 50, "kg", at=MIDNIGHT + 5 * H)
    kitchen.stock("beras", "use", 3_000, "g", at=MIDNIGHT + 6 * H)
    kitchen.stock("minyak", "receive", 2, "liter", at=MIDNIGHT + 5 * H)
    kitchen.stock("minyak", "use", 500, "ml", at=MIDNIGHT + 6 * H)
    # A karung has no weight the record carries: 2 kg of sugar cannot come off a card kept in karung.
    kitchen.stock("gula", "receive", 1, "karung", at=MIDNIGHT + 5 * H)
    kitchen.stock("gula", "use", 2, "kg", at=MIDNIGHT + 6 * H)
    stock = {s["item"]: s for s in (await kitchen.api("/api/mbg/stock"))["on_hand"]}
    assert (stock["beras"]["on_hand"], stock["beras"]["unit"], stock["beras"]["flags"]) == (47_000, "g", [])
    assert (stock["minyak"]["on_hand"], stock["minyak"]["unit"], stock["minyak"]["flags"]) == (1_500, "ml", [])
    assert (stock["gula"]["on_hand"], stock["gula"]["unit"], stock["gula"]["flags"]) == (1, "karung", ["unit_mismatch"])
    said = await kitchen.jejak_mbg("stock")
    assert "47 kg" in said and "1,5 l" in said and "1 karung" in said, said
    findings = (await kitchen.api(f"/api/mbg/violations?date={DATE}"))["findings"]
    assert [(f["code"], f["subject"], f["measured"]) for f in findings] == [("stock_unit_mismatch", "K1/gula", 2)]
    said = await kitchen.jejak_mbg("violations")
    assert "satuan yang tidak bisa diubah ke karung" in said and "catat ulang dalam karung" in said, said
    assert "use of 2 kg on a card kept in karung" in findings[0]["detail"]


A1, A2, A3 = "04a1000000000001", "04a1000000000002", "04a1000000000003"
B1, B2, B3 = "04b2000000000001", "04b2000000000002", "04b2000000000003"


async def test_a_delivery_split_across_two_vehicles_is_late_by_its_later_one(kitchen: Kitchen) -> None:
    kitchen.scan("exit", "departed", "K1", A1, A2, A3, at=MIDNIGHT + 6 * H + 30 * M, school="S1")
    kitchen.scan("exit", "departed", "K1", B1, B2, at=MIDNIGHT + 6 * H + 35 * M, school="S2")
    kitchen.scan("gate1", "received", "S1", A1, A2, A3, at=MIDNIGHT + 7 * H)
    kitchen.scan("gate2", "arrived", "S2", B1, B2, at=MIDNIGHT + 7 * H + 5 * M)
    # The first truck had no room for B3: a second one takes it at 08:30 and reaches S2 at 09:20.
    kitchen.scan("exit", "departed", "K1", B3, at=MIDNIGHT + 8 * H + 30 * M, school="S2")
    kitchen.scan("gate2", "arrived", "S2", B3, at=MIDNIGHT + 9 * H + 20 * M)
    kitchen.clock.now = MIDNIGHT + 10 * H
    got = {d["school"]: d for k in (await kitchen.api(f"/api/mbg/deliveries?date={DATE}"))["kitchens"]
           for d in k["schools"]}
    assert (got["S1"]["statuses"], got["S1"]["late_s"]) == (["on_time"], 0)
    s2 = got["S2"]
    assert (s2["statuses"], s2["late_s"], s2["received_portions"], s2["arrived_at"]) == \
        (["late"], 20 * M, 30, MIDNIGHT + 7 * H + 5 * M)
    [late] = [f for f in (await kitchen.api(f"/api/mbg/violations?date={DATE}"))["findings"]
              if f["code"] == "late_delivery"]
    assert (late["subject"], late["measured"], late["containers"]) == ("S2", 20 * M, [B3])
    assert [d["school"] for d in (await kitchen.api(f"/api/mbg/late?date={DATE}"))["late"]] == ["S2"]
    said = await kitchen.jejak_mbg("deliveries")
    s2_line = next(x for x in said.splitlines() if "(S2)" in x)
    assert "terlambat +20 menit" in s2_line and "07:05, 09:20" in s2_line, said
    said = await kitchen.jejak_mbg("violations")
    assert "1 ompreng menyusul, tiba 09:20, batas 09:00: terlambat 20 menit; yang pertama tiba 07:05" in said, said
    said = await kitchen.jejak_mbg("late", lang="en")
    assert "07:05, 09:20" in said, said
    said = await kitchen.jejak_mbg("violations", lang="en")
    assert "1 container came later, at 09:20, due 09:00: 20 min late; the first came 07:05" in said, said


async def test_a_school_the_plan_does_not_list_yet_is_in_that_days_findings(kitchen: Kitchen) -> None:
    e1 = "04e5000000000001"
    # K1 cooks for S5, a school added to the plan only later that day: its exit names S5, S5's gate taps it in.
    kitchen.scan("exit", "departed", "K1", e1, at=MIDNIGHT + 7 * H, school="S5")
    kitchen.scan("gate5", "received", "S5", e1, at=MIDNIGHT + 7 * H + 30 * M)
    kitchen.clock.now = MIDNIGHT + 8 * H
    findings = (await kitchen.api(f"/api/mbg/violations?date={DATE}"))["findings"]
    assert [(f["code"], f["subject"], f["date"], f["measured"]) for f in findings
            if f["code"] == "unknown_site"] == [("unknown_site", "S5", DATE, 2)]
    said = await kitchen.jejak_mbg("violations")
    assert "2 tap di atau untuk lokasi yang tidak ada di rencana: tambahkan ke rencana bila memang dilayani" in said


async def test_eggs_used_before_their_receipt_was_entered_are_a_late_entry_not_an_overdraw(kitchen: Kitchen) -> None:
    # 06:00 the cook uses 60 eggs; the storekeeper enters the morning's 100 eggs only at 09:30.
    kitchen.stock("telur", "use", 60, "butir", at=MIDNIGHT + 6 * H)
    kitchen.stock("telur", "receive", 100, "butir", at=MIDNIGHT + 9 * H + 30 * M)
    # Rice used beyond what came, and no receipt covers it that day: still an overdraw.
    kitchen.stock("beras", "receive", 10, "kg", at=MIDNIGHT + 5 * H)
    kitchen.stock("beras", "use", 12, "kg", at=MIDNIGHT + 6 * H)
    kitchen.stock("beras", "receive", 20, "kg", at=MIDNIGHT + 31 * H)
    stock = {s["item"]: s for s in (await kitchen.api("/api/mbg/stock"))["on_hand"]}
    assert (stock["telur"]["on_hand"], stock["telur"]["flags"]) == (40, ["receipt_late"])
    assert (stock["beras"]["on_hand"], stock["beras"]["flags"]) == (18, ["overdraw"])
    findings = (await kitchen.api(f"/api/mbg/violations?date={DATE}"))["findings"]
    got = {f["subject"]: f for f in findings if f["code"].startswith("stock_")}
    assert (got["K1/telur"]["code"], got["K1/telur"]["severity"], got["K1/telur"]["measured"],
            got["K1/telur"]["limit"]) == ("stock_receipt_late", "warning", 60, 0)
    assert "recorded at 09:30 covers it" in got["K1/telur"]["detail"]
    assert (got["K1/beras"]["code"], got["K1/beras"]["severity"]) == ("stock_overdraw", "alert")
    said = await kitchen.jejak_mbg("violations")
    assert "60 butir dipakai padahal stok hanya 0 butir; penerimaan yang dicatat kemudian hari itu menutupinya" in said
    assert "penerimaan dicatat setelah dipakai" in await kitchen.jejak_mbg("stock")


async def test_a_container_returned_to_another_kitchen_is_back_there_not_lost(kitchen: Kitchen) -> None:
    d1, d2 = "04d4000000000001", "04d4000000000002"
    kitchen.scan("exit2", "departed", "K2", d1, d2, at=MIDNIGHT + 6 * H, school="S4")
    kitchen.scan("gate4", "received", "S4", d1, d2, at=MIDNIGHT + 7 * H)
    # The driver drops D1 at K1's return desk; D2 goes home to K2.
    kitchen.scan("return1", "returned", "K1", d1, at=MIDNIGHT + 13 * H)
    kitchen.scan("return2", "returned", "K2", d2, at=MIDNIGHT + 13 * H + 10 * M)
    kitchen.clock.now = MIDNIGHT + 16 * H
    assert (await kitchen.api(f"/api/mbg/lost?date={DATE}"))["lost"] == []
    [f] = [f for f in (await kitchen.api(f"/api/mbg/violations?date={DATE}"))["findings"]
           if f["code"] == "returned_to_other_kitchen"]
    assert (f["subject"], f["containers"], f["other_kitchen"], f["severity"]) == ("S4", [d1], "K1", "warning")
    said = await kitchen.jejak_mbg("violations")
    assert "1 ompreng dikembalikan ke SPPG Cibeureum (K1), bukan ke dapur yang mengirimnya: ambil kembali" in said, said
    said = await kitchen.jejak_mbg("violations", lang="en")
    assert "1 container returned to SPPG Cibeureum (K1), not to the kitchen that sent it: fetch it" in said, said


async def test_a_gate_tap_before_the_kitchen_exit_says_which_steps(kitchen: Kitchen) -> None:
    kitchen.scan("exit", "departed", "K1", A1, A2, A3, at=MIDNIGHT + 6 * H + 30 * M, school="S1")
    # S1's gate clock runs 10 minutes slow: the truck came at 06:35 and the gate says 06:25, before the exit.
    kitchen.record("gate1", "scan", {"event": "received", "site": "S1", "tags": [A1, A2, A3]},
                   at=MIDNIGHT + 6 * H + 25 * M, arrives=MIDNIGHT + 6 * H + 36 * M)
    [f] = [f for f in (await kitchen.api(f"/api/mbg/violations?date={DATE}"))["findings"] if f["code"] == "out_of_order"]
    assert (f["subject"], f["containers"]) == ("S1", [A1, A2, A3])
    said = await kitchen.jejak_mbg("violations")
    assert ("3 langkah ompreng tidak berurutan: diterima sebelum berangkat dari dapur; mungkin jam salah satu "
            "perangkat salah") in said, said
    said = await kitchen.jejak_mbg("violations", lang="en")
    assert "3 container steps out of order: received before left the kitchen; a device's clock may be wrong" in said
