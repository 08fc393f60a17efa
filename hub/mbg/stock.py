"""Stock cards per kitchen and item, with stock on hand always derived by replaying movements."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from ..markets.units import measure
from .analysis import Finding, clock_text
from .events import StockMovement, choose_time
from .plan import Plan, local_date, local_midnight, next_date


@dataclass(frozen=True, slots=True, kw_only=True)
class StockLine:
    """One movement on a stock card and the balance after it."""

    time: int
    basis: str
    movement: str
    qty_in: int
    qty_out: int
    balance: int
    record_id: str
    counted: int | None = None  # physical count, for movement "count"
    difference: int | None = None  # count minus book balance before it
    shortfall: int = 0  # how much a debit exceeded the stock on hand
    flags: tuple[str, ...] = ()  # overdraw, receipt_late, count_difference, unit_mismatch
    supplier: str | None = None
    batch: str | None = None
    reason: str | None = None
    # A movement not applied (unit_mismatch): the quantity and unit it was recorded in.
    unit: str | None = None
    qty: int | None = None
    # A debit beyond the stock on hand that a receipt recorded later that day covers (receipt_late): the receipt.
    covered_by: StockLine | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "basis": self.basis, "movement": self.movement, "qty_in": self.qty_in,
                "qty_out": self.qty_out, "balance": self.balance, "record": self.record_id,
                "counted": self.counted, "difference": self.difference, "shortfall": self.shortfall,
                "flags": list(self.flags), "supplier": self.supplier, "batch": self.batch, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class StockCard:
    """The history of one item at one kitchen; `on_hand` is the replayed balance, never a stored figure."""

    kitchen: str
    item: str
    unit: str
    lines: tuple[StockLine, ...]

    @property
    def on_hand(self) -> int:
        return self.lines[-1].balance if self.lines else 0

    def on_hand_at(self, time: int) -> int:
        balance = 0
        for line in self.lines:
            if line.time > time:
                break
            balance = line.balance
        return balance

    def total(self, movement: str) -> int:
        return sum(line.qty_in + line.qty_out for line in self.lines if line.movement == movement
                   and "unit_mismatch" not in line.flags)

    @property
    def adjustments(self) -> int:
        return sum(line.difference or 0 for line in self.lines)

    def until(self, time: int) -> StockCard:
        """The card as it stood at `time`: its lines up to then (a line at `time` included), later ones dropped.
        It keeps the card's unit, so a day's stock reads in the unit today's does."""
        return replace(self, lines=self.lines[:bisect_left(self.lines, time + 1, key=lambda line: line.time)])

    def on_hand_row(self) -> dict[str, Any]:
        """The card's line in a list of stock on hand: its balance and every flag its lines carry."""
        return {"kitchen": self.kitchen, "item": self.item, "unit": self.unit, "on_hand": self.on_hand,
                "flags": sorted({f for line in self.lines for f in line.flags})}

    def to_dict(self) -> dict[str, Any]:
        return {"kitchen": self.kitchen, "item": self.item, "unit": self.unit, "on_hand": self.on_hand,
                "received": self.total("receive"), "used": self.total("use"), "wasted": self.total("waste"),
                "adjustments": self.adjustments, "lines": [line.to_dict() for line in self.lines]}


# A card that mixes units of one measure is kept in grams or millilitres, so that every quantity stays whole.
_BASES = {"kg": ("g", Fraction(1, 1000)), "liter": ("ml", Fraction(1, 1000))}


def unit_word(unit: str) -> str:
    """A unit as cards compare it: 'Ikat', 'ikat' and ' ikat ' are one word, whether or not it converts."""
    return unit.casefold().strip()


def _card_unit(units: list[str]) -> tuple[str, dict[str, int]]:
    """The unit a card is kept in, and each of its movements' units that converts to it (as `unit_word` writes
    them), by how much it is multiplied: rice received as 50 kg and used by the 3.000 g is one card, as markets
    read 'Rp/ons' (an ons is 100 g). The first movement's unit decides the measure. A karung or a sak has no
    weight the record carries, so it only adds to movements in the same word, however its case is typed."""
    units = [unit_word(u) for u in units]
    first = units[0] if units else ""
    got = measure(first)
    if got is None:
        return first, {first: 1}
    same = {u: m[1] for u in units if (m := measure(u)) is not None and m[0] == got[0]}
    if len({*same.values()}) == 1:
        return first, dict.fromkeys(same, 1)
    base, size = _BASES.get(got[0], (first, got[1]))
    return base, {u: int(holds / size) for u, holds in same.items() if (holds / size).denominator == 1}


