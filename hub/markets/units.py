"""The units prices are quoted in on market boards and in the agency's files ("Rp/ons", "Rp/0,5 kg",
"Rp./Liter") and their conversion to the catalogue's unit, or a refusal where none holds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .catalog import Commodity
from .errors import BadUnit

# Each unit word: the catalogue unit it measures and how many of that unit it holds. An ons is 100 g as
# Indonesian markets use the word (boards write "Rp 4.500/ons" for shallots), not the 28 g ounce.
_WORDS: dict[str, tuple[str, Fraction]] = {
    "kg": ("kg", Fraction(1)), "kilo": ("kg", Fraction(1)), "kilogram": ("kg", Fraction(1)),
    "g": ("kg", Fraction(1, 1000)), "gr": ("kg", Fraction(1, 1000)), "gram": ("kg", Fraction(1, 1000)),
    "ons": ("kg", Fraction(1, 10)), "on": ("kg", Fraction(1, 10)),
    "l": ("liter", Fraction(1)), "lt": ("liter", Fraction(1)), "ltr": ("liter", Fraction(1)),
    "liter": ("liter", Fraction(1)), "litre": ("liter", Fraction(1)),
    "ml": ("liter", Fraction(1, 1000)),
    "butir": ("butir", Fraction(1)),
}
_HALF = {"½": "1/2", "¼": "1/4"}
# "Rp./Kg", "rp/ons", "per ons", "/ltr", "Rp/0,5 kg", "Rp / 250 gr", "Rp/½ kg", "ons", "kg."
_UNIT = re.compile(r"^(?:rp\.?)?\s*(?:/|per\b)?\s*(?P<qty>\d+(?:[.,]\d+)?(?:/\d+)?)?\s*(?P<word>[a-z]+)\.?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversion:
    """A reported unit read against a commodity: its catalogue unit and how many of it the reported one holds
    (an ons holds 1/10 kg, so a price per ons is ten times as much per kg)."""

    unit: str
    holds: Fraction

    @property
    def same(self) -> bool:
        return self.holds == 1

    def price(self, reported_idr: int) -> int:
        """The reported price as whole rupiah per catalogue unit."""
        return max(1, round(Fraction(reported_idr) / self.holds))


# A package named with its contents ("Rp/karung 50 kg", "per sak (25 kg)", "Rp/botol 2 liter"): its contents are
# the unit. A package without them (a karung of rice holds 25 or 50 kg) is refused as unreadable.
_PACKAGE = re.compile(r"(?:karung|sak|zak|kemasan|bungkus|botol|jeriken|jerigen|pouch)\s*\(?\s*(?=\d)")


def measure(text: str) -> tuple[str, Fraction] | None:
    """The unit a unit text measures in and how many of it the text holds ("250 gr" is 1/4 kg); None if unknown."""
    t = text.casefold().strip()
    for k, v in _HALF.items():
        t = t.replace(k, v)
    if _PACKAGE.search(t):
        t = _PACKAGE.sub("", t, count=1).replace(")", "")
    m = _UNIT.match(t)
    if m is None or m.group("word") not in _WORDS:
        return None
    unit, size = _WORDS[m.group("word")]
    qty = m.group("qty")
    if qty:
        n = Fraction(qty.replace(",", ".")) if "/" not in qty else Fraction(qty)
        if n <= 0:
            return None
        size *= n
    return unit, size


def conversion(text: str, commodity: Commodity) -> Conversion:
    """How a price reported per `text` becomes a price per the commodity's catalogue unit; BadUnit when it
    cannot: a unit nobody quotes in, or one that measures something else (oil is sold by the litre, and a
    litre's weight depends on the oil and its temperature, so a price per kg of it is refused, not guessed)."""
    got = measure(text)
    if got is None:
        raise BadUnit(f"unit {text.strip()[:30]!r} for {commodity.name}: expected rupiah per {commodity.unit} "
                      f"or per a part of it (Rp/kg, Rp/ons, Rp/0,5 kg, Rp/ltr), got a unit this hub cannot read",
                      hint=f"send the price per {commodity.unit}")
    unit, holds = got
    if unit != commodity.unit:
        raise BadUnit(f"unit {text.strip()[:30]!r} for {commodity.name}: expected rupiah per {commodity.unit}; "
                      f"a price per {unit} cannot be converted to one per {commodity.unit}",
                      hint=f"{commodity.name} is priced per {commodity.unit}: send that price")
    return Conversion(unit=unit, holds=holds)


def as_reported(price_idr: int, unit: str) -> str:
    """A price as its reporter gave it, for the record beside the converted one: "Rp 4.500/ons"."""
    bare = re.sub(r"^\s*(?:rp\.?)?\s*(?:/|per\b)?\s*", "", unit.strip(), flags=re.IGNORECASE)
    return f"Rp {price_idr:,}/".replace(",", ".") + bare


def unit_of(text: str) -> str | None:
    """The catalogue unit a unit text measures in ("Rp./Kg", "Rp/ons" and "250 gr" are kg); None if unknown."""
    got = measure(text)
    return None if got is None else got[0]
