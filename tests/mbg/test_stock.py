"""Stock cards: on hand is replayed from movements; counts set it and record the difference; overdraws show."""

from __future__ import annotations

import random
from collections.abc import Callable

from hub.mbg import MbgView, Plan, StockMovement, replay, stock_cards
from hub.mbg.stock import stock_findings
from tests.mbg.common import MIDNIGHT, H

Move = Callable[..., StockMovement]


def test_replay_receive_use_waste_and_count(plan: Plan, move: Move) -> None:
    moves = [move("receive", 30_000, 4 * H, supplier="SUP-1"), move("use", 20_000, 5 * H),
             move("waste", 1_000, 6 * H, reason="basi"), move("count", 8_500, 16 * H)]
    card = replay("K1", "beras", moves, plan)
    assert [line.balance for line in card.lines] == [30_000, 10_000, 9_000, 8_500]
    assert card.on_hand == 8_500
    count = card.lines[-1]
    assert (count.counted, count.difference, count.flags) == (8_500, -500, ("count_difference",))
    assert card.total("receive") == 30_000 and card.total("use") == 20_000 and card.total("waste") == 1_000
    assert card.adjustments == -500
    assert card.on_hand_at(MIDNIGHT + 5 * H) == 10_000 and card.on_hand_at(MIDNIGHT) == 0
    [finding] = stock_findings([card], plan)
    assert finding.code == "stock_count_difference" and finding.measured == 8_500 and finding.limit == 9_000


def test_a_debit_beyond_stock_on_hand_is_flagged_and_the_book_goes_negative(plan: Plan, move: Move) -> None:
    card = replay("K1", "beras", [move("receive", 5_000, 4 * H), move("use", 7_000, 5 * H)], plan)
    line = card.lines[-1]
    assert line.flags == ("overdraw",) and line.shortfall == 2_000 and card.on_hand == -2_000
    [finding] = stock_findings([card], plan)
    assert finding.code == "stock_overdraw" and finding.subject == "K1/beras"
    assert (finding.measured, finding.limit) == (7_000, 5_000)


def test_a_count_resets_the_book_after_an_overdraw(plan: Plan, move: Move) -> None:
    moves = [move("use", 1_000, 4 * H), move("count", 0, 5 * H), move("receive", 500, 6 * H)]
    card = replay("K1", "beras", moves, plan)
    assert [line.balance for line in card.lines] == [-1_000, 0, 500]
    assert card.lines[1].difference == 1_000


def test_a_movement_in_a_unit_that_does_not_convert_is_not_added(plan: Plan, move: Move) -> None:
    card = replay("K1", "beras", [move("receive", 5_000, 4 * H), move("receive", 1, 5 * H, unit="karung")], plan)
    assert card.on_hand == 5_000 and card.lines[-1].flags == ("unit_mismatch",)
    assert [f.code for f in stock_findings([card], plan)] == ["stock_unit_mismatch"]


def test_weights_and_volumes_convert_into_one_card(plan: Plan, move: Move) -> None:
    card = replay("K1", "beras", [move("receive", 5_000, 4 * H), move("receive", 5, 5 * H, unit="kg"),
                                  move("use", 3, 6 * H, unit="ons"), move("count", 9_700, 7 * H, unit="gram")], plan)
    assert (card.unit, card.on_hand, [line.flags for line in card.lines]) == ("g", 9_700, [()] * 4)
    assert [line.qty_in + line.qty_out for line in card.lines[:3]] == [5_000, 5_000, 300]
    kg = replay("K1", "beras", [move("receive", 5, 4 * H, unit="kg"), move("use", 2, 5 * H, unit="kg")], plan)
    assert (kg.unit, kg.on_hand) == ("kg", 3)  # a card of one unit keeps it
    oil = replay("K1", "minyak", [move("receive", 2, 4 * H, unit="L", item="minyak"),
                                  move("use", 250, 5 * H, unit="ml", item="minyak")], plan)
    assert (oil.unit, oil.on_hand) == ("ml", 1_750)


def test_on_hand_does_not_depend_on_arrival_order(plan: Plan, move: Move) -> None:
    moves = [move("receive", 10_000 + i, i * 60) for i in range(20)] + \
            [move("use", 3_000, 20 * 60 + i * 60, item="beras") for i in range(10)] + \
            [move("receive", 700, 100 * 60, item="ayam")]
    expected = stock_cards(moves, plan)
    for seed in range(5):
        shuffled = moves[:]
        random.Random(seed).shuffle(shuffled)
        view = MbgView(plan)
        for m in shuffled:
            view.ingest_event(m)
        assert view.cards() == expected
        assert {(r["item"], r["on_hand"]) for r in view.stock_on_hand("K1")} == {
            ("beras", sum(10_000 + i for i in range(20)) - 30_000), ("ayam", 700)}