def replay(kitchen: str, item: str, movements: Iterable[StockMovement], plan: Plan) -> StockCard:
    """Replay one item's movements at one kitchen in time order into a stock card."""
    timed = sorted(((choose_time(m.device_time, m.arrived_at, plan.clock, m.clock_offset), m) for m in movements
                    if m.site == kitchen and m.item == item),
                   key=lambda cm: (cm[0].time, cm[1].device, cm[1].seq))
    unit, scales = _card_unit([m.unit for _, m in timed])
    balance = 0
    lines: list[StockLine] = []
    for choice, m in timed:
        # Every line carries the movement's own fields; each branch sets the quantities and the balance.
        line = StockLine(time=choice.time, basis=choice.basis, movement=m.movement, record_id=m.record_id,
                         supplier=m.supplier, batch=m.batch, reason=m.reason, qty_in=0, qty_out=0, balance=balance)
        scale = scales.get(unit_word(m.unit))
        if scale is None:
            # A quantity in another unit cannot be added without a conversion the record does not carry.
            lines.append(replace(line, flags=("unit_mismatch",), unit=m.unit, qty=m.qty))
            continue
        qty = m.qty * scale
        if m.movement == "receive":
            balance += qty
            lines.append(replace(line, qty_in=qty, balance=balance))
        elif m.movement in ("use", "waste"):
            shortfall = max(qty - max(balance, 0), 0)
            balance -= qty
            # The book goes negative rather than clamping: a debit nobody received for must stay visible.
            lines.append(replace(line, qty_out=qty, balance=balance, shortfall=shortfall,
                                 flags=("overdraw",) if shortfall else ()))
        else:
            difference = qty - balance
            balance = qty
            lines.append(replace(line, balance=balance, counted=qty, difference=difference,
                                 flags=("count_difference",) if difference else ()))
    return StockCard(kitchen=kitchen, item=item, unit=unit, lines=tuple(_receipts_late(lines, plan.site_offset(kitchen))))


def _receipts_late(lines: list[StockLine], offset: int) -> list[StockLine]:
    """A debit beyond the stock on hand that a receipt recorded later the same day brings back to stock (no count
    between them) is receipt_late, not overdraw: the goods most likely came before they were used and their
    receipt was entered late. The book still went negative in between; the lines keep their balances."""
    out = list(lines)
    for i, line in enumerate(lines):
        if "overdraw" not in line.flags:
            continue
        day = local_date(line.time, offset)
        for later in lines[i + 1:]:
            if later.movement == "count" or local_date(later.time, offset) != day:
                break
            if later.movement == "receive" and later.balance >= 0 and "unit_mismatch" not in later.flags:
                out[i] = replace(line, flags=("receipt_late",), covered_by=later)
                break
    return out


def kitchen_day_end(date: str, kitchen: str, plan: Plan) -> int:
    """The last second of `date` at a kitchen, in its own time zone: stock 'on 2 March' is stock then."""
    return local_midnight(next_date(date), plan.site_offset(kitchen)) - 1


def cards_on(cards: Iterable[StockCard], date: str, plan: Plan) -> list[StockCard]:
    """Each card as it stood at the end of `date` at its kitchen; a card with no movement by then is left out."""
    return [c for card in cards if (c := card.until(kitchen_day_end(date, card.kitchen, plan))).lines]


def stock_cards(movements: Iterable[StockMovement], plan: Plan) -> dict[tuple[str, str], StockCard]:
    """Every (kitchen, item) stock card."""
    groups: dict[tuple[str, str], list[StockMovement]] = defaultdict(list)
    for m in movements:
        groups[(m.site, m.item)].append(m)
    return {key: replay(key[0], key[1], ms, plan) for key, ms in sorted(groups.items())}


def stock_findings(cards: Iterable[StockCard], plan: Plan) -> list[Finding]:
    out: list[Finding] = []
    for card in cards:
        off = plan.site_offset(card.kitchen)
        for line in card.lines:
            date = local_date(line.time, off)
            subject = f"{card.kitchen}/{card.item}"
            if "overdraw" in line.flags:
                out.append(Finding(code="stock_overdraw", subject=subject, date=date,
                                   detail=f"{line.movement} of {line.qty_out} {card.unit} with only "
                                          f"{line.qty_out - line.shortfall} on hand",
                                   measured=line.qty_out, limit=line.qty_out - line.shortfall,
                                   records=(line.record_id,)))
            if "receipt_late" in line.flags and line.covered_by is not None:
                receipt = line.covered_by
                out.append(Finding(code="stock_receipt_late", subject=subject, date=date,
                                   detail=f"{line.movement} of {line.qty_out} {card.unit} at {clock_text(line.time, off)} "
                                          f"with only {line.qty_out - line.shortfall} on hand; a receipt of "
                                          f"{receipt.qty_in} recorded at {clock_text(receipt.time, off)} covers it: was it "
                                          "received earlier and recorded late?",
                                   measured=line.qty_out, limit=line.qty_out - line.shortfall,
                                   records=(line.record_id, receipt.record_id)))
            if "count_difference" in line.flags:
                book = (line.counted or 0) - (line.difference or 0)
                out.append(Finding(code="stock_count_difference", subject=subject, date=date,
                                   detail=f"counted {line.counted} {card.unit}, book said {book}",
                                   measured=line.counted, limit=book, records=(line.record_id,)))
            if "unit_mismatch" in line.flags:
                out.append(Finding(code="stock_unit_mismatch", subject=subject, date=date,
                                   detail=f"{line.movement} of {line.qty} {line.unit} on a card kept in {card.unit}: "
                                          f"{line.unit} does not convert to {card.unit}, not applied; record it "
                                          f"in {card.unit}", measured=line.qty, records=(line.record_id,)))
    return out
