"""Stock as it stood at the end of a day (`jejak mbg stock --date`), and units that differ only in case or spaces."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from hub.app import start_hub
from hub.config import HubConfig, SecurityConfig
from hub.mbg import Kitchen, Plan, School, StockMovement, replay, stock_cards
from hub.mbg.plan import next_date
from hub.mbg.stock import cards_on, stock_findings
from ledger import ChainBuilder, Ed25519Signer
from tests.hub.conftest import Clock, enroll
from tests.mbg.common import DATE, MIDNIGHT, H

Move = Callable[..., StockMovement]


def test_a_unit_the_converter_does_not_know_adds_up_whatever_its_case(plan: Plan, move: Move) -> None:
    # Bayam in two spellings of one unit: 10 "ikat" and 4 "Ikat" were 10 ikat and a unit_mismatch; they are 14 ikat.
    card = replay("K1", "bayam", [move("receive", 10, 4 * H, item="bayam", unit="ikat"),
                                  move("receive", 4, 5 * H, item="bayam", unit="Ikat"),
                                  move("use", 3, 6 * H, item="bayam", unit=" IKAT ")], plan)
    assert (card.unit, card.on_hand) == ("ikat", 11)
    assert [line.flags for line in card.lines] == [(), (), ()] and stock_findings([card], plan) == []
    sack = replay("K1", "beras", [move("receive", 2, 4 * H, unit="Karung"), move("use", 1, 5 * H, unit="karung")], plan)
    assert (sack.unit, sack.on_hand) == ("karung", 1)


def test_a_unit_that_does_not_convert_is_named_as_recorded(plan: Plan, move: Move) -> None:
    card = replay("K1", "telur", [move("receive", 100, 4 * H, item="telur", unit="butir"),
                                  move("use", 2, 5 * H, item="telur", unit="Kg")], plan)
    [finding] = stock_findings([card], plan)
    assert finding.code == "stock_unit_mismatch" and card.on_hand == 100
    assert finding.detail.startswith("use of 2 Kg on a card kept in butir: Kg does not convert to butir")


def test_stock_at_the_end_of_a_day_leaves_out_the_days_after(plan: Plan, move: Move) -> None:
    moves = [move("receive", 50, 5 * H, unit="kg"), move("use", 3_000, 7 * H), move("count", 46, 16 * H, unit="kg"),
             move("use", 21_000, 24 * H + 7 * H), move("receive", 5, 24 * H + 8 * H, unit="kg")]
    cards = stock_cards(moves, plan).values()
    [first] = cards_on(cards, DATE, plan)
    assert (first.unit, first.on_hand, len(first.lines)) == ("g", 46_000, 3)
    assert first.on_hand_row() == {"kitchen": "K1", "item": "beras", "unit": "g", "on_hand": 46_000,
                                   "flags": ["count_difference"]}
    [second] = cards_on(cards, next_date(DATE), plan)
    assert second.on_hand == 30_000 and second == next(iter(cards))
    assert cards_on(cards, "2026-01-11", plan) == []  # nothing recorded by then: no card


def test_a_days_end_is_the_kitchens_own(move: Move) -> None:
    # 00:30 WIT on the next day is 22:30 WIB on this one: a WIT kitchen's day has ended by then.
    wit = Plan(kitchens=(Kitchen(id="K1", tz_offset_s=9 * H),), schools=())
    moves = [move("receive", 10, 5 * H, unit="kg"), move("receive", 5, 22 * H + 30 * 60, unit="kg")]
    [card] = cards_on(stock_cards(moves, wit).values(), DATE, wit)
    assert card.on_hand == 10
    wib = Plan(kitchens=(Kitchen(id="K1"),), schools=())
    [card] = cards_on(stock_cards(moves, wib).values(), DATE, wib)
    assert card.on_hand == 15


async def test_the_stock_route_takes_a_date(tmp_path) -> None:
    plan = Plan(kitchens=(Kitchen(id="K1"),), schools=(School(id="S1", kitchen="K1", portions=20),))
    clock = Clock(MIDNIGHT + 5 * H)
    config = HubConfig(data_dir=str(tmp_path / "hub"), http_port=0, coap_port=0, mdns=False, auto_approve=True,
                       checkpoint_interval=3600, security=SecurityConfig(oscore=False))
    running = await start_hub(config, clock=clock, plan=plan)
    try:
        signer = Ed25519Signer.from_seed(b"K1".ljust(32, b"."))
        device_id = enroll(running.hub, signer, clock, site="K1")
        builder = ChainBuilder(signer, clock=clock, boot=1)
        raws = [builder.genesis().raw]
        for at, movement, qty, unit in ((5 * H, "receive", 50, "kg"), (7 * H, "use", 3, "kg"),
                                        (24 * H + 7 * H, "use", 22, "kg"), (24 * H + 8 * H, "count", 25, "kg")):
            clock.now = MIDNIGHT + at
            raws.append(builder.append("stock", {"site": "K1", "item": "beras", "movement": movement, "qty": qty,
                                                 "unit": unit}).raw)
        assert running.hub.ingest(device_id, raws).accepted == len(raws)
        async with aiohttp.ClientSession() as session:
            async def get(query: str) -> tuple[int, dict]:
                async with session.get(f"{running.http_url}/api/mbg/stock{query}") as resp:
                    return resp.status, await resp.json(content_type=None)

            code, now = await get("")
            assert code == 200 and now["date"] is None and now["on_hand"][0]["on_hand"] == 25
            code, then = await get(f"?date={DATE}")
            assert code == 200 and then["date"] == DATE
            assert then["on_hand"] == [{"kitchen": "K1", "item": "beras", "unit": "kg", "on_hand": 47, "flags": []}]
            assert [line["qty_out"] for line in then["cards"][0]["lines"]] == [0, 3]
            code, before = await get("?date=2026-01-11")
            assert code == 200 and before["on_hand"] == [] and before["cards"] == []
            code, bad = await get("?date=12-01-2026")
            assert code == 400 and bad["error"]["code"] == "MBG_INPUT", bad
    finally:
        await running.close()
